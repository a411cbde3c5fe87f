//! Counter names: a closed set defined once at start-up, so cardinality is bounded.
//! Envoy shows them under `wasmcustom.` in its stats.

use crate::error::Reason;

pub const ALLOWED: &str = "brickgate.allowed";
pub const ALLOWED_ANONYMOUS: &str = "brickgate.allowed_anonymous";
pub const DENIED: &str = "brickgate.denied";
/// Dry-run: refusals reported instead of sent (`brickgate.would_deny.<reason>` by reason).
pub const WOULD_DENY: &str = "brickgate.would_deny";
pub const JWKS_FETCH_SUCCESS: &str = "brickgate.jwks.fetch_success";
pub const JWKS_FETCH_FAILED: &str = "brickgate.jwks.fetch_failed";
pub const JWKS_KEYS_SKIPPED: &str = "brickgate.jwks.keys_skipped";
pub const JWKS_KID_MISS_REFETCH: &str = "brickgate.jwks.kid_miss_refetch";
pub const JWKS_STALE_SERVED: &str = "brickgate.jwks.stale_served";
/// A key set was adopted with more keys without `kid` than a token is tried against
/// (`KeySet::too_many_without_kid`).
pub const JWKS_KEYS_WITHOUT_KID_CAPPED: &str = "brickgate.jwks.keys_without_kid_capped";
pub const UPSTREAM_TOKEN_FETCH: &str = "brickgate.upstream_token.fetch";
/// Token calls the root context's tick sent: ones a stream could not send at once, or whose
/// sending stream went away before the answer. Zero in normal operation.
pub const UPSTREAM_TOKEN_FETCH_DEFERRED: &str = "brickgate.upstream_token.fetch_deferred";
pub const UPSTREAM_TOKEN_CACHE_HIT: &str = "brickgate.upstream_token.cache_hit";
pub const UPSTREAM_TOKEN_FAILED: &str = "brickgate.upstream_token.failed";
pub const TOKEN_CACHE_HIT: &str = "brickgate.token_cache.hit";
pub const TOKEN_CACHE_MISS: &str = "brickgate.token_cache.miss";

/// One counter per (decision, reason, rule) seen, defined on first use: the name carries the
/// labels, and Envoy's stats tag extraction (`stats_config.stats_tags`, docs/OPERATIONS.md)
/// turns it into `brickgate_requests_total{decision=…,reason=…,rule=…}`. Bounded by the
/// configuration: decisions × reasons × rules. The rule comes last: its name may hold dots.
pub const REQUESTS: &str = "brickgate.requests_total";
/// Histogram of the time from a request's headers to its decision, in microseconds
/// (includes waiting for keys or a Databricks token).
pub const DECISION_TIME_US: &str = "brickgate.decision_time_us";
/// Label value when a request has no reason (allowed) or no rule (refused before one matched).
pub const NO_LABEL: &str = "none";

/// The labelled request counter's full name.
pub fn request_counter(decision: &str, reason: Option<&str>, rule: Option<&str>) -> String {
    format!(
        "{REQUESTS}.decision.{decision}.reason.{}.rule.{}",
        reason.unwrap_or(NO_LABEL),
        rule.unwrap_or(NO_LABEL)
    )
}

pub fn denied_for(reason: Reason) -> String {
    format!("{DENIED}.{}", reason.as_str())
}

pub fn would_deny_for(reason: Reason) -> String {
    format!("{WOULD_DENY}.{}", reason.as_str())
}

/// Every counter the filter defines.
pub fn all_counters() -> Vec<String> {
    let mut names: Vec<String> = [
        ALLOWED,
        ALLOWED_ANONYMOUS,
        DENIED,
        WOULD_DENY,
        JWKS_FETCH_SUCCESS,
        JWKS_FETCH_FAILED,
        JWKS_KEYS_SKIPPED,
        JWKS_KID_MISS_REFETCH,
        JWKS_STALE_SERVED,
        JWKS_KEYS_WITHOUT_KID_CAPPED,
        TOKEN_CACHE_HIT,
        TOKEN_CACHE_MISS,
        UPSTREAM_TOKEN_FETCH,
        UPSTREAM_TOKEN_FETCH_DEFERRED,
        UPSTREAM_TOKEN_CACHE_HIT,
        UPSTREAM_TOKEN_FAILED,
    ]
    .iter()
    .map(|name| name.to_string())
    .collect();
    names.extend(Reason::ALL.iter().map(|reason| denied_for(*reason)));
    names.extend(Reason::ALL.iter().map(|reason| would_deny_for(*reason)));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_unique_and_cover_every_reason() {
        let mut names = all_counters();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
        for &reason in Reason::ALL {
            assert!(names.contains(&denied_for(reason)), "{reason:?}");
        }
        assert_eq!(
            request_counter("deny", Some("expired"), Some("databricks:clusters:list")),
            "brickgate.requests_total.decision.deny.reason.expired.rule.databricks:clusters:list"
        );
        assert_eq!(
            request_counter("allow", None, None),
            "brickgate.requests_total.decision.allow.reason.none.rule.none"
        );
        for name in [
            "brickgate.denied.internal_error",
            "brickgate.denied.body_too_large",
            "brickgate.jwks.keys_without_kid_capped",
        ] {
            assert!(names.contains(&name.to_string()), "{name}");
        }
    }
}
