//! Model serving endpoints, for every API shape Databricks documents, so that a per-endpoint
//! rule cannot be side-stepped by choosing another shape for the same endpoint:
//!
//! - named in the path: `/serving-endpoints/{name}/invocations` and, for one served model,
//!   `/serving-endpoints/{name}/served-models/{model}/invocations` (Query API,
//!   <https://docs.databricks.com/api/workspace/servingendpoints/query>); Gemini-style
//!   `/serving-endpoints/gemini/v1beta/models/{name}:{method}`
//!   (<https://docs.databricks.com/aws/en/machine-learning/model-serving/query-gemini-api>) and
//!   `/ai-gateway/gemini/v1beta/models/{name}:{method}`
//!   (<https://docs.databricks.com/aws/en/generative-ai/foundation-models/gemini-api>): these
//!   never need a body `model`;
//! - named in the JSON body's `model`: the OpenAI-compatible chat, completions, embeddings and
//!   responses routes (<https://docs.databricks.com/aws/en/machine-learning/model-serving/query-chat-models>,
//!   <https://docs.databricks.com/aws/en/machine-learning/model-serving/query-openai-responses>),
//!   the open-responses route
//!   (<https://docs.databricks.com/gcp/en/machine-learning/model-serving/query-open-responses-models>),
//!   the Anthropic-compatible messages route
//!   (<https://docs.databricks.com/aws/en/machine-learning/model-serving/query-anthropic-messages>),
//!   and every other AI Gateway POST (`/ai-gateway/mlflow/v1/…`, `/ai-gateway/anthropic/v1/messages`,
//!   <https://docs.databricks.com/gcp/en/generative-ai/foundation-models/anthropic-messages>).
//!
//! The body is read strictly: one top-level object whose keys are unique, so
//! `{"model":"a","model":"b"}` cannot mean one endpoint to brickgate and another to the
//! upstream. Names that differ from a configured one only in letter case are refused by the
//! matcher (`policy::match_rule`).

use serde_json::Value;

use crate::error::{AuthError, Reason};
use crate::token::parse_object_strict;

/// The `/serving-endpoints/…` routes whose endpoint is the body's `model` (pages in the module
/// documentation): OpenAI-compatible chat, completions, embeddings and responses; open-responses;
/// Anthropic-compatible messages.
pub const BODY_NAMED_ROUTES: [&str; 6] = [
    "/serving-endpoints/chat/completions",
    "/serving-endpoints/completions",
    "/serving-endpoints/embeddings",
    "/serving-endpoints/responses",
    "/serving-endpoints/open-responses",
    "/serving-endpoints/anthropic/v1/messages",
];

/// The AI Gateway's routes; its POSTs name their endpoint in the body's `model`, except the
/// Gemini-style ones, which name it in the path.
pub const AI_GATEWAY_PREFIX: &str = "/ai-gateway/";

/// The Gemini-style routes: `<prefix>{name}:{method}` (`generateContent`, and whatever other
/// method the Google AI SDK calls on the same model) names endpoint `{name}` in the path.
pub const GEMINI_PREFIXES: [&str; 2] = [
    "/serving-endpoints/gemini/v1beta/models/",
    "/ai-gateway/gemini/v1beta/models/",
];

/// Whether the request's serving endpoint is its body's `model`: the body-named routes and
/// every AI Gateway POST that does not name its endpoint in the path. These are the only routes
/// whose body brickgate reads.
pub fn endpoint_in_body(method: &str, path: &str) -> bool {
    method == "POST"
        && (BODY_NAMED_ROUTES.contains(&path.trim_end_matches('/'))
            || (path.starts_with(AI_GATEWAY_PREFIX) && gemini_endpoint(path).is_none()))
}

/// `{name}` of a Gemini-style `…/v1beta/models/{name}:{method}` path.
fn gemini_endpoint(path: &str) -> Option<&str> {
    let rest = GEMINI_PREFIXES
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    let (name, method) = rest.split_once(':')?;
    let valid = !name.is_empty() && !name.contains('/') && !method.is_empty();
    (valid && !method.contains('/')).then_some(name)
}

/// The serving endpoint a request addresses, if it addresses one.
pub fn endpoint<'a>(method: &str, path: &'a str, model: Option<&'a str>) -> Option<&'a str> {
    if endpoint_in_body(method, path) {
        return model;
    }
    if let Some(name) = gemini_endpoint(path) {
        return Some(name);
    }
    let rest = path
        .strip_prefix("/serving-endpoints/")?
        .trim_end_matches('/')
        .strip_suffix("/invocations")?;
    let name = match rest.split_once("/served-models/") {
        Some((name, served)) if !served.is_empty() && !served.contains('/') => name,
        Some(_) => return None,
        None => rest,
    };
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The `model` of an OpenAI-style request body.
pub fn model_from_body(body: &[u8], max_bytes: usize) -> Result<String, AuthError> {
    if body.len() > max_bytes {
        return Err(AuthError::new(
            Reason::BodyTooLarge,
            format!(
                "request body of {} bytes exceeds the {max_bytes} bytes brickgate reads to find the serving endpoint",
                body.len()
            ),
        ));
    }
    let bad = || {
        AuthError::new(
            Reason::BadBody,
            "request body must be a JSON object with a string \"model\" naming the serving endpoint",
        )
    };
    let document = parse_object_strict(body).map_err(|problem| {
        if problem.starts_with("duplicate key") {
            AuthError::new(
                Reason::BadBody,
                "request body repeats a top-level key; an upstream may read another \"model\" than brickgate",
            )
        } else {
            bad()
        }
    })?;
    // An upstream that matches keys ignoring case (Go's `encoding/json` does, the last match
    // winning) reads `"MODEL"` as `model`: such a second key could name another endpoint.
    if let Some(other) = document
        .keys()
        .find(|key| *key != "model" && reads_as_model(key))
    {
        return Err(AuthError::new(
            Reason::BadBody,
            format!(
                "request body has the key {:?}, which an upstream matching keys ignoring case \
                 reads as \"model\"; send \"model\" once, in lower case",
                crate::error::echo_at_most(other, 16)
            ),
        ));
    }
    let model = document
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    let valid = !model.is_empty()
        && model.len() <= 256
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(bad());
    }
    Ok(model.to_string())
}

/// Whether `key` equals `model` under Unicode case folding.
fn reads_as_model(key: &str) -> bool {
    key.chars().flat_map(char::to_lowercase).eq("model".chars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_paths_and_bodies() {
        assert_eq!(
            endpoint("POST", "/serving-endpoints/fraud/invocations", None),
            Some("fraud")
        );
        assert_eq!(
            endpoint("POST", "/serving-endpoints/chat/completions", Some("llama")),
            Some("llama")
        );
        assert_eq!(
            endpoint("POST", "/serving-endpoints/chat/completions", None),
            None
        );
        assert_eq!(
            endpoint("GET", "/serving-endpoints/chat/completions", Some("x")),
            None
        );
        assert_eq!(
            endpoint("POST", "/serving-endpoints/a/b/invocations", None),
            None
        );
        assert_eq!(endpoint("POST", "/api/2.0/serving-endpoints/x", None), None);
        // one served model of an endpoint is still that endpoint
        assert_eq!(
            endpoint(
                "POST",
                "/serving-endpoints/fraud/served-models/v2/invocations",
                None
            ),
            Some("fraud")
        );
        assert_eq!(
            endpoint(
                "POST",
                "/serving-endpoints/fraud/served-models//invocations",
                None
            ),
            None
        );
        assert_eq!(
            endpoint(
                "POST",
                "/serving-endpoints/fraud/served-models/a/b/invocations",
                None
            ),
            None
        );
        // the AI gateway names its endpoint in the body
        assert_eq!(
            endpoint(
                "POST",
                "/ai-gateway/mlflow/v1/chat/completions",
                Some("fraud")
            ),
            Some("fraud")
        );
        assert_eq!(endpoint("POST", "/ai-gateway/anything", None), None);
        // every other documented shape names the same endpoint
        for path in [
            "/serving-endpoints/open-responses",
            "/serving-endpoints/anthropic/v1/messages",
            "/ai-gateway/anthropic/v1/messages",
            "/ai-gateway/mlflow/v1/responses",
        ] {
            assert!(endpoint_in_body("POST", path), "{path}");
            assert_eq!(
                endpoint("POST", path, Some("fraud")),
                Some("fraud"),
                "{path}"
            );
        }
        // Gemini-style routes name it in the path, and never read the body for it
        for (path, name) in [
            (
                "/serving-endpoints/gemini/v1beta/models/databricks-gemini-2-5-pro:generateContent",
                Some("databricks-gemini-2-5-pro"),
            ),
            (
                "/serving-endpoints/gemini/v1beta/models/fraud:streamGenerateContent",
                Some("fraud"),
            ),
            (
                "/ai-gateway/gemini/v1beta/models/system.ai.gemini-2-5-pro:generateContent",
                Some("system.ai.gemini-2-5-pro"),
            ),
            (
                "/serving-endpoints/gemini/v1beta/models/:generateContent",
                None,
            ),
            ("/serving-endpoints/gemini/v1beta/models/fraud:", None),
            ("/serving-endpoints/gemini/v1beta/models/fraud", None),
            (
                "/serving-endpoints/gemini/v1beta/models/a/b:generateContent",
                None,
            ),
        ] {
            assert!(
                !endpoint_in_body("POST", path) || !path.starts_with("/serving"),
                "{path}"
            );
            assert_eq!(endpoint("POST", path, None), name, "{path}");
        }
        assert!(!endpoint_in_body(
            "POST",
            "/ai-gateway/gemini/v1beta/models/fraud:generateContent"
        ));
        // a malformed AI Gateway Gemini path is read as body-named, as every AI Gateway POST
        assert!(endpoint_in_body(
            "POST",
            "/ai-gateway/gemini/v1beta/models/fraud"
        ));
        assert!(endpoint_in_body("POST", "/ai-gateway/mlflow/v1/embeddings"));
        assert!(!endpoint_in_body("GET", "/ai-gateway/mlflow/v1/models"));
        assert!(!endpoint_in_body("POST", "/ai-gatewayx/v1"));
    }

    #[test]
    fn models_are_read_strictly() {
        assert_eq!(
            model_from_body(br#"{"model": "llama-3", "messages": []}"#, 1000).unwrap(),
            "llama-3"
        );
        let cases: [(&[u8], Reason); 10] = [
            (br#"{"messages": []}"#, Reason::BadBody),
            (br#"{"model": "a", "model": "b"}"#, Reason::BadBody),
            (br#"{"model": "a", "mod\u0065l": "b"}"#, Reason::BadBody),
            (
                br#"{"model": "a", "messages": [], "model": "a"}"#,
                Reason::BadBody,
            ),
            (br#"{"model": "a"} {"model": "b"}"#, Reason::BadBody),
            (br#"[{"model": "a"}]"#, Reason::BadBody),
            (br#"{"model": 5}"#, Reason::BadBody),
            (br#"{"model": "../x"}"#, Reason::BadBody),
            (b"not json", Reason::BadBody),
            (&[b' '; 2000], Reason::BodyTooLarge),
        ];
        for (body, reason) in cases {
            assert_eq!(model_from_body(body, 1000).unwrap_err().reason, reason);
        }
    }
}
