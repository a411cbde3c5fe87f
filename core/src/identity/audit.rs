//! One audit record per decision: who, what, which rule, and why; never the token itself,
//! only a fingerprint that can be matched against a token the operator holds.

use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub status: u32,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `subject`, `client_id` and `token_id` come from a token whose signature and claims
    /// verified: they name the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// What a token that did not verify (forged, expired, for another audience …) claims:
    /// whoever sent it chose these, so they never name the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_token_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
    /// `hit` when the verified-token cache answered, `miss` when the token was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// The keys were past their refresh deadline (IdP unreachable), within the grace period.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale_keys: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The first 16 hex digits of SHA-256 over the compact token (`sha256sum`), so an operator
/// holding a token can find its records.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(16);
    for byte in digest.iter().take(8) {
        for nibble in [byte >> 4, byte & 15] {
            out.extend(char::from_digit(u32::from(nibble), 16));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_and_stable() {
        assert_eq!(fingerprint("abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn record_omits_empty_fields() {
        let record = AuditRecord {
            decision: "deny",
            status: 401,
            method: "GET".into(),
            path: "/x".into(),
            ..Default::default()
        };
        assert_eq!(
            record.to_json(),
            r#"{"decision":"deny","status":401,"method":"GET","path":"/x"}"#
        );
    }
}
