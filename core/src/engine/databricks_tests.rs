//! The engine with the Databricks section: catalogue, serving endpoints, upstream modes and
//! header hygiene.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::verify::InWasmVerifier;

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

fn engine(upstream: Value) -> (Engine, JwksStore) {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "providers": {
            "okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}, "upstream": upstream}
        },
        "rules": [
            {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["okta"], "require": {"groups_any": ["fraud"]}},
            {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}}
        ],
        "databricks": {"route_catalogue": true},
        "allow_inline_secrets": true
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    (Engine::new(config, Box::new(InWasmVerifier)), store)
}

fn token(claims: Value) -> String {
    let mut all = json!({"iss": "https://okta.test", "aud": "api", "sub": "alice@example.com", "iat": NOW, "exp": NOW + 600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    encode(
        &header,
        &all,
        &EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn decide(
    engine: &(Engine, JwksStore),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let mut cache = TokenCache::new(16, 1 << 20);
    let mut decide = |body: Option<&[u8]>| {
        let request = Request {
            method,
            path,
            headers: &headers,
            body,
            fingerprint: true,
        };
        engine.0.decide(&request, &engine.1, &mut cache, NOW * 1000)
    };
    match decide(body) {
        // A path-form serving request without `Content-Length` and without a body: as the
        // stream does for a request that ends with its headers, decide on the empty body.
        Decision::NeedBody { .. } if body.is_none() && !serving::endpoint_in_body(method, path) => {
            decide(Some(b""))
        }
        decision => decision,
    }
}

/// An exchange (or other mode) provider with extra fields, and an identity section.
fn engine_with(provider: Value, identity: Value) -> (Engine, JwksStore) {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let mut okta =
        json!({"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}});
    for (k, v) in provider.as_object().unwrap() {
        okta[k] = v.clone();
    }
    let config = json!({
        "providers": {"okta": okta},
        "rules": [{"name": "any", "match": {"prefix": "/"}, "providers": ["okta"]}],
        "identity": identity,
        "allow_inline_secrets": true
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    (Engine::new(config, Box::new(InWasmVerifier)), store)
}

fn exchange_upstream(subject_claim: Option<&str>) -> Value {
    let mut upstream =
        json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://ws.example"});
    if let Some(claim) = subject_claim {
        upstream["subject_claim"] = json!(claim);
    }
    upstream
}

mod review_probes;
mod routes;
mod serving_endpoints;
mod stacked_versions;
mod token_swap;
mod upstream_modes;
