//! What a rule requires of a verified principal: scopes (all-of, any-of, possibly templated)
//! and groups.

use crate::error::AuthError;
use crate::policy::matcher::Bindings;

/// A scope, possibly naming template variables: `serving:{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeTemplate(pub String);

impl ScopeTemplate {
    pub fn variables(&self) -> Vec<&str> {
        self.0
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect()
    }

    pub fn render(&self, bindings: &Bindings) -> String {
        bindings
            .iter()
            .fold(self.0.clone(), |scope, (name, value)| {
                scope.replace(&format!("{{{name}}}"), value)
            })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    pub scopes_all: Vec<ScopeTemplate>,
    pub scopes_any: Vec<ScopeTemplate>,
    pub groups_any: Vec<String>,
}

impl Requirement {
    /// Checks the principal's scopes and groups. Messages name what was needed and what the
    /// token had, so "every token looks valid, yet the endpoint refuses" has an answer.
    pub fn check(
        &self,
        rule_name: &str,
        bindings: &Bindings,
        scopes: &[String],
        groups: &[String],
    ) -> Result<(), AuthError> {
        let has = |scope: &String| scopes.contains(scope);
        let all: Vec<String> = self.scopes_all.iter().map(|s| s.render(bindings)).collect();
        let missing: Vec<String> = all.iter().filter(|s| !has(s)).cloned().collect();
        if !missing.is_empty() {
            return Err(AuthError::insufficient_scope(
                format!(
                    "insufficient scope: rule {rule_name} needs all of [{}]; token has [{}]",
                    all.join(", "),
                    scopes.join(", ")
                ),
                missing.join(" "),
            ));
        }
        let any: Vec<String> = self.scopes_any.iter().map(|s| s.render(bindings)).collect();
        if !any.is_empty() && !any.iter().any(has) {
            return Err(AuthError::insufficient_scope(
                format!(
                    "insufficient scope: rule {rule_name} needs one of [{}]; token has [{}]",
                    any.join(", "),
                    scopes.join(", ")
                ),
                any.first().cloned().unwrap_or_default(),
            ));
        }
        if !self.groups_any.is_empty() && !self.groups_any.iter().any(|g| groups.contains(g)) {
            let error = AuthError::new(
                crate::error::Reason::GroupNotAllowed,
                format!(
                    "group not allowed: rule {rule_name} needs membership of one of [{}]; token has [{}]",
                    self.groups_any.join(", "),
                    groups.join(", ")
                ),
            );
            return Err(error);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn templates(items: &[&str]) -> Vec<ScopeTemplate> {
        items.iter().map(|s| ScopeTemplate(s.to_string())).collect()
    }

    #[test]
    fn scope_and_group_requirements() {
        let bindings = vec![("name".to_string(), "fraud".to_string())];
        let requirement = |all: &[&str], any: &[&str], groups: &[&str]| Requirement {
            scopes_all: templates(all),
            scopes_any: templates(any),
            groups_any: strings(groups),
        };
        type Case<'a> = (
            Requirement,
            &'a [&'a str],
            &'a [&'a str],
            Option<(Reason, Option<&'a str>)>,
        );
        let cases: Vec<Case> = vec![
            (requirement(&[], &[], &[]), &[], &[], None),
            (
                requirement(&["a", "b"], &[], &[]),
                &["a", "b", "c"],
                &[],
                None,
            ),
            (
                requirement(&["a", "b"], &[], &[]),
                &["a"],
                &[],
                Some((Reason::InsufficientScope, Some("b"))),
            ),
            (requirement(&[], &["x", "y"], &[]), &["y"], &[], None),
            (
                requirement(&[], &["x", "y"], &[]),
                &["z"],
                &[],
                Some((Reason::InsufficientScope, Some("x"))),
            ),
            (
                requirement(&[], &["serving:{name}"], &[]),
                &["serving:fraud"],
                &[],
                None,
            ),
            (
                requirement(&[], &["serving:{name}"], &[]),
                &["serving:other"],
                &[],
                Some((Reason::InsufficientScope, Some("serving:fraud"))),
            ),
            (requirement(&[], &[], &["ml"]), &[], &["ml", "x"], None),
            (
                requirement(&[], &[], &["ml"]),
                &[],
                &["x"],
                Some((Reason::GroupNotAllowed, None)),
            ),
        ];
        for (index, (req, scopes, groups, expected)) in cases.into_iter().enumerate() {
            let got = req.check("r", &bindings, &strings(scopes), &strings(groups));
            match expected {
                None => assert!(got.is_ok(), "case {index}: {got:?}"),
                Some((reason, scope)) => {
                    let error = got.unwrap_err();
                    assert_eq!(error.reason, reason, "case {index}");
                    assert_eq!(error.required_scope.as_deref(), scope, "case {index}");
                }
            }
        }
    }

    #[test]
    fn messages_name_needed_and_held_scopes() {
        let req = Requirement {
            scopes_all: templates(&["clusters"]),
            ..Requirement::default()
        };
        let error = req
            .check("clusters-write", &vec![], &strings(&["clusters:read"]), &[])
            .unwrap_err();
        assert_eq!(
            error.detail,
            "insufficient scope: rule clusters-write needs all of [clusters]; token has [clusters:read]"
        );
    }

    #[test]
    fn template_variables_are_listed() {
        assert_eq!(
            ScopeTemplate("a:{x}:{y}".into()).variables(),
            vec!["x", "y"]
        );
        assert!(ScopeTemplate("plain".into()).variables().is_empty());
    }
}
