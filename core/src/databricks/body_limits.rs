//! How large a request body each serving endpoint accepts. Databricks' Model Serving limits
//! page: "Payload size, per request: 16 MB. For endpoints serving foundation models, external
//! models, or AI agents the limit is 4 MB"
//! (<https://docs.databricks.com/aws/en/machine-learning/model-serving/model-serving-limits>).
//! brickgate refuses a larger body itself (413 `body_too_large`) so the upstream never receives
//! what Databricks would refuse anyway, and so a client learns which limit and which setting.
//!
//! The endpoint kind is known only from the endpoint's name: pay-per-token Foundation Model
//! APIs are named `databricks-*` (`databricks-meta-llama-3-3-70b-instruct`), and the Agent
//! Framework's `agents.deploy()` names its endpoints `agents_<catalog>-<schema>-<model>`.
//! External-model and provisioned-throughput endpoints carry the names their owners chose, so
//! `databricks.serving_body_limits` lets an operator add prefixes for them.

use crate::error::{AuthError, Reason};

/// Databricks' payload limit for most serving endpoints, and the default of
/// `databricks.max_body_bytes`.
pub const SERVING_MAX_BODY_BYTES: u64 = 16 << 20;
/// Databricks' payload limit for foundation-model, external-model and agent endpoints.
pub const GENAI_MAX_BODY_BYTES: u64 = 4 << 20;

/// The built-in `databricks.serving_body_limits`: (prefix, bytes).
pub const DEFAULT_PREFIXES: [(&str, u64); 2] = [
    ("databricks-", GENAI_MAX_BODY_BYTES),
    ("agents_", GENAI_MAX_BODY_BYTES),
];

/// One `databricks.serving_body_limits` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixLimit {
    pub endpoint_prefix: String,
    pub max_body_bytes: usize,
}

/// The per-endpoint body limits: the first entry whose prefix the endpoint name starts with,
/// else `other` (`databricks.max_body_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingBodyLimits {
    pub prefixes: Vec<PrefixLimit>,
    /// Whether `prefixes` came from the configuration (else they are the defaults): only
    /// changes how a refusal names the setting.
    pub configured: bool,
    pub other: usize,
}

impl Default for ServingBodyLimits {
    fn default() -> Self {
        ServingBodyLimits {
            prefixes: DEFAULT_PREFIXES
                .iter()
                .map(|(prefix, bytes)| PrefixLimit {
                    endpoint_prefix: prefix.to_string(),
                    max_body_bytes: *bytes as usize,
                })
                .collect(),
            configured: false,
            other: SERVING_MAX_BODY_BYTES as usize,
        }
    }
}

/// The limit that applies to one endpoint, with what a refusal says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyLimit {
    pub max_bytes: usize,
    /// "foundation-model endpoint `databricks-x`", "agent endpoint …", "serving endpoint …".
    pub subject: String,
    /// The setting that sets this limit.
    pub setting: String,
}

impl BodyLimit {
    /// 413 `body_too_large` naming the endpoint kind and the setting. `size` is the body's
    /// length when known (a `Content-Length`, or the whole body), else the limit was crossed
    /// while the body streamed in.
    pub fn refusal(&self, size: Option<u64>) -> AuthError {
        let size = size.map_or_else(
            || "request body".to_string(),
            |n| format!("request body of {n} bytes"),
        );
        AuthError::new(
            Reason::BodyTooLarge,
            format!(
                "{size} exceeds the {} bytes accepted for {} (set by {})",
                self.max_bytes, self.subject, self.setting
            ),
        )
    }
}

impl ServingBodyLimits {
    pub fn limit_for(&self, endpoint: &str) -> BodyLimit {
        let found = self
            .prefixes
            .iter()
            .enumerate()
            .find(|(_, p)| endpoint.starts_with(&p.endpoint_prefix));
        match found {
            Some((index, prefix)) => BodyLimit {
                max_bytes: prefix.max_body_bytes,
                subject: format!("{} `{endpoint}`", kind_of_prefix(&prefix.endpoint_prefix)),
                setting: if self.configured {
                    format!("databricks.serving_body_limits[{index}]")
                } else {
                    format!(
                        "databricks.serving_body_limits, default for `{}*`",
                        prefix.endpoint_prefix
                    )
                },
            },
            None => BodyLimit {
                max_bytes: self.other,
                subject: format!("serving endpoint `{endpoint}`"),
                setting: "databricks.max_body_bytes".to_string(),
            },
        }
    }
}

/// What kind of endpoint a prefix names, in Databricks' words where it has them.
fn kind_of_prefix(prefix: &str) -> &'static str {
    match prefix {
        "databricks-" => "foundation-model endpoint",
        "agents_" => "agent endpoint",
        _ => "serving endpoint",
    }
}

/// The request's declared `Content-Length`, when it has exactly one well-formed one (Envoy
/// refuses malformed or conflicting lengths before brickgate runs; anything else is treated
/// as unknown, and the body is then counted as it arrives).
pub fn declared_length(headers: &[(String, String)]) -> Option<u64> {
    let mut values = headers
        .iter()
        .filter(|(name, _)| name == "content-length")
        .map(|(_, value)| value.as_str());
    let value = values.next()?;
    if values.next().is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// What the engine does about an endpoint's body limit.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyCheck {
    /// Within the limit (or no body): go on deciding.
    Fits,
    /// Larger than the limit: refuse.
    TooLarge(AuthError),
    /// Size unknown (no `Content-Length`): read the body, at most `max_bytes`, and decide again.
    Read(BodyLimit),
}

/// Check a request to `endpoint` against its limit: the body if it has been read, else the
/// declared length.
pub fn check(limit: BodyLimit, body: Option<&[u8]>, declared: Option<u64>) -> BodyCheck {
    let size = match (body, declared) {
        (Some(body), _) => body.len() as u64,
        (None, Some(declared)) => declared,
        (None, None) => return BodyCheck::Read(limit),
    };
    if size > limit.max_bytes as u64 {
        BodyCheck::TooLarge(limit.refusal(Some(size)))
    } else {
        BodyCheck::Fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn configured(entries: &[(&str, usize)], other: usize) -> ServingBodyLimits {
        ServingBodyLimits {
            prefixes: entries
                .iter()
                .map(|(prefix, bytes)| PrefixLimit {
                    endpoint_prefix: prefix.to_string(),
                    max_body_bytes: *bytes,
                })
                .collect(),
            configured: true,
            other,
        }
    }

    #[test]
    fn each_endpoint_gets_the_first_matching_limit() {
        let defaults = ServingBodyLimits::default();
        let custom = configured(&[("ext-", MIB), ("ext-big-", 8 * MIB)], 12 * MIB);
        // (limits, endpoint, bytes, setting named, kind named)
        let cases: [(&ServingBodyLimits, &str, usize, &str, &str); 7] = [
            (
                &defaults,
                "databricks-meta-llama-3-3-70b-instruct",
                4 * MIB,
                "default for `databricks-*`",
                "foundation-model endpoint",
            ),
            (
                &defaults,
                "agents_main-rag-bot",
                4 * MIB,
                "default for `agents_*`",
                "agent endpoint",
            ),
            (
                &defaults,
                "my-model",
                16 * MIB,
                "databricks.max_body_bytes",
                "serving endpoint",
            ),
            // Case matters: Databricks' names are lower case, and `Databricks-x` is another endpoint.
            (
                &defaults,
                "Databricks-x",
                16 * MIB,
                "databricks.max_body_bytes",
                "serving endpoint",
            ),
            (
                &defaults,
                "agents-x",
                16 * MIB,
                "databricks.max_body_bytes",
                "serving endpoint",
            ),
            // First match wins, even when a later prefix is longer.
            (
                &custom,
                "ext-big-model",
                MIB,
                "databricks.serving_body_limits[0]",
                "serving endpoint",
            ),
            // A configured list replaces the defaults.
            (
                &custom,
                "databricks-llama",
                12 * MIB,
                "databricks.max_body_bytes",
                "serving endpoint",
            ),
        ];
        for (limits, endpoint, bytes, setting, kind) in cases {
            let limit = limits.limit_for(endpoint);
            assert_eq!(limit.max_bytes, bytes, "{endpoint}");
            assert!(
                limit.setting.contains(setting),
                "{endpoint}: {}",
                limit.setting
            );
            assert!(
                limit.subject.starts_with(kind),
                "{endpoint}: {}",
                limit.subject
            );
            assert!(
                limit.subject.contains(endpoint),
                "{endpoint}: {}",
                limit.subject
            );
        }
    }

    #[test]
    fn bodies_are_checked_by_length_read_or_declared() {
        let limit = || ServingBodyLimits::default().limit_for("agents_a-b-c");
        let four = 4 * MIB as u64;
        let big = vec![b' '; 4 * MIB + 1];
        let fits = vec![b' '; 4 * MIB];
        assert_eq!(check(limit(), Some(&fits), None), BodyCheck::Fits);
        assert_eq!(check(limit(), None, Some(four)), BodyCheck::Fits);
        assert_eq!(check(limit(), None, Some(0)), BodyCheck::Fits);
        assert_eq!(check(limit(), None, None), BodyCheck::Read(limit()));
        // The body read wins over a declared length (they agree under Envoy anyway).
        for refused in [
            check(limit(), Some(&big), Some(1)),
            check(limit(), None, Some(four + 1)),
        ] {
            let BodyCheck::TooLarge(error) = refused else {
                panic!("not refused: {refused:?}");
            };
            assert_eq!(error.reason, Reason::BodyTooLarge);
            assert!(
                error.detail.contains("agent endpoint `agents_a-b-c`"),
                "{}",
                error.detail
            );
            assert!(
                error.detail.contains("databricks.serving_body_limits"),
                "{}",
                error.detail
            );
            assert!(error.detail.contains("4194305 bytes"), "{}", error.detail);
        }
    }

    #[test]
    fn declared_length_is_read_strictly() {
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Headers, Option<u64>); 6] = [
            (&[("content-length", "42")], Some(42)),
            (&[], None),
            (&[("content-length", "")], None),
            (&[("content-length", "+4")], None),
            (&[("content-length", "4"), ("content-length", "4")], None),
            (&[("content-length", "99999999999999999999999")], None),
        ];
        for (headers, want) in cases {
            assert_eq!(declared_length(&h(headers)), want, "{headers:?}");
        }
    }
}
