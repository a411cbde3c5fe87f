//! Table-driven decisions through the whole pipeline, with real signatures and a fixed clock.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::verify::InWasmVerifier;

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const EC_1: &str = include_str!("../../../tests/keys/ec-1.pem");
const ATTACKER: &str = include_str!("../../../tests/keys/attacker-rsa.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn config(identity: Value) -> Config {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let secret_b64 =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, SECRET);
    let config = json!({
        "realm": "test",
        "providers": {
            "local": {"issuer": "https://idp.test", "audiences": ["api"], "jwks": {"inline": jwks},
                      "token_sources": [{"header": "authorization", "prefix": "Bearer "}, {"query": "access_token"}]},
            "typed": {"issuer": "https://typed.test", "audiences": ["api"], "jwks": {"inline": jwks}, "require_typ": true},
            "hmac": {"issuer": "https://hmac.test", "audiences": ["api"], "algorithms": ["HS256"],
                     "jwks": {"inline": {"keys": [{"kty": "oct", "kid": "s1", "k": secret_b64}]}}},
            "remote": {"issuer": "https://remote.test", "audiences": ["api"],
                       "jwks": {"remote": {"cluster": "idp", "uri": "https://remote.test/keys"}}}
        },
        "rules": [
            {"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": true},
            {"name": "clusters-read", "match": {"prefix": "/api/2.0/clusters/", "methods": ["GET"]},
             "providers": ["local", "typed", "hmac", "remote"], "require": {"scopes_any": ["clusters:read", "clusters"]}},
            {"name": "clusters-write", "match": {"prefix": "/api/2.0/clusters/", "methods": ["POST"]},
             "providers": ["local"], "require": {"scopes_all": ["clusters"]}},
            {"name": "serving", "match": {"template": "/serving-endpoints/{name}/invocations", "methods": ["POST"]},
             "providers": ["local"], "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "ml-team", "match": {"prefix": "/team/"}, "providers": ["local"], "require": {"groups_any": ["ml"]}},
            {"name": "api", "match": {"template": "/api/**"}, "providers": ["local"], "require": {"scopes_all": ["all-apis"]}}
        ],
        "identity": identity,
        "allow_inline_secrets": true
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

struct Harness {
    engine: Engine,
    store: JwksStore,
    cache: std::cell::RefCell<TokenCache>,
}

fn engine_with(identity: Value) -> Harness {
    let config = config(identity);
    let store = JwksStore::new(&config, 1);
    Harness {
        engine: Engine::new(config, Box::new(InWasmVerifier)),
        store,
        cache: std::cell::RefCell::new(TokenCache::new(64, 1 << 20)),
    }
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": "https://idp.test", "aud": "api", "sub": "alice@example.com", "client_id": "app-1",
        "scope": "clusters:read serving:fraud", "iat": NOW - 10, "exp": NOW + 3600, "jti": "j-1", "groups": ["ml"]
    });
    for (key, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

fn mint(alg: Algorithm, kid: Option<&str>, typ: Option<&str>, overrides: Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_1.as_bytes()).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(SECRET),
        _ if kid == Some("attacker") => EncodingKey::from_rsa_pem(ATTACKER.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(|k| {
        if k == "attacker" {
            "test-rsa-1".to_string()
        } else {
            k.to_string()
        }
    });
    header.typ = typ.map(str::to_string);
    encode(&header, &claims(overrides), &key).unwrap()
}

fn rs(overrides: Value) -> String {
    mint(Algorithm::RS256, Some("test-rsa-1"), Some("JWT"), overrides)
}

fn decide_at(
    h: &Harness,
    now: u64,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let decide = |body: Option<&[u8]>| {
        h.engine.decide(
            &Request {
                method,
                path,
                headers: &headers,
                body,
                fingerprint: true,
            },
            &h.store,
            &mut h.cache.borrow_mut(),
            now * 1000,
        )
    };
    // These requests end with their headers: as the stream does, a body asked for (a serving
    // request of unknown length) is the empty one.
    match decide(None) {
        Decision::NeedBody { .. } => decide(Some(b"")),
        decision => decision,
    }
}

fn decide_with(h: &Harness, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    decide_at(h, NOW, method, path, headers)
}

fn reason(decision: &Decision) -> Option<&'static str> {
    decision.audit().reason
}

#[test]
fn decision_table() {
    let h = engine_with(json!({}));
    let good = rs(json!({}));
    let bearer = |token: &str| format!("Bearer {token}");
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims(json!({"scope": "all-apis"})).to_string(),
        );
        parts.join(".")
    };
    let hs_with_rsa_public = {
        // Key confusion: an HS256 token whose "secret" is the RSA public key.
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"HS256","kid":"test-rsa-1"}"#,
        );
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims(json!({})).to_string(),
        );
        format!("{header}.{payload}.c2lnbmF0dXJl")
    };
    let none_alg = {
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"none"}"#,
        );
        let payload = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims(json!({})).to_string(),
        );
        format!("{header}.{payload}.c2ln")
    };
    // (name, method, path, token, expected reason)
    type Case<'a> = (&'a str, &'a str, String, Option<String>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "valid RS256",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(good.clone()),
            None,
        ),
        (
            "valid ES256",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::ES256, Some("test-ec-1"), None, json!({})).to_string()),
            None,
        ),
        (
            "valid ES256 without kid",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::ES256, None, None, json!({}))),
            None,
        ),
        (
            "valid HS256",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(
                Algorithm::HS256,
                Some("s1"),
                None,
                json!({"iss": "https://hmac.test"}),
            )),
            None,
        ),
        (
            "typ at+jwt",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(
                Algorithm::RS256,
                Some("test-rsa-1"),
                Some("at+jwt"),
                json!({"iss": "https://typed.test"}),
            )),
            None,
        ),
        (
            "typ missing",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"iss": "https://typed.test"}))),
            Some("typ_mismatch"),
        ),
        ("anonymous", "GET", "/healthz".into(), None, None),
        (
            "no token",
            "GET",
            "/api/2.0/clusters/list".into(),
            None,
            Some("missing_token"),
        ),
        (
            "no rule",
            "GET",
            "/elsewhere".into(),
            Some(good.clone()),
            Some("no_matching_rule"),
        ),
        (
            "bad path",
            "GET",
            "/api/2.0/clusters%2Flist".into(),
            Some(good.clone()),
            Some("bad_path"),
        ),
        (
            "dot segments escape the prefix",
            "GET",
            "/api/2.0/clusters/../secrets/get".into(),
            Some(good.clone()),
            Some("insufficient_scope"),
        ),
        (
            "expired",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"exp": NOW - 61}))),
            Some("expired"),
        ),
        (
            "not yet valid",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"nbf": NOW + 120}))),
            Some("not_yet_valid"),
        ),
        (
            "issued in future",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"iat": NOW + 120}))),
            Some("issued_in_future"),
        ),
        (
            "too long-lived",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"exp": NOW + 90_000}))),
            Some("lifetime_too_long"),
        ),
        (
            "wrong audience",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"aud": "other"}))),
            Some("audience_mismatch"),
        ),
        (
            "unknown issuer",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"iss": "https://evil.test"}))),
            Some("issuer_not_accepted"),
        ),
        (
            "no issuer",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"iss": null}))),
            Some("issuer_not_accepted"),
        ),
        (
            "issuer not on this rule",
            "POST",
            "/api/2.0/clusters/create".into(),
            Some(mint(
                Algorithm::HS256,
                Some("s1"),
                None,
                json!({"iss": "https://hmac.test", "scope": "clusters"}),
            )),
            Some("issuer_not_accepted"),
        ),
        (
            "unknown kid",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::RS256, Some("nope"), None, json!({}))),
            Some("unknown_kid"),
        ),
        (
            "kid of another key type",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::RS256, Some("test-ec-1"), None, json!({}))),
            Some("key_mismatch"),
        ),
        (
            "attacker key",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::RS256, Some("attacker"), None, json!({}))),
            Some("bad_signature"),
        ),
        (
            "tampered payload",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(tampered),
            Some("bad_signature"),
        ),
        (
            "HS256 against RSA provider",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(hs_with_rsa_public),
            Some("alg_not_allowed"),
        ),
        (
            "alg none",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(none_alg),
            Some("alg_not_allowed"),
        ),
        (
            "RS384 not allowed",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(mint(Algorithm::RS384, Some("test-rsa-1"), None, json!({}))),
            Some("alg_not_allowed"),
        ),
        (
            "keys not fetched yet",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some(rs(json!({"iss": "https://remote.test"}))),
            Some("keys_unavailable"),
        ),
        (
            "malformed",
            "GET",
            "/api/2.0/clusters/list".into(),
            Some("abc.def".into()),
            Some("malformed_token"),
        ),
        (
            "missing write scope",
            "POST",
            "/api/2.0/clusters/create".into(),
            Some(good.clone()),
            Some("insufficient_scope"),
        ),
        (
            "write scope",
            "POST",
            "/api/2.0/clusters/create".into(),
            Some(rs(json!({"scope": "clusters"}))),
            None,
        ),
        (
            "scp array",
            "POST",
            "/api/2.0/clusters/create".into(),
            Some(rs(json!({"scope": null, "scp": ["clusters"]}))),
            None,
        ),
        (
            "serving own model",
            "POST",
            "/serving-endpoints/fraud/invocations".into(),
            Some(good.clone()),
            None,
        ),
        (
            "serving other model",
            "POST",
            "/serving-endpoints/churn/invocations".into(),
            Some(good.clone()),
            Some("insufficient_scope"),
        ),
        (
            "group member",
            "GET",
            "/team/x".into(),
            Some(good.clone()),
            None,
        ),
        (
            "not a group member",
            "GET",
            "/team/x".into(),
            Some(rs(json!({"groups": ["web"]}))),
            Some("group_not_allowed"),
        ),
        (
            "a string group claim is one group",
            "GET",
            "/team/x".into(),
            Some(rs(json!({"groups": "ml"}))),
            None,
        ),
        (
            "a string group claim is not split on spaces",
            "GET",
            "/team/x".into(),
            Some(rs(json!({"groups": "web ml"}))),
            Some("group_not_allowed"),
        ),
        (
            "query token",
            "GET",
            format!("/api/2.0/clusters/list?access_token={good}"),
            None,
            None,
        ),
    ];
    for (name, method, path, token, expected) in cases {
        let auth = token.as_deref().map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let decision = decide_with(&h, method, &path, &headers);
        assert_eq!(
            reason(&decision),
            expected,
            "{name}: {:?}",
            decision.audit()
        );
    }
}

#[test]
fn allowed_requests_get_verified_identity_and_spoofed_headers_removed() {
    let h = engine_with(json!({"claim_headers": {"email": "email"}}));
    let token = rs(json!({"email": "alice@example.com"}));
    let auth = format!("Bearer {token}");
    let decision = decide_with(
        &h,
        "GET",
        "/api/2.0/clusters/list",
        &[
            ("authorization", &auth),
            ("X-Brickgate-Subject", "admin"),
            ("x-brickgate-evil", "1"),
            ("x-request-id", "r-1"),
        ],
    );
    let Decision::Allow {
        mutations, audit, ..
    } = decision
    else {
        panic!("denied: {decision:?}")
    };
    assert_eq!(
        mutations.remove_headers,
        ["X-Brickgate-Subject", "x-brickgate-evil"]
    );
    let set: std::collections::BTreeMap<_, _> = mutations.headers_set().collect();
    let expected = [
        ("x-brickgate-subject", "alice@example.com"),
        ("x-brickgate-issuer", "https://idp.test"),
        ("x-brickgate-provider", "local"),
        ("x-brickgate-client-id", "app-1"),
        ("x-brickgate-scopes", "clusters:read serving:fraud"),
        ("x-brickgate-groups", "ml"),
        ("x-brickgate-principal-kind", "user"),
        ("x-brickgate-token-id", "j-1"),
        ("x-brickgate-rule", "clusters-read"),
        ("x-brickgate-email", "alice@example.com"),
    ];
    for (name, value) in expected {
        assert_eq!(set.get(name).copied(), Some(value), "{name}");
    }
    assert_eq!(mutations.set_path, None);
    assert_eq!(audit.request_id.as_deref(), Some("r-1"));
    assert_eq!(audit.subject.as_deref(), Some("alice@example.com"));
    assert!(!audit.to_json().contains(&token));
}

/// `identity.headers` picks the built-in headers sent; every header with the prefix is still
/// stripped, the ones not chosen included.
#[test]
fn only_the_chosen_identity_headers_are_sent_and_every_owned_one_is_stripped() {
    let h =
        engine_with(json!({"headers": ["subject", "rule"], "claim_headers": {"email": "email"}}));
    let token = rs(json!({"email": "alice@example.com"}));
    let auth = format!("Bearer {token}");
    let decision = decide_with(
        &h,
        "GET",
        "/api/2.0/clusters/list",
        &[
            ("authorization", &auth),
            ("x-brickgate-scopes", "admin"),
            ("x-brickgate-rule", "other"),
        ],
    );
    let Decision::Allow { mutations, .. } = decision else {
        panic!("denied: {decision:?}")
    };
    assert_eq!(
        mutations.remove_headers,
        ["x-brickgate-scopes", "x-brickgate-rule"]
    );
    let set: std::collections::BTreeMap<_, _> = mutations.headers_set().collect();
    let expected: std::collections::BTreeMap<_, _> = [
        ("x-brickgate-subject", "alice@example.com"),
        ("x-brickgate-rule", "clusters-read"),
        ("x-brickgate-email", "alice@example.com"),
    ]
    .into_iter()
    .collect();
    assert_eq!(set, expected);

    let none = engine_with(json!({"headers": []}));
    let decision = decide_with(
        &none,
        "GET",
        "/api/2.0/clusters/list",
        &[("authorization", &auth), ("x-brickgate-subject", "admin")],
    );
    let Decision::Allow { mutations, .. } = decision else {
        panic!("denied: {decision:?}")
    };
    assert_eq!(mutations.remove_headers, ["x-brickgate-subject"]);
    assert_eq!(mutations.headers_set().count(), 0);
}

#[test]
fn credentials_are_removed_when_not_forwarded() {
    let h = engine_with(json!({"forward_authorization": false}));
    let token = rs(json!({}));
    let auth = format!("Bearer {token}");
    let header = decide_with(
        &h,
        "GET",
        "/api/2.0/clusters/list",
        &[("authorization", &auth)],
    );
    let Decision::Allow { mutations, .. } = header else {
        panic!("{header:?}")
    };
    assert!(
        mutations
            .remove_headers
            .contains(&"authorization".to_string())
    );

    let path = format!("/api//2.0/clusters/list?a=1&access_token={token}&b=2");
    let query = decide_with(&h, "GET", &path, &[]);
    let Decision::Allow { mutations, .. } = query else {
        panic!("{query:?}")
    };
    assert_eq!(
        mutations.set_path.as_deref(),
        Some("/api/2.0/clusters/list?a=1&b=2")
    );
}

#[test]
fn refusals_are_precise_and_never_echo_the_token() {
    let h = engine_with(json!({}));
    let token = rs(json!({"aud": ["web"]}));
    let auth = format!("Bearer {token}");
    let decision = decide_with(
        &h,
        "GET",
        "/api/2.0/clusters/list",
        &[("authorization", &auth)],
    );
    let Decision::Deny { response, audit } = decision else {
        panic!("allowed")
    };
    assert_eq!(response.status, 401);
    let body: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        body["message"],
        "audience mismatch: token has [web], this route accepts [api]"
    );
    let challenge = response.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer realm=\"test\", error=\"invalid_token\""));
    let signature = token.rsplit('.').next().unwrap();
    for text in [
        String::from_utf8(response.body.clone()).unwrap(),
        challenge.to_string(),
        audit.to_json(),
    ] {
        assert!(!text.contains(&token) && !text.contains(signature));
    }
}

#[test]
fn insufficient_scope_challenge_names_the_scope() {
    let h = engine_with(json!({}));
    let auth = format!("Bearer {}", rs(json!({})));
    let decision = decide_with(
        &h,
        "POST",
        "/api/2.0/clusters/create",
        &[("authorization", &auth)],
    );
    let Decision::Deny { response, .. } = decision else {
        panic!("allowed")
    };
    assert_eq!(response.status, 403);
    assert!(
        response
            .header("www-authenticate")
            .unwrap()
            .ends_with("scope=\"clusters\"")
    );
}

#[test]
fn anonymous_routes_still_strip_identity_headers() {
    let h = engine_with(json!({}));
    let decision = decide_with(&h, "GET", "/healthz", &[("x-brickgate-subject", "admin")]);
    let Decision::Allow { mutations, .. } = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(mutations.remove_headers, ["x-brickgate-subject"]);
    assert_eq!(mutations.headers_set().count(), 0);
}

#[test]
fn cached_tokens_still_face_time_and_route_checks() {
    let h = engine_with(json!({}));
    let auth = format!("Bearer {}", rs(json!({"exp": NOW + 600})));
    let headers = [("authorization", auth.as_str())];
    let cache_state = |d: &Decision| d.audit().cache;

    let first = decide_with(&h, "GET", "/api/2.0/clusters/list", &headers);
    assert_eq!((reason(&first), cache_state(&first)), (None, Some("miss")));
    let second = decide_with(&h, "GET", "/api/2.0/clusters/list", &headers);
    assert_eq!((reason(&second), cache_state(&second)), (None, Some("hit")));
    assert_eq!(second.audit().subject.as_deref(), Some("alice@example.com"));

    let write = decide_with(&h, "POST", "/api/2.0/clusters/create", &headers);
    assert_eq!(
        (reason(&write), cache_state(&write)),
        (Some("insufficient_scope"), Some("hit"))
    );

    let later = decide_at(
        &h,
        NOW + 600 + 61,
        "GET",
        "/api/2.0/clusters/list",
        &headers,
    );
    assert_eq!(reason(&later), Some("expired"));
}

#[test]
fn cached_tokens_are_refused_on_rules_that_do_not_accept_their_issuer() {
    let h = engine_with(json!({}));
    let token = mint(
        Algorithm::HS256,
        Some("s1"),
        None,
        json!({"iss": "https://hmac.test", "scope": "clusters clusters:read"}),
    );
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str())];
    assert_eq!(
        reason(&decide_with(&h, "GET", "/api/2.0/clusters/list", &headers)),
        None
    );
    let other_rule = decide_with(&h, "POST", "/api/2.0/clusters/create", &headers);
    assert_eq!(
        (reason(&other_rule), other_rule.audit().cache),
        (Some("issuer_not_accepted"), Some("hit"))
    );
}

#[test]
fn mutations_apply_to_a_header_list() {
    let headers: Vec<(String, String)> = [
        (":path", "/a/../b"),
        ("X-Brickgate-Subject", "admin"),
        ("user-agent", "curl"),
        ("accept", "*/*"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let mutations = Mutations {
        remove_headers: vec!["X-Brickgate-Subject".into()],
        set_headers: vec![
            ("x-brickgate-subject".into(), "alice".into()),
            ("user-agent".into(), "curl brickgate".into()),
        ],
        set_path: Some("/b".into()),
        ..Mutations::default()
    };
    let applied = mutations.applied_to(&headers);
    let pairs: Vec<(&str, &str)> = applied
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("accept", "*/*"),
            (":path", "/b"),
            ("x-brickgate-subject", "alice"),
            ("user-agent", "curl brickgate")
        ]
    );
}

/// Method overrides and `_`-spelled identity headers, on every kind of rule that admits.
#[test]
fn request_hygiene_applies_to_every_admitted_request() {
    let h = engine_with(json!({}));
    let auth = format!("Bearer {}", rs(json!({})));
    let token_read = ("GET", "/api/2.0/clusters/list");
    let anonymous = ("GET", "/healthz");
    type Case<'a> = (
        &'a str,
        (&'a str, &'a str),
        Vec<(&'a str, &'a str)>,
        Result<Vec<&'a str>, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "override naming the request's method is removed",
            token_read,
            vec![("authorization", &auth), ("X-HTTP-Method-Override", "GET")],
            Ok(vec!["X-HTTP-Method-Override"]),
        ),
        (
            "override naming another method is refused",
            token_read,
            vec![
                ("authorization", &auth),
                ("x-http-method-override", "DELETE"),
            ],
            Err("method_override"),
        ),
        (
            "underscore override naming another method is refused",
            token_read,
            vec![("authorization", &auth), ("X_HTTP_Method", "POST")],
            Err("method_override"),
        ),
        (
            "anonymous rule: override refused",
            anonymous,
            vec![("x-method-override", "DELETE")],
            Err("method_override"),
        ),
        (
            "anonymous rule: identity look-alikes, override and proxy credentials removed",
            anonymous,
            vec![
                ("X_Brickgate_Subject", "admin"),
                ("x-method-override", "GET"),
                ("proxy-authorization", "Basic dXNlcjpwdw=="),
            ],
            Ok(vec![
                "X_Brickgate_Subject",
                "x-method-override",
                "proxy-authorization",
            ]),
        ),
        (
            "token rule: identity look-alikes removed, then set",
            token_read,
            vec![("authorization", &auth), ("x_brickgate_subject", "admin")],
            Ok(vec!["x_brickgate_subject"]),
        ),
        (
            "a second credential is refused before anything else",
            token_read,
            vec![
                ("authorization", &auth),
                ("proxy-authorization", "Basic dXNlcjpwdw=="),
            ],
            Err("multiple_tokens"),
        ),
    ];
    for (name, (method, path), headers, expected) in cases {
        let decision = decide_with(&h, method, path, &headers);
        match (expected, &decision) {
            (Ok(removed), Decision::Allow { mutations, .. }) => {
                assert_eq!(mutations.remove_headers, removed, "{name}")
            }
            (Err(why), Decision::Deny { response, .. }) => {
                assert_eq!(reason(&decision), Some(why), "{name}");
                assert_eq!(response.status, 400, "{name}");
            }
            (_, other) => panic!("{name}: {other:?}"),
        }
    }
}

/// Rough native cost of a warm decision (`cargo test --release warm_decision_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn warm_decision_cost() {
    let h = engine_with(json!({}));
    let auth = format!("Bearer {}", rs(json!({})));
    let headers: Vec<(String, String)> = [
        (":method", "GET"),
        (":path", "/api/2.0/clusters/list"),
        (":authority", "x"),
        ("authorization", auth.as_str()),
        ("user-agent", "wrk"),
        ("x-request-id", "abc"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let request = Request {
        method: "GET",
        path: "/api/2.0/clusters/list",
        headers: &headers,
        body: None,
        fingerprint: false,
    };
    let mut cache = TokenCache::new(64, 1 << 20);
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let start = std::time::Instant::now();
    for _ in 0..n {
        let d = h.engine.decide(&request, &h.store, &mut cache, NOW * 1000);
        std::hint::black_box(&d);
    }
    println!("decide: {:?} per call", start.elapsed() / n);
}

mod audit;
