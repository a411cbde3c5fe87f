//! The one error type: every refusal maps to its HTTP status, its RFC 6750 challenge,
//! its Databricks-style body, its metric and its log reason, all here.

use serde::Serialize;

mod echo;

pub use echo::{MAX_ECHO_CHARS, MAX_ECHO_ITEMS, echo, echo_at_most, echo_list};

/// Databricks' error shape, so the Databricks SDKs surface `message` to the user.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error_code: &'static str,
    message: &'a str,
    details: [ErrorInfo; 1],
}

#[derive(Serialize)]
struct ErrorInfo {
    #[serde(rename = "@type")]
    kind: &'static str,
    reason: &'static str,
    domain: &'static str,
}

/// Why a request was refused. A closed set, so metric names stay bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingToken,
    MalformedCredential,
    MultipleTokens,
    TokenTooLarge,
    MalformedToken,
    UnsupportedHeader,
    TypMismatch,
    IssuerNotAccepted,
    AlgNotAllowed,
    UnknownKid,
    KeyMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    AudienceMismatch,
    /// Exchange mode: the verified token lacks the claim the federation policy maps.
    MissingSubject,
    InsufficientScope,
    GroupNotAllowed,
    NoMatchingRule,
    BadPath,
    /// A request header or trailer that is not UTF-8 text (HTTP/1.1 `obs-text`): brickgate
    /// cannot tell how an upstream would read it.
    BadHeader,
    MethodOverride,
    KeysUnavailable,
    /// The VM holds as many request-body bytes as it may (`databricks.max_held_body_bytes`): a
    /// gateway-side limit, answered 503 so the client retries.
    Overloaded,
    RouteDisabled,
    BadBody,
    BodyTooLarge,
    /// A body held for the decision was not complete within `databricks.body_deadline_ms` of
    /// the request's headers (RFC 9110 §15.5.9, 408 Request Timeout).
    BodyTimeout,
    /// `body_rules: off`: a serving invocation without `Content-Length`, whose size brickgate
    /// cannot count (RFC 9110 §15.5.12, 411 Length Required).
    LengthRequired,
    ExchangeRejected,
    ExchangeFailed,
    /// Service-principal mode: Databricks refused brickgate's own client credentials (wrong
    /// secret, scopes not granted to a scoped secret). The gateway's fault, not the client's.
    UpstreamCredentialsRejected,
    /// brickgate itself could not decide (not configured, a host call failed): a gateway-side
    /// fault, never blamed on the client, answered 503 so the client retries.
    Internal,
    /// A method other than the upper-case ones brickgate forwards (`Post`, `get`, `TRACE`):
    /// rules compare methods exactly, an upstream may not.
    BadMethod,
    /// A path-override header (`X-Original-URL`, …) naming another path than `:path`.
    PathOverride,
    /// Databricks' own credential (a personal access token, or a Databricks-issued OAuth token)
    /// where the route takes tokens from other issuers: the client sent the wrong kind.
    DatabricksCredential,
}

/// The RFC 6750 §3.1 error code carried by the challenge, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeError {
    /// A challenge without an `error` attribute: the client sent no credential.
    Bare,
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    /// No `WWW-Authenticate` at all: the refusal is not about the credential.
    NoChallenge,
}

impl Reason {
    pub const ALL: &[Reason] = &[
        Reason::MissingToken,
        Reason::MalformedCredential,
        Reason::MultipleTokens,
        Reason::TokenTooLarge,
        Reason::MalformedToken,
        Reason::UnsupportedHeader,
        Reason::TypMismatch,
        Reason::IssuerNotAccepted,
        Reason::AlgNotAllowed,
        Reason::UnknownKid,
        Reason::KeyMismatch,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::LifetimeTooLong,
        Reason::AudienceMismatch,
        Reason::MissingSubject,
        Reason::InsufficientScope,
        Reason::GroupNotAllowed,
        Reason::NoMatchingRule,
        Reason::BadPath,
        Reason::BadHeader,
        Reason::MethodOverride,
        Reason::KeysUnavailable,
        Reason::Overloaded,
        Reason::RouteDisabled,
        Reason::BadBody,
        Reason::BodyTooLarge,
        Reason::BodyTimeout,
        Reason::ExchangeRejected,
        Reason::ExchangeFailed,
        Reason::UpstreamCredentialsRejected,
        Reason::Internal,
        Reason::BadMethod,
        Reason::PathOverride,
        Reason::LengthRequired,
        Reason::DatabricksCredential,
    ];

    /// The stable, snake_case name used in metrics, logs, the response header and the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::MalformedCredential => "malformed_credential",
            Reason::MultipleTokens => "multiple_tokens",
            Reason::TokenTooLarge => "token_too_large",
            Reason::MalformedToken => "malformed_token",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::TypMismatch => "typ_mismatch",
            Reason::IssuerNotAccepted => "issuer_not_accepted",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnknownKid => "unknown_kid",
            Reason::KeyMismatch => "key_mismatch",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::MissingSubject => "missing_subject",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::GroupNotAllowed => "group_not_allowed",
            Reason::NoMatchingRule => "no_matching_rule",
            Reason::BadPath => "bad_path",
            Reason::BadHeader => "bad_header",
            Reason::MethodOverride => "method_override",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::Overloaded => "overloaded",
            Reason::RouteDisabled => "route_disabled",
            Reason::BadBody => "bad_body",
            Reason::BodyTooLarge => "body_too_large",
            Reason::BodyTimeout => "body_timeout",
            Reason::LengthRequired => "length_required",
            Reason::ExchangeRejected => "exchange_rejected",
            Reason::ExchangeFailed => "exchange_failed",
            Reason::UpstreamCredentialsRejected => "upstream_credentials_rejected",
            Reason::Internal => "internal_error",
            Reason::BadMethod => "bad_method",
            Reason::PathOverride => "path_override",
            Reason::DatabricksCredential => "databricks_credential",
        }
    }

    pub fn status(self) -> u32 {
        match self.challenge() {
            ChallengeError::Bare | ChallengeError::InvalidToken => 401,
            ChallengeError::InvalidRequest => 400,
            ChallengeError::InsufficientScope => 403,
            ChallengeError::NoChallenge => match self {
                Reason::BadPath
                | Reason::BadHeader
                | Reason::MethodOverride
                | Reason::BadBody
                | Reason::BadMethod
                | Reason::PathOverride => 400,
                Reason::BodyTooLarge => 413,
                Reason::BodyTimeout => 408,
                Reason::LengthRequired => 411,
                Reason::ExchangeFailed | Reason::UpstreamCredentialsRejected => 502,
                Reason::KeysUnavailable | Reason::Overloaded | Reason::Internal => 503,
                _ => 403,
            },
        }
    }

    fn challenge(self) -> ChallengeError {
        match self {
            Reason::MissingToken => ChallengeError::Bare,
            Reason::MalformedCredential | Reason::MultipleTokens | Reason::TokenTooLarge => {
                ChallengeError::InvalidRequest
            }
            Reason::InsufficientScope | Reason::GroupNotAllowed => {
                ChallengeError::InsufficientScope
            }
            Reason::NoMatchingRule
            | Reason::BadPath
            | Reason::BadHeader
            | Reason::MethodOverride
            | Reason::KeysUnavailable
            | Reason::Overloaded
            | Reason::RouteDisabled
            | Reason::BadBody
            | Reason::BodyTooLarge
            | Reason::BodyTimeout
            | Reason::LengthRequired
            | Reason::ExchangeFailed
            | Reason::UpstreamCredentialsRejected
            | Reason::Internal
            | Reason::BadMethod
            | Reason::PathOverride => ChallengeError::NoChallenge,
            _ => ChallengeError::InvalidToken,
        }
    }

    /// Databricks' `error_code` for this status, so the Databricks SDKs show the message.
    fn error_code(self) -> &'static str {
        match self.status() {
            400 | 408 | 411 | 413 => "BAD_REQUEST",
            401 => "UNAUTHENTICATED",
            502 => "INTERNAL_ERROR",
            503 => "TEMPORARILY_UNAVAILABLE",
            _ => "PERMISSION_DENIED",
        }
    }
}

/// A refusal: the reason plus a precise, token-free explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    pub reason: Reason,
    pub detail: String,
    /// For `insufficient_scope`: the scope expression the route needs (RFC 6750 `scope=`).
    pub required_scope: Option<String>,
}

impl AuthError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        AuthError {
            reason,
            detail: detail.into(),
            required_scope: None,
        }
    }

    pub fn insufficient_scope(detail: impl Into<String>, required: String) -> Self {
        AuthError {
            reason: Reason::InsufficientScope,
            detail: detail.into(),
            required_scope: Some(required),
        }
    }

    /// A gateway-side fault (not configured, a host call failed, the host broke its contract):
    /// 503 `internal_error` with `Retry-After`. `why` is brickgate's own words, never text from
    /// the request (which may hold a token).
    pub fn internal(why: impl Into<String>) -> Self {
        AuthError::new(Reason::Internal, format!("{}; retry shortly", why.into()))
    }

    /// The body of an OpenAI-style serving request is longer than brickgate reads.
    pub fn body_too_large(limit: usize) -> Self {
        AuthError::new(
            Reason::BodyTooLarge,
            format!(
                "request body exceeds the {limit} bytes brickgate reads to find the serving endpoint"
            ),
        )
    }

    /// `body_rules: off`: a serving invocation whose size only its body would tell.
    pub fn length_required(limit: usize) -> Self {
        AuthError::new(
            Reason::LengthRequired,
            format!(
                "a request to a serving endpoint needs a Content-Length: brickgate cannot read its body here (body_rules: off) to hold it to the endpoint's {limit}-byte limit"
            ),
        )
    }

    /// The HTTP response this refusal becomes.
    pub fn to_response(&self, realm: &str) -> DenyResponse {
        let reason = self.reason;
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "x-brickgate-reason".to_string(),
                reason.as_str().to_string(),
            ),
        ];
        if let Some(challenge) = self.challenge(realm) {
            headers.push(("www-authenticate".to_string(), challenge));
        }
        if matches!(
            reason,
            Reason::KeysUnavailable | Reason::Overloaded | Reason::Internal
        ) {
            headers.push(("retry-after".to_string(), "5".to_string()));
        }
        let body = ErrorBody {
            error_code: reason.error_code(),
            message: &self.detail,
            details: [ErrorInfo {
                kind: "type.googleapis.com/google.rpc.ErrorInfo",
                reason: reason.as_str(),
                domain: "brickgate",
            }],
        };
        DenyResponse {
            status: reason.status(),
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }

    fn challenge(&self, realm: &str) -> Option<String> {
        let error = match self.reason.challenge() {
            ChallengeError::NoChallenge => return None,
            ChallengeError::Bare => return Some(format!("Bearer realm=\"{realm}\"")),
            ChallengeError::InvalidRequest => "invalid_request",
            ChallengeError::InvalidToken => "invalid_token",
            ChallengeError::InsufficientScope => "insufficient_scope",
        };
        let mut value = format!(
            "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
            quoted_string_safe(&self.detail)
        );
        if let Some(scope) = &self.required_scope {
            value.push_str(&format!(", scope=\"{}\"", quoted_string_safe(scope)));
        }
        Some(value)
    }
}

/// RFC 6750 restricts attribute values to %x20-21 / %x23-5B / %x5D-7E: drop the rest.
fn quoted_string_safe(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .collect()
}

/// A local reply, ready for the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl DenyResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_maps_to_status_code_and_challenge() {
        let cases: &[(Reason, u32, &str, Option<&str>)] = &[
            (
                Reason::MissingToken,
                401,
                "UNAUTHENTICATED",
                Some("Bearer realm=\"r\""),
            ),
            (
                Reason::MultipleTokens,
                400,
                "BAD_REQUEST",
                Some("invalid_request"),
            ),
            (
                Reason::Expired,
                401,
                "UNAUTHENTICATED",
                Some("invalid_token"),
            ),
            (
                Reason::InsufficientScope,
                403,
                "PERMISSION_DENIED",
                Some("insufficient_scope"),
            ),
            (Reason::NoMatchingRule, 403, "PERMISSION_DENIED", None),
            (Reason::BadPath, 400, "BAD_REQUEST", None),
            (Reason::MethodOverride, 400, "BAD_REQUEST", None),
            (Reason::BadMethod, 400, "BAD_REQUEST", None),
            (Reason::PathOverride, 400, "BAD_REQUEST", None),
            (
                Reason::KeysUnavailable,
                503,
                "TEMPORARILY_UNAVAILABLE",
                None,
            ),
            (Reason::Internal, 503, "TEMPORARILY_UNAVAILABLE", None),
            (Reason::BodyTooLarge, 413, "BAD_REQUEST", None),
            (Reason::ExchangeFailed, 502, "INTERNAL_ERROR", None),
            (
                Reason::UpstreamCredentialsRejected,
                502,
                "INTERNAL_ERROR",
                None,
            ),
        ];
        for (reason, status, code, challenge) in cases {
            let response = AuthError::new(*reason, "why").to_response("r");
            assert_eq!(response.status, *status, "{reason:?}");
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["error_code"], *code, "{reason:?}");
            assert_eq!(body["details"][0]["reason"], reason.as_str());
            match challenge {
                None => assert_eq!(response.header("www-authenticate"), None),
                Some(part) => assert!(
                    response.header("www-authenticate").unwrap().contains(part),
                    "{reason:?}"
                ),
            }
        }
    }

    #[test]
    fn missing_token_challenge_has_no_error_attribute() {
        let response = AuthError::new(Reason::MissingToken, "none").to_response("gw");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"gw\"")
        );
    }

    #[test]
    fn insufficient_scope_names_the_required_scope_and_escapes_quotes() {
        let error = AuthError::insufficient_scope("needs \"jobs\"\n", "jobs".to_string());
        let challenge = error
            .to_response("gw")
            .header("www-authenticate")
            .unwrap()
            .to_string();
        assert_eq!(
            challenge,
            "Bearer realm=\"gw\", error=\"insufficient_scope\", \
             error_description=\"needs 'jobs'?\", scope=\"jobs\""
        );
    }

    #[test]
    fn body_uses_the_databricks_error_shape() {
        let response = AuthError::new(Reason::Expired, "token expired").to_response("gw");
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            r#"{"error_code":"UNAUTHENTICATED","message":"token expired","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"expired","domain":"brickgate"}]}"#
        );
    }

    #[test]
    fn keys_unavailable_asks_to_retry() {
        let response = AuthError::new(Reason::KeysUnavailable, "x").to_response("gw");
        assert_eq!(response.header("retry-after"), Some("5"));
    }

    /// One arm per variant and no wildcard: a new `Reason` does not compile until it is listed
    /// here, and the test below then fails until it is in `Reason::ALL`, which defines its counter.
    fn position(reason: Reason) -> usize {
        match reason {
            Reason::MissingToken => 0,
            Reason::MalformedCredential => 1,
            Reason::MultipleTokens => 2,
            Reason::TokenTooLarge => 3,
            Reason::MalformedToken => 4,
            Reason::UnsupportedHeader => 5,
            Reason::TypMismatch => 6,
            Reason::IssuerNotAccepted => 7,
            Reason::AlgNotAllowed => 8,
            Reason::UnknownKid => 9,
            Reason::KeyMismatch => 10,
            Reason::BadSignature => 11,
            Reason::Expired => 12,
            Reason::NotYetValid => 13,
            Reason::IssuedInFuture => 14,
            Reason::LifetimeTooLong => 15,
            Reason::AudienceMismatch => 16,
            Reason::MissingSubject => 17,
            Reason::InsufficientScope => 18,
            Reason::GroupNotAllowed => 19,
            Reason::NoMatchingRule => 20,
            Reason::BadPath => 21,
            Reason::BadHeader => 22,
            Reason::MethodOverride => 23,
            Reason::KeysUnavailable => 24,
            Reason::Overloaded => 25,
            Reason::RouteDisabled => 26,
            Reason::BadBody => 27,
            Reason::BodyTooLarge => 28,
            Reason::BodyTimeout => 29,
            Reason::ExchangeRejected => 30,
            Reason::ExchangeFailed => 31,
            Reason::UpstreamCredentialsRejected => 32,
            Reason::Internal => 33,
            Reason::BadMethod => 34,
            Reason::PathOverride => 35,
            Reason::LengthRequired => 36,
            Reason::DatabricksCredential => 37,
        }
    }

    #[test]
    fn every_reason_is_listed_counted_and_answered_without_secrets() {
        let positions: Vec<usize> = Reason::ALL.iter().map(|r| position(*r)).collect();
        assert_eq!(positions, (0..Reason::ALL.len()).collect::<Vec<_>>());
        let counters = crate::metrics::all_counters();
        let allowed_headers = [
            "content-type",
            "x-brickgate-reason",
            "www-authenticate",
            "retry-after",
        ];
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        for &reason in Reason::ALL {
            let name = reason.as_str();
            assert!(
                counters.contains(&crate::metrics::denied_for(reason)),
                "{name} has no counter"
            );
            assert!(
                [400, 401, 403, 408, 411, 413, 502, 503].contains(&reason.status()),
                "{name}"
            );
            let response = AuthError::new(reason, "why").to_response("r");
            for (header, value) in &response.headers {
                assert!(
                    allowed_headers.contains(&header.as_str()),
                    "{name}: {header}"
                );
                assert!(value.chars().all(|c| (' '..='~').contains(&c)), "{name}");
                assert!(!value.contains(token), "{name}");
            }
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(
                body["message"], "why",
                "{name}: the message is the detail alone"
            );
            assert_eq!(body["details"][0]["reason"], name);
            assert_eq!(response.header("x-brickgate-reason"), Some(name));
        }
    }

    #[test]
    fn internal_errors_are_the_gateways_not_the_clients() {
        let error = AuthError::internal("brickgate cannot read the request headers");
        assert_eq!(error.reason, Reason::Internal);
        assert_eq!(
            error.detail,
            "brickgate cannot read the request headers; retry shortly"
        );
        let response = error.to_response("gw");
        assert_eq!(response.status, 503);
        assert_eq!(
            response.header("x-brickgate-reason"),
            Some("internal_error")
        );
        assert_eq!(response.header("retry-after"), Some("5"));
        assert_eq!(
            response.header("www-authenticate"),
            None,
            "no credential blamed"
        );
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["error_code"], "TEMPORARILY_UNAVAILABLE");
    }

    #[test]
    fn body_too_large_is_a_refusal_of_its_own() {
        let response = AuthError::body_too_large(1024).to_response("gw");
        assert_eq!(response.status, 413);
        assert_eq!(
            response.header("x-brickgate-reason"),
            Some("body_too_large")
        );
        assert_eq!(response.header("retry-after"), None);
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
