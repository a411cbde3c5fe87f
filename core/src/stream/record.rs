//! One record per answered stream: the audit record and the counters it moves.

use std::borrow::Cow;

use crate::engine::WOULD_DENY;
use crate::error::AuthError;
use crate::identity::AuditRecord;
use crate::metrics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub audit: AuditRecord,
    counters: Vec<&'static str>,
}

impl Record {
    pub fn allowed(mut audit: AuditRecord, mut counters: Vec<&'static str>) -> Record {
        audit.bound_client_fields();
        if audit.decision == WOULD_DENY {
            // Dry-run: counted apart from what was allowed outright (and by reason below).
            counters.push(metrics::WOULD_DENY);
        } else if audit.provider.is_none() {
            counters.push(metrics::ALLOWED_ANONYMOUS);
        } else {
            counters.push(metrics::ALLOWED);
            if audit.stale_keys {
                counters.push(metrics::JWKS_STALE_SERVED);
            }
        }
        Record { audit, counters }
    }

    pub fn denied(mut audit: AuditRecord, mut counters: Vec<&'static str>) -> Record {
        audit.bound_client_fields();
        counters.push(metrics::DENIED);
        Record { audit, counters }
    }

    pub fn is_allowed(&self) -> bool {
        self.audit.decision == "allow"
    }

    /// The labels of the request counter this record moves (`metrics::request_counter`):
    /// decision, reason (not for an allow), rule.
    pub fn request_labels(&self) -> (&'static str, Option<&'static str>, Option<&str>) {
        let reason = (!self.is_allowed()).then_some(self.audit.reason).flatten();
        (self.audit.decision, reason, self.audit.rule.as_deref())
    }

    /// Every counter this record moves by one.
    pub fn counters(&self) -> impl Iterator<Item = Cow<'static, str>> + '_ {
        let family = if self.audit.decision == WOULD_DENY {
            metrics::WOULD_DENY
        } else {
            metrics::DENIED
        };
        let by_reason = (!self.is_allowed())
            .then_some(self.audit.reason)
            .flatten()
            .map(|reason| Cow::Owned(format!("{family}.{reason}")));
        self.counters
            .iter()
            .map(|name| Cow::Borrowed(*name))
            .chain(by_reason)
    }
}

/// Verified-token cache counters for a decision that looked at a token.
pub fn cache_counters(audit: &AuditRecord) -> Vec<&'static str> {
    match audit.cache {
        Some("hit") => vec![metrics::TOKEN_CACHE_HIT],
        Some(_) => vec![metrics::TOKEN_CACHE_MISS],
        None => Vec::new(),
    }
}

/// The record of a request refused outside the engine (body limit, host trouble); its
/// client-chosen fields are bounded as the record is made (`Record::denied`).
pub fn refusal_audit(headers: &[(String, String)], error: &AuthError, status: u32) -> AuditRecord {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let path = header(":path")
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    AuditRecord {
        decision: "deny",
        reason: Some(error.reason.as_str()),
        status,
        method: header(":method").unwrap_or_default().to_string(),
        path,
        request_id: header("x-request-id").map(str::to_string),
        detail: Some(error.detail.clone()),
        ..AuditRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record is bounded as it is made, the engine's and one refused outside it alike.
    #[test]
    fn a_record_bounds_the_fields_a_client_chose() {
        use crate::error::Reason;
        use crate::identity::audit::{MAX_PATH_BYTES, MAX_REQUEST_ID_BYTES};
        let headers = [
            (":method".to_string(), "GET".to_string()),
            (":path".to_string(), format!("/{}?q=1", "p".repeat(100_000))),
            ("x-request-id".to_string(), "r".repeat(100_000)),
        ];
        let error = AuthError::new(Reason::Overloaded, "held bodies are full");
        let refused = Record::denied(refusal_audit(&headers, &error, 503), Vec::new());
        let engine_made = AuditRecord {
            path: "/".repeat(100_000),
            request_id: Some("r".repeat(100_000)),
            ..AuditRecord::default()
        };
        for record in [refused, Record::allowed(engine_made, Vec::new())] {
            assert!(record.audit.path.len() <= MAX_PATH_BYTES);
            assert!(record.audit.path.ends_with("bytes]"));
            let request_id = record.audit.request_id.unwrap_or_default();
            assert!(request_id.len() <= MAX_REQUEST_ID_BYTES && request_id.ends_with("bytes]"));
        }
    }

    #[test]
    fn a_reported_refusal_is_counted_apart_by_reason() {
        let audit = |decision, reason| AuditRecord {
            decision,
            reason,
            provider: Some("p".into()),
            ..AuditRecord::default()
        };
        let counted = |record: Record| {
            record
                .counters()
                .map(|c| c.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            counted(Record::allowed(
                audit("would_deny", Some("expired")),
                vec![]
            )),
            ["brickgate.would_deny", "brickgate.would_deny.expired"]
        );
        assert_eq!(
            counted(Record::allowed(audit("allow", None), vec![])),
            ["brickgate.allowed"]
        );
        assert_eq!(
            counted(Record::denied(audit("deny", Some("expired")), vec![])),
            ["brickgate.denied", "brickgate.denied.expired"]
        );
    }
}
