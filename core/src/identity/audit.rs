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

/// One field of a record, as [`AuditRecord::for_each_field`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AuditValue<'a> {
    Text(&'a str),
    Number(u32),
    Flag(bool),
}

impl AuditRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every field the JSON form holds, by the same names and in the same order, without
    /// building it: the access-log object is written from this on every request, so it must
    /// not pay for a `serde_json::Value` tree. A test checks it against the JSON form.
    pub fn for_each_field(&self, mut visit: impl FnMut(&'static str, AuditValue<'_>)) {
        fn text<'a>(
            visit: &mut impl FnMut(&'static str, AuditValue<'a>),
            name: &'static str,
            value: Option<&'a str>,
        ) {
            if let Some(value) = value {
                visit(name, AuditValue::Text(value));
            }
        }
        let v = &mut visit;
        text(v, "decision", Some(self.decision));
        text(v, "reason", self.reason);
        v("status", AuditValue::Number(self.status));
        text(v, "method", Some(&self.method));
        text(v, "path", Some(&self.path));
        text(v, "rule", self.rule.as_deref());
        text(v, "request_id", self.request_id.as_deref());
        text(v, "provider", self.provider.as_deref());
        text(v, "issuer", self.issuer.as_deref());
        text(v, "subject", self.subject.as_deref());
        text(v, "client_id", self.client_id.as_deref());
        text(v, "principal_kind", self.principal_kind);
        text(v, "token_id", self.token_id.as_deref());
        text(v, "claimed_subject", self.claimed_subject.as_deref());
        text(v, "claimed_client_id", self.claimed_client_id.as_deref());
        text(v, "claimed_token_id", self.claimed_token_id.as_deref());
        text(v, "kid", self.kid.as_deref());
        text(v, "alg", self.alg.as_deref());
        text(v, "token_fingerprint", self.token_fingerprint.as_deref());
        text(v, "cache", self.cache);
        if self.stale_keys {
            v("stale_keys", AuditValue::Flag(true));
        }
        text(v, "detail", self.detail.as_deref());
    }
}

/// The most bytes a record keeps of each field whose value the client chooses at will (a header,
/// the path, what an unverified token claims), so one request cannot make a record, the
/// access-log line holding it or the filter-state object of arbitrary size. A longer value is
/// cut on a character boundary and ends in the [`truncated`] mark, within the bound. A request
/// id is a UUID (36 bytes) or a tracing id; a path that brickgate reads may be up to 8 KiB
/// (`policy::MAX_PATH_BYTES`), and 2 KiB keep every path the Databricks API uses whole.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
pub const MAX_PATH_BYTES: usize = 2048;
/// At least the longest mark ([`truncated`] of `usize::MAX`, 50 bytes), as every bound here.
pub const MAX_METHOD_BYTES: usize = 64;
/// `kid`, `alg` and the `claimed_*` fields, read from a token before it verified.
pub const MAX_CLAIMED_BYTES: usize = 256;

impl AuditRecord {
    /// Cuts every client-chosen field to its bound (see [`MAX_PATH_BYTES`]); done once, as the
    /// record is written.
    pub fn bound_client_fields(&mut self) {
        bound(&mut self.method, MAX_METHOD_BYTES);
        bound(&mut self.path, MAX_PATH_BYTES);
        let optional = [
            (&mut self.request_id, MAX_REQUEST_ID_BYTES),
            (&mut self.kid, MAX_CLAIMED_BYTES),
            (&mut self.alg, MAX_CLAIMED_BYTES),
            (&mut self.claimed_subject, MAX_CLAIMED_BYTES),
            (&mut self.claimed_client_id, MAX_CLAIMED_BYTES),
            (&mut self.claimed_token_id, MAX_CLAIMED_BYTES),
        ];
        for (field, max) in optional {
            if let Some(text) = field {
                bound(text, max);
            }
        }
    }
}

/// The mark that ends a cut value: how long the value was, so a reader knows it was cut.
pub fn truncated(original_bytes: usize) -> String {
    format!("…[truncated from {original_bytes} bytes]")
}

/// `text` unchanged within `max` bytes; otherwise its longest prefix that ends on a character
/// boundary and leaves room for the mark, then the mark (`max` bytes at most in all).
fn bound(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mark = truncated(text.len());
    let mut keep = max.saturating_sub(mark.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    text.truncate(keep);
    text.push_str(&mark);
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

    /// `for_each_field` is written by hand for speed: it must list exactly what serde writes.
    #[test]
    fn every_field_is_visited_as_the_json_form_has_it() {
        let full = AuditRecord {
            decision: "would_deny",
            reason: Some("expired"),
            status: 401,
            method: "GET".into(),
            path: "/p".into(),
            rule: Some("r".into()),
            request_id: Some("id".into()),
            provider: Some("okta".into()),
            issuer: Some("https://i".into()),
            subject: Some("s".into()),
            client_id: Some("c".into()),
            principal_kind: Some("user"),
            token_id: Some("j".into()),
            claimed_subject: Some("cs".into()),
            claimed_client_id: Some("cc".into()),
            claimed_token_id: Some("cj".into()),
            kid: Some("k".into()),
            alg: Some("RS256".into()),
            token_fingerprint: Some("f".into()),
            cache: Some("hit"),
            stale_keys: true,
            detail: Some("d".into()),
        };
        for record in [full, AuditRecord::default()] {
            let mut visited = serde_json::Map::new();
            record.for_each_field(|name, value| {
                let value = match value {
                    AuditValue::Text(text) => serde_json::json!(text),
                    AuditValue::Number(number) => serde_json::json!(number),
                    AuditValue::Flag(flag) => serde_json::json!(flag),
                };
                assert!(
                    visited.insert(name.to_string(), value).is_none(),
                    "{name} twice"
                );
            });
            let serde_form: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
            assert_eq!(serde_json::Value::Object(visited), serde_form);
        }
    }

    /// Each client-chosen field, far over its bound, in ASCII and in multi-byte characters.
    #[test]
    fn client_chosen_fields_are_bounded_and_marked() {
        let huge = |unit: &str| unit.repeat(70_000);
        for unit in ["a", "é", "€", "😀"] {
            let mut record = AuditRecord {
                decision: "deny",
                method: huge(unit),
                path: format!("/{}", huge(unit)),
                request_id: Some(huge(unit)),
                kid: Some(huge(unit)),
                alg: Some(huge(unit)),
                claimed_subject: Some(huge(unit)),
                claimed_client_id: Some(huge(unit)),
                claimed_token_id: Some(huge(unit)),
                ..Default::default()
            };
            record.bound_client_fields();
            let fields = [
                (Some(&record.method), MAX_METHOD_BYTES),
                (Some(&record.path), MAX_PATH_BYTES),
                (record.request_id.as_ref(), MAX_REQUEST_ID_BYTES),
                (record.kid.as_ref(), MAX_CLAIMED_BYTES),
                (record.alg.as_ref(), MAX_CLAIMED_BYTES),
                (record.claimed_subject.as_ref(), MAX_CLAIMED_BYTES),
                (record.claimed_client_id.as_ref(), MAX_CLAIMED_BYTES),
                (record.claimed_token_id.as_ref(), MAX_CLAIMED_BYTES),
            ];
            for (field, max) in fields {
                let field = field.unwrap();
                let original = if field.starts_with('/') { 1 } else { 0 } + 70_000 * unit.len();
                let mark = truncated(original);
                assert!(field.len() <= max, "{unit}: {} > {max}", field.len());
                assert!(field.ends_with(&mark), "{unit}: {field}");
                let kept = &field[..field.len() - mark.len()];
                assert!(
                    kept.len() + unit.len() > max - mark.len(),
                    "{unit}: cut too short"
                );
                assert!(
                    kept.trim_start_matches('/')
                        .chars()
                        .all(|c| c.to_string() == unit)
                );
            }
            let json = record.to_json();
            assert!(json.len() < 4096, "{unit}: record of {} bytes", json.len());
            let filter_state = crate::access_log::filter_state_struct(&record);
            assert!(filter_state.len() < 2048, "{unit}: {}", filter_state.len());
        }
    }

    /// So a cut value, mark included, always fits its bound.
    #[test]
    fn every_bound_holds_the_longest_mark() {
        let longest = truncated(usize::MAX).len();
        for max in [
            MAX_REQUEST_ID_BYTES,
            MAX_PATH_BYTES,
            MAX_METHOD_BYTES,
            MAX_CLAIMED_BYTES,
        ] {
            assert!(max >= longest, "{max} < {longest}");
        }
    }

    #[test]
    fn fields_within_their_bounds_are_kept_whole() {
        let mut record = AuditRecord {
            method: "PROPFIND".into(),
            path: format!("/{}", "p".repeat(MAX_PATH_BYTES - 1)),
            request_id: Some("3f1c9e2a-7b4d-4c1e-9a2b-0c5d6e7f8a9b".into()),
            kid: Some("k".repeat(MAX_CLAIMED_BYTES)),
            claimed_subject: Some("é".repeat(MAX_CLAIMED_BYTES / 2)),
            ..Default::default()
        };
        let before = record.clone();
        record.bound_client_fields();
        assert_eq!(record, before);
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
