//! The committed vector files (`tests/vectors/`, written by `tests/vectors/generate.py`): the
//! key sets the `jws` target verifies against, and the checks `make test` runs on every case.

use serde_json::{Value, json};

use crate::UnixTime;
use crate::config::{Config, JwksSource, Provider};
use crate::jwks::{KeyOrigin, KeySet, jwks_location_from, parse_jwks};
use crate::token::UnverifiedJwt;
use crate::verify::{InWasmVerifier, verify_for_provider};

/// Per algorithm family: a key set and its cases.
pub const JWS_FAMILIES: [(&str, &str); 5] = [
    ("rs", include_str!("../../../tests/vectors/jws/rs.json")),
    ("ps", include_str!("../../../tests/vectors/jws/ps.json")),
    ("es", include_str!("../../../tests/vectors/jws/es.json")),
    (
        "eddsa",
        include_str!("../../../tests/vectors/jws/eddsa.json"),
    ),
    ("hs", include_str!("../../../tests/vectors/jws/hs.json")),
];

/// A provider that accepts every algorithm, with the keys of every family.
pub struct JwsVectors {
    config: Config,
    now: UnixTime,
}

impl JwsVectors {
    pub fn provider(&self) -> &Provider {
        &self.config.providers[0]
    }

    pub fn keys(&self) -> &KeySet {
        match &self.provider().jwks {
            JwksSource::Inline(keys) => keys,
            JwksSource::Remote(_) => panic!("vector keys are inline"),
        }
    }

    pub fn now(&self) -> UnixTime {
        self.now
    }
}

fn provider_config(issuer: &str, audience: &str, algorithms: &Value, jwks: Value) -> Config {
    let config = json!({
        "providers": {"vectors": {
            "issuer": issuer, "audiences": [audience], "algorithms": algorithms,
            "jwks": {"inline": jwks}
        }},
        "rules": [{"match": {"prefix": "/"}, "providers": ["vectors"]}],
        // The HS vectors' keys are inline test secrets.
        "allow_inline_secrets": true
    });
    Config::from_json(config.to_string().as_bytes()).expect("vector configuration")
}

fn build_jws_vectors() -> JwsVectors {
    let families: Vec<Value> = JWS_FAMILIES
        .iter()
        .map(|(_, text)| serde_json::from_str(text).expect("vector file is JSON"))
        .collect();
    let keys: Vec<Value> = families
        .iter()
        .flat_map(|family| {
            family["jwks"]["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let first = &families[0];
    JwsVectors {
        config: provider_config(
            first["issuer"].as_str().unwrap(),
            first["audience"].as_str().unwrap(),
            &first["algorithms"],
            json!({ "keys": keys }),
        ),
        now: first["now"].as_u64().unwrap(),
    }
}

thread_local! {
    static JWS_VECTORS: &'static JwsVectors = Box::leak(Box::new(build_jws_vectors()));
}

/// The key sets of every family, built once per thread.
pub fn jws_provider() -> &'static JwsVectors {
    JWS_VECTORS.with(|vectors| *vectors)
}

/// What a token gets from the vector provider: `"allow"` or the refusal's reason.
pub fn verdict(vectors: &JwsVectors, token: &str) -> String {
    let outcome = UnverifiedJwt::parse(token).and_then(|jwt| {
        verify_for_provider(
            vectors.provider(),
            &jwt,
            Ok(vectors.keys()),
            vectors.now(),
            &InWasmVerifier,
        )
    });
    match outcome {
        Ok(_) => "allow".to_string(),
        Err(error) => error.reason.as_str().to_string(),
    }
}

/// Every case of every family gets exactly the verdict its file names. Returns the cases run.
pub fn check_jws_families() -> usize {
    let vectors = jws_provider();
    let mut run = 0;
    for (family, text) in JWS_FAMILIES {
        let file: Value = serde_json::from_str(text).unwrap();
        for case in file["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let token = case["token"].as_str().unwrap();
            let got = verdict(vectors, token);
            match case["expect"].as_str().unwrap() {
                "allow" => assert_eq!(got, "allow", "{family}: {name}"),
                _ => {
                    let reasons: Vec<&str> = case["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert!(
                        reasons.contains(&got.as_str()),
                        "{family}: {name}: got {got}, expected one of {reasons:?}"
                    );
                }
            }
            super::jws(token.as_bytes());
            run += 1;
        }
    }
    run
}

/// An IdP's published documents, as a key-set provider would meet them: the discovery document
/// points at its key set, every signing key is usable (the others skipped), and a token it
/// signed verifies.
pub fn check_idp(name: &str, discovery: &[u8], jwks: &[u8], case: &[u8]) {
    let case: Value = serde_json::from_slice(case).unwrap();
    let issuer = case["issuer"].as_str().unwrap();
    let location = jwks_location_from(discovery, issuer).unwrap_or_else(|e| panic!("{name}: {e}"));
    let discovered: Value = serde_json::from_slice(discovery).unwrap();
    let uri = discovered["jwks_uri"].as_str().unwrap();
    assert!(uri.ends_with(&location.path), "{name}");
    let document: Value = serde_json::from_slice(jwks).unwrap();
    let set = parse_jwks(&document, KeyOrigin::Remote).unwrap();
    let kids: Vec<String> = set.kids();
    let expected: Vec<String> = case["kids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kid| kid.as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids, expected, "{name}: usable keys");
    let skipped: Vec<Option<String>> = set.skipped.iter().map(|s| s.kid.clone()).collect();
    let expected_skipped: Vec<Option<String>> = case["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kid| kid.as_str().map(str::to_string))
        .collect();
    assert_eq!(skipped, expected_skipped, "{name}: skipped keys");
    super::jwks(jwks);
    let mut with_issuer = vec![0u8];
    with_issuer.extend_from_slice(discovery);
    super::discovery(&with_issuer);
    // A token the IdP signed, verified with its usable keys (given inline here: inline key
    // sets refuse keys that are not for signatures outright).
    let usable: Vec<Value> = document["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| expected.iter().any(|kid| key["kid"] == kid.as_str()))
        .cloned()
        .collect();
    let config = provider_config(
        issuer,
        case["audience"].as_str().unwrap(),
        &json!(["RS256", "ES256"]),
        json!({ "keys": usable }),
    );
    let jwt = UnverifiedJwt::parse(case["token"].as_str().unwrap()).unwrap();
    let keys = match &config.providers[0].jwks {
        JwksSource::Inline(keys) => keys,
        JwksSource::Remote(_) => panic!("vector keys are inline"),
    };
    let verified = verify_for_provider(
        &config.providers[0],
        &jwt,
        Ok(keys),
        case["now"].as_u64().unwrap(),
        &InWasmVerifier,
    );
    assert!(verified.is_ok(), "{name}: {verified:?}");
}
