//! Credentials before bodies: which requests are refused at their headers, and which are held
//! for their body (table-driven, one fixed clock).

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::engine::{Decision, Engine, Request};
use crate::jwks::JwksStore;
use crate::verify::InWasmVerifier;

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../../../tests/keys/public-jwks.json");
const CHAT: &str = "/serving-endpoints/chat/completions";

fn engine(rules: Value, extra: Value) -> (Engine, JwksStore) {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let mut config = json!({
        "providers": {
            "okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}}
        },
        "rules": rules,
        "databricks": {"route_catalogue": false}
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    (Engine::new(config, Box::new(InWasmVerifier)), store)
}

/// The rules of docs/DATABRICKS.md's serving example: one team endpoint, then any endpoint
/// its scope names.
fn serving_rules() -> Value {
    json!([
        {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["okta"], "require": {"groups_any": ["fraud"]}},
        {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}}
    ])
}

fn token(claims: Value) -> String {
    let mut all = json!({"iss": "https://okta.test", "aud": "api", "sub": "alice@example.com", "iat": NOW, "exp": NOW + 600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let key = EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap();
    encode(&header, &all, &key).unwrap()
}

/// The decision at the headers (no body yet).
fn at_headers(engine: &(Engine, JwksStore), path: &str, headers: &[(&str, &str)]) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let request = Request {
        method: "POST",
        path,
        headers: &headers,
        body: None,
        fingerprint: false,
    };
    let mut cache = TokenCache::new(16, 1 << 20);
    engine.0.decide(&request, &engine.1, &mut cache, NOW * 1000)
}

/// `None` when the body is to be read; the refusal's reason and rule otherwise.
fn outcome(decision: &Decision) -> Option<(&'static str, Option<String>)> {
    match decision {
        Decision::NeedBody { .. } => None,
        Decision::Deny { audit, .. } => Some((audit.reason.unwrap_or("?"), audit.rule.clone())),
        Decision::Allow { audit, .. } => Some(("allowed at the headers", audit.rule.clone())),
    }
}

#[test]
fn only_credentials_some_candidate_rule_could_admit_have_their_body_read() {
    let engine = engine(serving_rules(), json!({}));
    let bearer = |claims: Value| format!("Bearer {}", token(claims));
    let forged = {
        let real = token(json!({"scope": "serving:churn"}));
        let (signed, _) = real.rsplit_once('.').unwrap();
        format!("Bearer {signed}.c2lnbmF0dXJl")
    };
    type Case = (&'static str, Option<String>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            "a scope naming one endpoint",
            Some(bearer(json!({"scope": "serving:churn"}))),
            None,
        ),
        (
            "the fraud group",
            Some(bearer(json!({"groups": ["fraud"]}))),
            None,
        ),
        (
            "a scope with a prefix only",
            Some(bearer(json!({"scope": "serving:"}))),
            Some("group_not_allowed"),
        ),
        (
            "no scope, no group",
            Some(bearer(json!({"scope": "jobs:read"}))),
            Some("group_not_allowed"),
        ),
        ("no token", None, Some("missing_token")),
        (
            "not a JWT",
            Some("Bearer not-a-jwt".into()),
            Some("malformed_token"),
        ),
        ("a forged signature", Some(forged), Some("bad_signature")),
        (
            "expired",
            Some(bearer(
                json!({"scope": "serving:churn", "iat": NOW - 7200, "exp": NOW - 3600}),
            )),
            Some("expired"),
        ),
        (
            "another audience",
            Some(bearer(json!({"scope": "serving:churn", "aud": "other"}))),
            Some("audience_mismatch"),
        ),
        (
            "another issuer",
            Some(bearer(
                json!({"scope": "serving:churn", "iss": "https://evil.test"}),
            )),
            Some("issuer_not_accepted"),
        ),
    ];
    for (what, authorization, refused) in cases {
        let mut headers = vec![];
        if let Some(value) = authorization.as_deref() {
            headers.push(("authorization", value));
        }
        let decision = at_headers(&engine, CHAT, &headers);
        match (refused, outcome(&decision)) {
            (None, None) => {}
            (Some(reason), Some((got, rule))) => {
                assert_eq!(got, reason, "{what}");
                assert_eq!(
                    rule.as_deref(),
                    Some("fraud-team"),
                    "{what}: the first candidate's refusal"
                );
                let Decision::Deny { response, .. } = &decision else {
                    unreachable!()
                };
                let body = String::from_utf8_lossy(&response.body);
                assert!(body.contains("the body was not read"), "{what}: {body}");
            }
            (expected, got) => panic!("{what}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_candidates_are_the_endpoint_rules_up_to_the_first_path_rule() {
    let member = format!("Bearer {}", token(json!({"scope": "jobs:read"})));
    type Case = (&'static str, Value, Option<&'static str>);
    let cases: Vec<Case> = vec![
        // An anonymous rule the body could select: no credential is needed, the body is read.
        (
            "anonymous endpoint rule",
            json!([{"name": "open", "match": {"serving_endpoint": "demo"}, "allow_anonymous": true}]),
            None,
        ),
        // A path rule for the route itself admits the token when the body names an endpoint
        // no earlier rule takes.
        (
            "endpoint rule, then path rule",
            json!([
                {"name": "any", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}},
                {"name": "chat", "match": {"path": CHAT}, "providers": ["okta"]}
            ]),
            None,
        ),
        // A path rule before the endpoint rules hides them: only it is judged.
        (
            "path rule first",
            json!([
                {"name": "chat", "match": {"path": CHAT}, "providers": ["okta"], "require": {"scopes_any": ["chat"]}},
                {"name": "any", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"]}
            ]),
            Some("insufficient_scope"),
        ),
        // Only rules for the method are candidates.
        (
            "endpoint rule for GET only",
            json!([{"name": "get", "match": {"serving_endpoint": "{name}", "methods": ["GET"]}, "providers": ["okta"]}]),
            Some("no_matching_rule"),
        ),
    ];
    for (what, rules, refused) in cases {
        let engine = engine(rules, json!({}));
        let decision = at_headers(&engine, CHAT, &[("authorization", &member)]);
        assert_eq!(
            outcome(&decision).map(|(reason, _)| reason),
            refused,
            "{what}: {decision:?}"
        );
    }
}

/// A path-named endpoint without `Content-Length` is decided in full at its headers: only its
/// size waits for the body, so a refusal never reads it.
#[test]
fn an_invocation_of_unknown_length_is_refused_at_its_headers() {
    let engine = engine(serving_rules(), json!({}));
    let path = "/serving-endpoints/churn/invocations";
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let outsider = format!("Bearer {}", token(json!({"scope": "serving:other"})));
    assert_eq!(
        outcome(&at_headers(&engine, path, &[("authorization", &member)])),
        None
    );
    let refused = outcome(&at_headers(&engine, path, &[("authorization", &outsider)]));
    assert_eq!(
        refused,
        Some(("insufficient_scope", Some("per-endpoint".into())))
    );
    let refused = outcome(&at_headers(&engine, path, &[]));
    assert_eq!(refused.map(|(reason, _)| reason), Some("missing_token"));
}

/// Dry-run only reports what it would refuse: the body is read as for a passage, and the
/// decision with it reports the refusal with the rule the body selects.
#[test]
fn dry_run_reads_the_body_and_reports_with_it() {
    let engine = engine(serving_rules(), json!({"mode": "dry_run"}));
    assert_eq!(outcome(&at_headers(&engine, CHAT, &[])), None);
}

/// What a stream waiting for keys reads meanwhile: the body of requests that need it.
#[test]
fn the_body_read_limit_is_known_at_the_headers() {
    let engine = engine(serving_rules(), json!({}));
    let limit = |path: &str, headers: &[(String, String)]| {
        let request = Request {
            method: "POST",
            path,
            headers,
            body: None,
            fingerprint: false,
        };
        engine.0.body_read_limit(&request).map(|l| l.max_bytes)
    };
    let length = vec![("content-length".to_string(), "10".to_string())];
    assert_eq!(limit(CHAT, &[]), Some(16 << 20));
    assert_eq!(
        limit("/serving-endpoints/databricks-llm/invocations", &[]),
        Some(4 << 20)
    );
    assert_eq!(limit("/serving-endpoints/churn/invocations", &length), None);
    assert_eq!(limit("/api/2.1/jobs/run-now", &[]), None);
}
