//! What a rule requires of a verified principal: scopes (all-of, any-of, possibly templated)
//! and groups.

use std::borrow::Cow;

use crate::error::{AuthError, echo, echo_list};
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

    /// The scope with each `{name}` replaced by its bound value, in one pass: a value is
    /// never read again, so a path segment holding `{other}` stays as sent. Unbound names and
    /// unclosed braces stay as written.
    pub fn render(&self, bindings: &Bindings) -> String {
        self.rendered(bindings).into_owned()
    }

    /// [`Self::render`], without a copy for the common scope that names no variable.
    fn rendered(&self, bindings: &Bindings) -> Cow<'_, str> {
        if !self.0.contains('{') {
            return Cow::Borrowed(&self.0);
        }
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            let (before, from_brace) = rest.split_at(open);
            out.push_str(before);
            let bound = from_brace.get(1..).and_then(|inner| {
                let (name, _) = inner.split_once('}')?;
                let (_, value) = bindings.iter().find(|(bound, _)| bound == name)?;
                Some((name.len() + 2, value))
            });
            match bound {
                Some((consumed, value)) => {
                    out.push_str(value);
                    rest = from_brace.get(consumed..).unwrap_or_default();
                }
                None => {
                    out.push('{');
                    rest = from_brace.get(1..).unwrap_or_default();
                }
            }
        }
        out.push_str(rest);
        Cow::Owned(out)
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
        let has = |scope: &str| scopes.iter().any(|held| held == scope);
        let all: Vec<Cow<'_, str>> = self
            .scopes_all
            .iter()
            .map(|s| s.rendered(bindings))
            .collect();
        let missing: Vec<&str> = all.iter().map(|s| s.as_ref()).filter(|s| !has(s)).collect();
        if !missing.is_empty() {
            let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            return Err(AuthError::insufficient_scope(
                format!(
                    "insufficient scope: rule {rule_name} needs all of [{}]; token has [{}]",
                    echo_list(&all),
                    echo_list(scopes)
                ),
                missing
                    .iter()
                    .map(|scope| echo(scope))
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
        let any: Vec<Cow<'_, str>> = self
            .scopes_any
            .iter()
            .map(|s| s.rendered(bindings))
            .collect();
        if !any.is_empty() && !any.iter().any(|s| has(s)) {
            let any: Vec<String> = any.iter().map(|s| s.to_string()).collect();
            return Err(AuthError::insufficient_scope(
                format!(
                    "insufficient scope: rule {rule_name} needs one of [{}]; token has [{}]",
                    echo_list(&any),
                    echo_list(scopes)
                ),
                any.first().map(|scope| echo(scope)).unwrap_or_default(),
            ));
        }
        if !self.groups_any.is_empty() && !self.groups_any.iter().any(|g| groups.contains(g)) {
            let error = AuthError::new(
                crate::error::Reason::GroupNotAllowed,
                format!(
                    "group not allowed: rule {rule_name} needs membership of one of [{}]; token has [{}]",
                    echo_list(&self.groups_any),
                    echo_list(groups)
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
    fn templates_are_rendered_in_one_pass() {
        let bind = |pairs: &[(&str, &str)]| -> Bindings {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let cases: &[(&str, Bindings, &str)] = &[
            (
                "serving:{name}",
                bind(&[("name", "fraud")]),
                "serving:fraud",
            ),
            // A bound value holding `{other}` is not substituted again, in either order.
            (
                "s:{x}:{y}",
                bind(&[("x", "{y}"), ("y", "evil")]),
                "s:{y}:evil",
            ),
            (
                "s:{y}:{x}",
                bind(&[("x", "{y}"), ("y", "evil")]),
                "s:evil:{y}",
            ),
            ("s:{x}", bind(&[("x", "{x}")]), "s:{x}"),
            ("s:{x}{x}", bind(&[("x", "a")]), "s:aa"),
            ("s:{unbound}", bind(&[("x", "a")]), "s:{unbound}"),
            ("s:{x", bind(&[("x", "a")]), "s:{x"),
            ("{{x}}", bind(&[("x", "a")]), "{a}"),
            ("plain", bind(&[]), "plain"),
            ("é:{x}:ü", bind(&[("x", "ß")]), "é:ß:ü"),
        ];
        for (template, bindings, expected) in cases {
            assert_eq!(
                ScopeTemplate(template.to_string()).render(bindings),
                *expected,
                "{template} with {bindings:?}"
            );
        }
    }

    #[test]
    fn held_scopes_and_groups_are_repeated_bounded() {
        let long = "s".repeat(10_000);
        let many: Vec<String> = (0..500).map(|i| format!("{long}{i}")).collect();
        let bindings = vec![("name".to_string(), "n".repeat(5000))];
        let cases = [
            Requirement {
                scopes_all: templates(&["needed:{name}"]),
                ..Requirement::default()
            },
            Requirement {
                scopes_any: templates(&["needed:{name}"]),
                ..Requirement::default()
            },
            Requirement {
                groups_any: strings(&["ml"]),
                ..Requirement::default()
            },
        ];
        for requirement in cases {
            let error = requirement.check("r", &bindings, &many, &many).unwrap_err();
            assert!(error.detail.len() < 1200, "{} bytes", error.detail.len());
            assert!(error.detail.contains("and 492 more"), "{}", error.detail);
            if let Some(scope) = &error.required_scope {
                assert_eq!(scope, &format!("needed:{}...", "n".repeat(57)));
            }
        }
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
