//! `body_rules: off`: every request is decided at its headers. Body-form serving routes go by
//! path rules (no rule can select them by `model`), and a serving invocation whose size only
//! its body would tell is refused at its headers (411), never held.

use serde_json::{Value, json};

use super::*;
use crate::verify::InWasmVerifier;

const NOW_MS: u64 = 1_800_000_000_000;
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

fn engine(body_rules: &str) -> (Engine, JwksStore) {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "body_rules": body_rules,
        "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}}},
        "rules": [{"name": "open-serving", "match": {"prefix": "/serving-endpoints/"}, "allow_anonymous": true}],
        "databricks": {"route_catalogue": false}
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    (Engine::new(config, Box::new(InWasmVerifier)), store)
}

#[test]
fn off_decides_every_request_at_its_headers() {
    const MIB: usize = 1 << 20;
    let sixteen = (16 * MIB).to_string();
    let too_large = (16 * MIB + 1).to_string();
    let invocations = "/serving-endpoints/churn/invocations";
    // (path, content-length, expected status, reason) — status 200: allowed.
    let cases: [(&str, Option<&str>, u32, Option<&str>); 5] = [
        ("/serving-endpoints/chat/completions", None, 200, None),
        (invocations, Some(&sixteen), 200, None),
        (invocations, Some(&too_large), 413, Some("body_too_large")),
        (invocations, None, 411, Some("length_required")),
        (
            "/serving-endpoints/churn/served-models/a/invocations",
            None,
            411,
            Some("length_required"),
        ),
    ];
    let off = engine("off");
    for (path, length, status, reason) in cases {
        let mut headers = vec![];
        if let Some(length) = length {
            headers.push(("content-length".to_string(), length.to_string()));
        }
        let request = Request {
            method: "POST",
            path,
            headers: &headers,
            body: None,
            fingerprint: true,
        };
        let what = format!("{path} length={length:?}");
        // No request waits for a body here: nothing can give it.
        assert_eq!(off.0.body_read_limit(&request), None, "{what}");
        let mut cache = TokenCache::new(16, 1 << 20);
        match off.0.decide(&request, &off.1, &mut cache, NOW_MS) {
            Decision::Allow { .. } => assert_eq!(status, 200, "{what}"),
            Decision::Deny { response, audit } => {
                assert_eq!(response.status, status, "{what}");
                assert_eq!(audit.reason, reason, "{what}");
                if status == 411 {
                    let detail = audit.detail.unwrap_or_default();
                    assert!(detail.contains("Content-Length"), "{detail}");
                    assert!(detail.contains("body_rules: off"), "{detail}");
                }
            }
            Decision::NeedBody { .. } => panic!("{what}: waits for a body under off"),
        }
    }
    // The same invocation without a length is read, counted, in the modes that read bodies.
    for mode in ["hold_headers", "buffer_filter"] {
        let engine = engine(mode);
        let request = Request {
            method: "POST",
            path: invocations,
            headers: &[],
            body: None,
            fingerprint: true,
        };
        let mut cache = TokenCache::new(16, 1 << 20);
        let decision = engine.0.decide(&request, &engine.1, &mut cache, NOW_MS);
        assert!(matches!(decision, Decision::NeedBody { .. }), "{mode}");
    }
}
