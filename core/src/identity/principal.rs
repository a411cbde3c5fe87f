//! Human user or service principal, by documented per-IdP claim rules (docs/CONFIG.md).

use serde_json::{Map, Value};

use crate::verify::claims::string_claim;

/// How the principal kind (human user or service principal) is read from the claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpKind {
    Generic,
    Okta,
    Entra,
    Auth0,
    Databricks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServicePrincipal => "service_principal",
        }
    }
}

/// The OAuth client the token was issued to: `client_id` (RFC 9068), `azp` (OIDC), `appid` (Entra v1).
pub fn client_id(claims: &Map<String, Value>) -> Option<String> {
    ["client_id", "azp", "appid"]
        .iter()
        .find_map(|name| string_claim(claims, name))
}

pub fn principal_kind(
    idp: IdpKind,
    claims: &Map<String, Value>,
    subject: Option<&str>,
) -> PrincipalKind {
    let client = client_id(claims);
    let subject_is_client = subject.is_some() && subject == client.as_deref();
    let service = match idp {
        IdpKind::Generic => subject_is_client,
        IdpKind::Okta => {
            subject_is_client
                || (subject.is_some() && subject == string_claim(claims, "cid").as_deref())
        }
        IdpKind::Entra => match string_claim(claims, "idtyp") {
            Some(idtyp) => idtyp == "app",
            None => !claims.contains_key("scp"),
        },
        IdpKind::Auth0 => {
            string_claim(claims, "gty").as_deref() == Some("client-credentials")
                || subject.is_some_and(|s| s.ends_with("@clients"))
        }
        IdpKind::Databricks => subject.is_some_and(|s| !s.contains('@')),
    };
    if service {
        PrincipalKind::ServicePrincipal
    } else {
        PrincipalKind::User
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn principal_kind_per_idp() {
        use PrincipalKind::{ServicePrincipal as Sp, User};
        let cases = [
            (
                IdpKind::Generic,
                json!({"sub": "app1", "client_id": "app1"}),
                Sp,
            ),
            (
                IdpKind::Generic,
                json!({"sub": "alice", "client_id": "app1"}),
                User,
            ),
            (IdpKind::Okta, json!({"sub": "0oa1", "cid": "0oa1"}), Sp),
            (
                IdpKind::Okta,
                json!({"sub": "alice@x.com", "cid": "0oa1", "uid": "00u1"}),
                User,
            ),
            (
                IdpKind::Entra,
                json!({"sub": "s", "idtyp": "app", "roles": ["r"]}),
                Sp,
            ),
            (
                IdpKind::Entra,
                json!({"sub": "s", "idtyp": "user", "scp": "x"}),
                User,
            ),
            (IdpKind::Entra, json!({"sub": "s", "roles": ["r"]}), Sp),
            (IdpKind::Entra, json!({"sub": "s", "scp": "x"}), User),
            (
                IdpKind::Auth0,
                json!({"sub": "abc@clients", "gty": "client-credentials"}),
                Sp,
            ),
            (IdpKind::Auth0, json!({"sub": "auth0|123"}), User),
            (
                IdpKind::Databricks,
                json!({"sub": "7f0c2a8e-1111-2222-3333-444455556666"}),
                Sp,
            ),
            (
                IdpKind::Databricks,
                json!({"sub": "alice@example.com"}),
                User,
            ),
        ];
        for (idp, claims, expected) in cases {
            let claims = claims.as_object().unwrap().clone();
            let subject = string_claim(&claims, "sub");
            assert_eq!(
                principal_kind(idp, &claims, subject.as_deref()),
                expected,
                "{idp:?} {claims:?}"
            );
        }
    }

    #[test]
    fn client_id_precedence() {
        let claims = json!({"azp": "b", "appid": "c"})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(client_id(&claims).as_deref(), Some("b"));
    }
}
