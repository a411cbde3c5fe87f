//! Model serving endpoints: named in the path (`/serving-endpoints/{name}/invocations`) or, on
//! the OpenAI-compatible routes, in the JSON body's `model` field. The body is read strictly:
//! one top-level object whose keys are unique, so `{"model":"a","model":"b"}` cannot mean one
//! endpoint to brickgate and another to the upstream. Names that differ from a configured one
//! only in letter case are refused by the matcher (`policy::match_rule`).

use serde_json::Value;

use crate::error::{AuthError, Reason};
use crate::token::parse_object_strict;

/// The OpenAI-compatible routes whose endpoint is the body's `model`.
pub const OPENAI_ROUTES: [&str; 4] = [
    "/serving-endpoints/chat/completions",
    "/serving-endpoints/completions",
    "/serving-endpoints/embeddings",
    "/serving-endpoints/responses",
];

pub fn is_openai_route(method: &str, path: &str) -> bool {
    method == "POST" && OPENAI_ROUTES.contains(&path.trim_end_matches('/'))
}

/// The serving endpoint a request addresses, if it addresses one.
pub fn endpoint<'a>(method: &str, path: &'a str, model: Option<&'a str>) -> Option<&'a str> {
    if is_openai_route(method, path) {
        return model;
    }
    let name = path
        .strip_prefix("/serving-endpoints/")?
        .trim_end_matches('/')
        .strip_suffix("/invocations")?;
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
