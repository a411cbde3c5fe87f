//! The verified caller as brickgate publishes it to the filters after it (Envoy's RBAC, its rate
//! limiters, Lua), as jwt_authn publishes its payload (`payload_in_metadata`). Host-neutral:
//! the Wasm form writes each field as a filter-state string (`wasm.brickgate.<name>`), the
//! native form as dynamic metadata (namespace `brickgate`, key `<name>`); both under the
//! names below, with the same text values.
//!
//! Only a request allowed on a verified token publishes a principal. A refused request, an
//! anonymous rule's request and a dry-run `would_deny` publish nothing: a filter keyed on the
//! principal then finds no value, never one a client chose.

use std::borrow::Cow;

use super::Verified;

/// The fields that can be published, by the names both forms publish them under
/// (`identity.publish`). `sub`, `iss`, `client_id` and `scope` as in a JWT (RFC 7519, RFC 9068).
pub const PUBLISHED_FIELDS: [&str; 6] = ["sub", "iss", "client_id", "scope", "groups", "rule"];

/// The verified principal of one allowed request: only the fields the configuration publishes
/// are filled, so a request pays only for what other filters read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The provider's subject claim.
    pub subject: Option<String>,
    /// The provider's issuer (`iss`).
    pub issuer: Option<String>,
    /// `client_id`, else `azp`, else `appid` (`identity::client_id`).
    pub client_id: Option<String>,
    /// The effective scopes (the token's, with those its groups grant).
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
    /// The rule that allowed the request. None where the body chooses the rule after the
    /// principal was published (`body_rules: buffer_filter`).
    pub rule: Option<String>,
}

impl Principal {
    /// The chosen fields of a verified token's holder, allowed by `rule`.
    pub fn chosen(chosen: &[&str], verified: &Verified, issuer: &str, rule: &str) -> Principal {
        let wants = |name: &str| chosen.contains(&name);
        let pick = |name: &str, value: &Option<String>| value.clone().filter(|_| wants(name));
        let list = |name: &str, items: &[String]| {
            if wants(name) {
                items.to_vec()
            } else {
                Vec::new()
            }
        };
        Principal {
            subject: pick("sub", &verified.holder.subject),
            issuer: wants("iss").then(|| issuer.to_string()),
            client_id: pick("client_id", &verified.holder.client_id),
            scopes: list("scope", &verified.scopes),
            groups: list("groups", &verified.groups),
            rule: wants("rule").then(|| rule.to_string()),
        }
    }

    /// Each field that has a value, by its published name, as text: `scope` space-separated
    /// (the `scope` claim's own form, RFC 9068 §2.2.3), `groups` comma-separated (as the
    /// `groups` identity header). An empty list is no value.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, Cow<'_, str>)> {
        fn text<'a>(
            name: &'static str,
            value: &'a Option<String>,
        ) -> Option<(&'static str, Cow<'a, str>)> {
            value.as_deref().map(|value| (name, Cow::Borrowed(value)))
        }
        fn list<'a>(
            name: &'static str,
            items: &[String],
            separator: &str,
        ) -> Option<(&'static str, Cow<'a, str>)> {
            (!items.is_empty()).then(|| (name, Cow::Owned(items.join(separator))))
        }
        [
            text("sub", &self.subject),
            text("iss", &self.issuer),
            text("client_id", &self.client_id),
            list("scope", &self.scopes, " "),
            list("groups", &self.groups, ","),
            text("rule", &self.rule),
        ]
        .into_iter()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::{FederatedSubject, Holder, PrincipalKind};
    use crate::verify::claims::TokenTimes;

    fn verified() -> Verified {
        Verified {
            times: TokenTimes {
                exp: 0,
                nbf: None,
                iat: None,
            },
            holder: Holder {
                subject: Some("alice".into()),
                client_id: Some("app-1".into()),
                token_id: Some("jti-1".into()),
            },
            federated_subject: FederatedSubject::NotExchanged,
            kind: PrincipalKind::User,
            scopes: vec!["clusters:read".into(), "jobs:read".into()],
            groups: vec!["admins".into(), "eng".into()],
            headers: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn only_the_chosen_fields_are_published_under_their_names() {
        type Published<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&[&str], Published); 4] = [
            (&[], &[]),
            (&["sub"], &[("sub", "alice")]),
            (
                &PUBLISHED_FIELDS,
                &[
                    ("sub", "alice"),
                    ("iss", "https://idp"),
                    ("client_id", "app-1"),
                    ("scope", "clusters:read jobs:read"),
                    ("groups", "admins,eng"),
                    ("rule", "clusters-read"),
                ],
            ),
            // Published in the one documented order, whatever the configuration's.
            (
                &["rule", "groups"],
                &[("groups", "admins,eng"), ("rule", "clusters-read")],
            ),
        ];
        for (chosen, expected) in cases {
            let principal = Principal::chosen(chosen, &verified(), "https://idp", "clusters-read");
            let entries: Vec<_> = principal.entries().collect();
            let expected: Vec<_> = expected.iter().map(|(n, v)| (*n, Cow::from(*v))).collect();
            assert_eq!(entries, expected, "{chosen:?}");
        }
    }

    #[test]
    fn a_missing_claim_or_empty_list_is_no_value() {
        let mut holder_without = verified();
        holder_without.holder.subject = None;
        holder_without.groups.clear();
        let principal = Principal::chosen(&PUBLISHED_FIELDS, &holder_without, "i", "r");
        let names: Vec<_> = principal.entries().map(|(name, _)| name).collect();
        assert_eq!(names, ["iss", "client_id", "scope", "rule"]);
    }
}
