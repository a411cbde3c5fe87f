//! The policy model the fuzzer checks brickgate against: the IdP's keys and the tokens
//! clients present, the routes and bodies they send, the configuration, and an independent
//! oracle of what that configuration allows.

use super::*;

/// Signing keys: two the IdP publishes (in turn), one it never does.
pub(super) const K1: [u8; 32] = [1; 32];
pub(super) const K2: [u8; 32] = [2; 32];
pub(super) const ATTACKER: [u8; 32] = [3; 32];

pub(super) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn keypair(seed: &[u8; 32]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(seed).unwrap()
}

pub(super) fn jwk(kid: &str, seed: &[u8; 32]) -> Value {
    let public = keypair(seed).public_key().as_ref().to_vec();
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "alg": "EdDSA", "use": "sig"})
}

pub(super) fn jwks(published: &[&str]) -> Vec<u8> {
    let keys: Vec<Value> = published
        .iter()
        .map(|kid| jwk(kid, if *kid == "k1" { &K1 } else { &K2 }))
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

pub(super) fn mint(seed: &[u8; 32], kid: &str, claims: Value) -> String {
    let header = b64(json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"})
        .to_string()
        .as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = keypair(seed).sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

/// What a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Signed with k1: scope `serving:churn`.
    Member,
    /// Signed with k2 (published after a rotation): group `fraud`.
    FraudAnalyst,
    /// Signed by a key never published, naming k1.
    Forged,
    /// Signed with k1, expired.
    Expired,
    /// Signed with k1 for another audience.
    OtherAudience,
    /// No credential.
    Anonymous,
    /// Not a JWT.
    Garbage,
    /// Signed by a key never published, naming a kid nobody has.
    UnknownKid,
}

pub(super) const KINDS: [Kind; 8] = [
    Kind::Member,
    Kind::FraudAnalyst,
    Kind::Forged,
    Kind::Expired,
    Kind::OtherAudience,
    Kind::Anonymous,
    Kind::Garbage,
    Kind::UnknownKid,
];

pub(super) fn claims(extra: Value) -> Value {
    let now_s = NOW_MS / 1000;
    let mut all =
        json!({"iss": ISSUER, "aud": "api", "sub": SUBJECT, "iat": now_s, "exp": now_s + 3600});
    for (key, value) in extra.as_object().unwrap() {
        all[key] = value.clone();
    }
    all
}

pub(super) fn authorization(kind: Kind) -> Option<String> {
    let now_s = NOW_MS / 1000;
    let token = match kind {
        Kind::Member => mint(&K1, "k1", claims(json!({"scope": "serving:churn"}))),
        Kind::FraudAnalyst => mint(&K2, "k2", claims(json!({"groups": ["fraud"]}))),
        Kind::Forged => mint(
            &ATTACKER,
            "k1",
            claims(json!({"scope": "serving:churn", "groups": ["fraud"]})),
        ),
        Kind::Expired => mint(
            &K1,
            "k1",
            claims(json!({"scope": "serving:churn", "iat": now_s - 7200, "exp": now_s - 3600})),
        ),
        Kind::OtherAudience => mint(
            &K1,
            "k1",
            claims(json!({"aud": "other", "scope": "serving:churn"})),
        ),
        Kind::Anonymous => return None,
        Kind::Garbage => "not-a-jwt".to_string(),
        Kind::UnknownKid => mint(&ATTACKER, "k9", claims(json!({"scope": "serving:churn"}))),
    };
    Some(format!("Bearer {token}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// Decided on the headers.
    JobsList,
    /// Decided on the body's `model`.
    Chat,
    /// Decided on the headers; has a body.
    JobsRunNow,
}

pub(super) const MODELS: [&str; 4] = ["churn", "fraud", "other", "big"];

pub(super) fn body_of(route: Route, model: &str) -> Vec<u8> {
    match (route, model) {
        (Route::JobsList, _) => Vec::new(),
        (Route::JobsRunNow, _) => br#"{"job_id": 7}"#.to_vec(),
        (Route::Chat, "big") => format!(
            r#"{{"model": "churn", "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        )
        .into_bytes(),
        (Route::Chat, model) => format!(r#"{{"model": "{model}", "messages": []}}"#).into_bytes(),
    }
}

/// Whether the policy allows `kind` on `route` for a body whose `model` is `model`, and the
/// rule that decides.
pub(super) fn oracle(kind: Kind, route: Route, model: Option<&str>) -> (bool, &'static str) {
    let member = kind == Kind::Member;
    let analyst = kind == Kind::FraudAnalyst;
    match route {
        Route::JobsList | Route::JobsRunNow => (member || analyst, "jobs"),
        Route::Chat => match model {
            Some("fraud") => (analyst, "fraud-team"),
            Some("churn") => (member, "per-endpoint"),
            _ => (false, "per-endpoint"),
        },
    }
}

pub(super) fn config(setup: Setup, host: Host) -> Config {
    let keys = match setup {
        Setup::InlineKeys => {
            json!({"inline": serde_json::from_slice::<Value>(&jwks(&["k1", "k2"])).unwrap()})
        }
        Setup::RemoteKeys | Setup::Exchange => json!({"remote": {
            "cluster": "idp", "uri": "https://idp.fuzz/keys", "wait_for_keys_ms": WAIT_FOR_KEYS_MS,
            "refetch_min_interval_s": 1
        }}),
    };
    let upstream = match setup {
        Setup::Exchange => json!({"mode": "exchange", "cluster": "ws",
            "workspace_url": "https://adb-1.azuredatabricks.net", "scopes": ["all-apis"]}),
        Setup::InlineKeys | Setup::RemoteKeys => json!({"mode": "pass_through"}),
    };
    let body_rules = match host {
        Host::HoldHeaders => "hold_headers",
        Host::BufferFilter => "buffer_filter",
    };
    let config = json!({
        "body_rules": body_rules,
        "providers": {"idp": {"issuer": ISSUER, "audiences": ["api"], "algorithms": ["EdDSA"],
            "jwks": keys, "upstream": upstream}},
        "rules": [
            {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["idp"], "require": {"groups_any": ["fraud"]}},
            {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"], "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["idp"]}
        ],
        "databricks": {"route_catalogue": false, "max_body_bytes": MAX_BODY_BYTES, "first_body_wait_ms": FIRST_BODY_WAIT_MS, "body_deadline_ms": BODY_DEADLINE_MS}
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}
