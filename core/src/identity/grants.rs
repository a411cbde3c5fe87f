//! Grants: catalogue scopes earned by what an IdP token does carry. Entra ID tokens for the
//! AzureDatabricks application carry `scp: user_impersonation` (or nothing, app-only), Okta and
//! Auth0 tokens carry functional roles or groups; none carry Databricks scope names. A provider's
//! `grants` map a group, an app role or an IdP scope to Databricks scopes, so the catalogue's
//! rules (and your own) can be satisfied with least privilege.

/// What in the token earns a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantSource {
    /// A value of the provider's groups claim (`group:<name>`).
    Group(String),
    /// A value of the provider's roles claim (`role:<name>`), e.g. Entra app roles.
    Role(String),
    /// A scope the token itself carries (`scope:<name>`), e.g. `user_impersonation`.
    Scope(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub source: GrantSource,
    pub scopes: Vec<String>,
}

impl GrantSource {
    /// Parses a `grants` key; `None` when it has no known prefix or an empty name.
    pub fn parse(key: &str) -> Option<GrantSource> {
        let (kind, name) = key.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        let name = name.to_string();
        match kind {
            "group" => Some(GrantSource::Group(name)),
            "role" => Some(GrantSource::Role(name)),
            "scope" => Some(GrantSource::Scope(name)),
            _ => None,
        }
    }
}

/// The token's own scopes followed by every scope its groups, roles and scopes are granted,
/// each once, in order.
pub fn effective_scopes(
    grants: &[Grant],
    token_scopes: Vec<String>,
    groups: &[String],
    roles: &[String],
) -> Vec<String> {
    let mut scopes = token_scopes;
    let earned: Vec<&String> = grants
        .iter()
        .filter(|grant| match &grant.source {
            GrantSource::Group(name) => groups.contains(name),
            GrantSource::Role(name) => roles.contains(name),
            GrantSource::Scope(name) => scopes.contains(name),
        })
        .flat_map(|grant| grant.scopes.iter())
        .collect();
    for scope in earned {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn groups_roles_and_idp_scopes_earn_their_grants() {
        let grants = vec![
            Grant {
                source: GrantSource::parse("group:ml-engineers").unwrap(),
                scopes: strings(&["model-serving", "mlflow"]),
            },
            Grant {
                source: GrantSource::parse("role:Databricks.Reader").unwrap(),
                scopes: strings(&["all-apis:read"]),
            },
            Grant {
                source: GrantSource::parse("scope:user_impersonation").unwrap(),
                scopes: strings(&["sql"]),
            },
        ];
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            // (token scopes, groups, roles) → effective scopes
            (&[], &[], &[], &[]),
            (
                &["user_impersonation"],
                &[],
                &[],
                &["user_impersonation", "sql"],
            ),
            (&[], &["ml-engineers"], &[], &["model-serving", "mlflow"]),
            (&[], &[], &["Databricks.Reader"], &["all-apis:read"]),
            (&[], &["ML-Engineers"], &["databricks.reader"], &[]),
            (
                &["mlflow"],
                &["ml-engineers"],
                &[],
                &["mlflow", "model-serving"],
            ),
            // a group named like a role earns nothing
            (&[], &["Databricks.Reader"], &["ml-engineers"], &[]),
        ];
        for (token, groups, roles, expected) in cases {
            let got = effective_scopes(&grants, strings(token), &strings(groups), &strings(roles));
            assert_eq!(got, strings(expected), "{token:?} {groups:?} {roles:?}");
        }
    }

    #[test]
    fn keys_need_a_known_prefix_and_a_name() {
        assert_eq!(
            GrantSource::parse("group:a"),
            Some(GrantSource::Group("a".into()))
        );
        assert_eq!(
            GrantSource::parse("role:a:b"),
            Some(GrantSource::Role("a:b".into()))
        );
        for bad in ["group:", "ml-engineers", "claim:x", "Group:x", ""] {
            assert_eq!(GrantSource::parse(bad), None, "{bad}");
        }
    }
}
