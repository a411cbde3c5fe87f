//! Strip every header brickgate owns, then set verified ones: a client can never supply its
//! own identity (envoy#35553-style spoofing).

use serde_json::{Map, Value};

use crate::header_name::has_header_prefix;
use crate::verify::claims::claim_at;

const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// Names of request headers that start with `prefix`, whatever their case and whether they
/// are spelled with `_` or `-` (`X_Brickgate_Subject`): some upstreams read them as the same.
pub fn headers_to_strip(headers: &[(String, String)], prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .filter(|(name, _)| has_header_prefix(name, prefix))
        .map(|(name, _)| name.clone())
        .collect();
    names.dedup();
    names
}

/// Printable ASCII only, bounded: a claim cannot inject header syntax or flood the upstream.
pub fn header_value_safe(value: &str) -> bool {
    value.len() <= MAX_HEADER_VALUE_BYTES && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The verified identity headers (`None` values and unsafe values are skipped).
pub fn identity_headers(
    prefix: &str,
    built_in: Vec<(&str, Option<String>)>,
    claims: &Map<String, Value>,
    claim_headers: &[(String, String)],
) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> =
        Vec::with_capacity(built_in.len() + claim_headers.len());
    for (suffix, value) in built_in {
        if let Some(value) = value {
            let mut name = String::with_capacity(prefix.len() + suffix.len());
            name.push_str(prefix);
            name.push_str(suffix);
            headers.push((name, value));
        }
    }
    for (claim, header) in claim_headers {
        if let Some(value) = claim_at(claims, claim).and_then(claim_as_text) {
            headers.push((header.clone(), value));
        }
    }
    headers.retain(|(_, value)| !value.is_empty() && header_value_safe(value));
    headers
}

fn claim_as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(_) | Value::Object(_) | Value::Null => None,
                scalar => claim_as_text(scalar),
            })
            .collect::<Option<Vec<_>>>()
            .map(|parts| parts.join(",")),
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_owned_headers_in_any_case_and_spelling() {
        let headers: Vec<(String, String)> = [
            ("X-Brickgate-Subject", "admin"),
            ("x-brickgate-evil", "1"),
            ("x-other", "k"),
            ("x-brickgatex", "no"),
            ("X_Brickgate_Subject", "admin"),
            ("x-brickgate_rule", "api"),
            ("x_brickgatex", "no"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            headers_to_strip(&headers, "x-brickgate-"),
            [
                "X-Brickgate-Subject",
                "x-brickgate-evil",
                "X_Brickgate_Subject",
                "x-brickgate_rule"
            ]
        );
    }

    #[test]
    fn builds_identity_and_claim_headers_safely() {
        let claims = json!({"email": "a@b.c", "n": 5, "ok": true, "roles": ["x", "y"], "obj": {"k": 1},
                            "nested": {"team": "ml"}, "evil": "a\r\nx-injected: 1", "mixed": ["a", {"b": 1}]});
        let claims = claims.as_object().unwrap();
        let mappings: Vec<(String, String)> = [
            "email",
            "n",
            "ok",
            "roles",
            "obj",
            "nested.team",
            "evil",
            "mixed",
            "absent",
        ]
        .iter()
        .map(|c| (c.to_string(), format!("x-gw-{}", c.replace('.', "-"))))
        .collect();
        let got = identity_headers(
            "x-gw-",
            vec![("subject", Some("alice".into())), ("token-id", None)],
            claims,
            &mappings,
        );
        let expected: Vec<(String, String)> = [
            ("x-gw-subject", "alice"),
            ("x-gw-email", "a@b.c"),
            ("x-gw-n", "5"),
            ("x-gw-ok", "true"),
            ("x-gw-roles", "x,y"),
            ("x-gw-nested-team", "ml"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, expected);
    }
}
