//! Refusals decided outside the engine's pipeline: brickgate cannot decide (not configured, a
//! host call failed) or the body is longer than it reads. They become a `Decision::Deny` like
//! any other, so the adapter counts (`brickgate.denied.<reason>`) and audits them the same way.

use crate::engine::{Decision, Request};
use crate::error::AuthError;
use crate::identity::AuditRecord;

/// `error` as the refusal of `request`, with its audit record. `realm` is the configured one,
/// or `"brickgate"` when there is no configuration.
pub fn refusal(request: &Request<'_>, error: AuthError, realm: &str) -> Decision {
    let response = error.to_response(realm);
    let audit = AuditRecord {
        decision: "deny",
        reason: Some(error.reason.as_str()),
        status: response.status,
        method: request.method.to_string(),
        path: request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_string(),
        request_id: request
            .headers
            .iter()
            .find(|(name, _)| name == "x-request-id")
            .map(|(_, value)| value.clone()),
        detail: Some(error.detail),
        ..AuditRecord::default()
    };
    Decision::Deny { response, audit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;

    fn request<'a>(headers: &'a [(String, String)]) -> Request<'a> {
        Request {
            method: "POST",
            path: "/serving-endpoints/chat/invocations?x=1",
            headers,
            body: None,
            fingerprint: false,
        }
    }

    #[test]
    fn internal_and_body_refusals_are_audited_like_any_other() {
        let headers = vec![("x-request-id".to_string(), "r-1".to_string())];
        let cases = [
            (
                AuthError::internal("cannot read the request headers"),
                503,
                "internal_error",
            ),
            (AuthError::body_too_large(10), 413, "body_too_large"),
        ];
        for (error, status, reason) in cases {
            let Decision::Deny { response, audit } = refusal(&request(&headers), error, "gw")
            else {
                panic!("{reason}: not a refusal");
            };
            assert_eq!(response.status, status);
            assert_eq!(response.header("x-brickgate-reason"), Some(reason));
            assert_eq!(audit.decision, "deny");
            assert_eq!(audit.reason, Some(reason));
            assert_eq!(audit.status, status);
            assert_eq!(audit.path, "/serving-endpoints/chat/invocations");
            assert_eq!(audit.request_id.as_deref(), Some("r-1"));
            assert!(audit.subject.is_none() && audit.claimed_subject.is_none());
            assert!(
                crate::metrics::all_counters().contains(&format!("brickgate.denied.{reason}")),
                "{reason}"
            );
        }
        assert_eq!(Reason::Internal.as_str(), "internal_error");
    }
}
