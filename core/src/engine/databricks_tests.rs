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

#[test]
fn serving_rules_select_by_endpoint_in_path_or_body() {
    let engine = engine(json!({"mode": "pass_through"}));
    let fraud_member = format!(
        "Bearer {}",
        token(json!({"groups": ["fraud"], "scope": "serving:churn"}))
    );
    let outsider = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let chat = "/serving-endpoints/chat/completions";
    let body = |model: &str| {
        json!({"model": model, "messages": []})
            .to_string()
            .into_bytes()
    };

    let need = decide(
        &engine,
        "POST",
        chat,
        &[("authorization", &fraud_member)],
        None,
    );
    assert!(
        matches!(
            need,
            Decision::NeedBody {
                limit: crate::engine::ReadLimit {
                    max_bytes: 16_777_216,
                    ..
                },
                ..
            }
        ),
        "{need:?}"
    );

    type Case<'a> = (&'a str, &'a str, Option<Vec<u8>>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "/serving-endpoints/fraud/invocations",
            &fraud_member,
            None,
            None,
            "fraud-team",
        ),
        (
            "/serving-endpoints/fraud/invocations",
            &outsider,
            None,
            Some("group_not_allowed"),
            "fraud-team",
        ),
        (chat, &fraud_member, Some(body("fraud")), None, "fraud-team"),
        (
            chat,
            &outsider,
            Some(body("fraud")),
            Some("group_not_allowed"),
            "fraud-team",
        ),
        (chat, &outsider, Some(body("churn")), None, "per-endpoint"),
        (
            "/serving-endpoints/churn/invocations",
            &outsider,
            None,
            None,
            "per-endpoint",
        ),
        (
            "/serving-endpoints/other/invocations",
            &outsider,
            None,
            Some("insufficient_scope"),
            "per-endpoint",
        ),
    ];
    for (path, auth, body, reason, rule) in cases {
        let decision = decide(
            &engine,
            "POST",
            path,
            &[("authorization", auth)],
            body.as_deref(),
        );
        assert_eq!(decision.audit().reason, reason, "{path} {body:?}");
        assert_eq!(decision.audit().rule.as_deref(), Some(rule), "{path}");
    }
    let bad = decide(
        &engine,
        "POST",
        chat,
        &[("authorization", &outsider)],
        Some(b"{}"),
    );
    assert_eq!(bad.audit().reason, Some("bad_body"));
}

#[test]
fn catalogue_refusals_and_sensitive_routes() {
    let engine = engine(json!({"mode": "pass_through"}));
    let reader = format!("Bearer {}", token(json!({"scope": "clusters:read"})));
    let cases = [
        ("GET", "/api/2.1/clusters/list", None),
        (
            "POST",
            "/api/2.1/clusters/create",
            Some("insufficient_scope"),
        ),
        ("POST", "/api/2.0/token/create", Some("route_disabled")),
        ("GET", "/api/2.0/unknown/thing", Some("insufficient_scope")),
    ];
    for (method, path, reason) in cases {
        let decision = decide(&engine, method, path, &[("authorization", &reader)], None);
        assert_eq!(decision.audit().reason, reason, "{method} {path}");
    }
    let anonymous = decide(&engine, "POST", "/oidc/v1/token", &[], None);
    assert!(matches!(anonymous, Decision::Allow { .. }));
}

#[test]
fn exchange_mode_asks_for_a_databricks_token_per_subject() {
    let engine = engine(
        json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://adb-1.azuredatabricks.net", "scopes": ["all-apis"]}),
    );
    let idp_token = token(json!({"scope": "clusters"}));
    let auth = format!("Bearer {idp_token}");
    let decision = decide(
        &engine,
        "GET",
        "/api/2.1/clusters/list",
        &[("authorization", &auth)],
        None,
    );
    let Decision::Allow {
        upstream: UpstreamAction::Fetch(request),
        ..
    } = decision
    else {
        panic!("{decision:?}")
    };
    assert_eq!(
        (
            request.cluster.as_str(),
            request.authority.as_str(),
            request.path.as_str()
        ),
        ("ws", "adb-1.azuredatabricks.net", "/oidc/v1/token")
    );
    assert!(request.body.contains(&format!("subject_token={idp_token}")));
    let other = token(json!({"scope": "clusters", "jti": "2"}));
    let again = decide(
        &engine,
        "GET",
        "/api/2.1/clusters/list",
        &[("authorization", &format!("Bearer {other}"))],
        None,
    );
    let Decision::Allow {
        upstream: UpstreamAction::Fetch(second),
        ..
    } = again
    else {
        panic!()
    };
    assert_eq!(
        second.cache_key, request.cache_key,
        "same subject and scopes share the Databricks token"
    );
}

#[test]
fn service_principal_mode_uses_brickgates_own_credentials() {
    let engine = engine(
        json!({"mode": "service_principal", "cluster": "ws", "workspace_url": "https://ws.example",
                               "client_id": "sp", "client_secret": "secret", "scopes": ["all-apis"]}),
    );
    let auth = format!("Bearer {}", token(json!({"scope": "clusters"})));
    let decision = decide(
        &engine,
        "GET",
        "/api/2.1/clusters/list",
        &[("authorization", &auth)],
        None,
    );
    let Decision::Allow {
        upstream: UpstreamAction::Fetch(request),
        mutations,
        ..
    } = decision
    else {
        panic!()
    };
    assert!(request.body.starts_with("grant_type=client_credentials"));
    let subject = mutations
        .headers_set()
        .find(|(n, _)| *n == "x-brickgate-subject")
        .map(|(_, v)| v);
    assert_eq!(
        subject,
        Some("alice@example.com"),
        "audit headers still name the caller"
    );
}

#[test]
fn extra_credentials_are_stripped_and_the_user_agent_names_the_request() {
    let engine = engine(json!({"mode": "pass_through"}));
    let auth = format!("Bearer {}", token(json!({"scope": "clusters"})));
    let headers = [
        ("authorization", auth.as_str()),
        ("x-databricks-azure-sp-management-token", "arm"),
        ("X-Forwarded-Email", "admin@example.com"),
        ("X_Forwarded_User", "admin"),
        ("x_databricks_gcp_sa_access_token", "gcp"),
        ("user-agent", "databricks-sdk-go/0.50.0"),
        ("x-request-id", "req-7"),
    ];
    let decision = decide(&engine, "GET", "/api/2.1/clusters/list", &headers, None);
    let Decision::Allow { mutations, .. } = decision else {
        panic!()
    };
    assert!(
        mutations
            .remove_headers
            .contains(&"x-databricks-azure-sp-management-token".to_string())
    );
    assert!(
        mutations
            .remove_headers
            .contains(&"X-Forwarded-Email".to_string())
    );
    for spelled_with_underscores in ["X_Forwarded_User", "x_databricks_gcp_sa_access_token"] {
        assert!(
            mutations
                .remove_headers
                .contains(&spelled_with_underscores.to_string()),
            "{spelled_with_underscores}"
        );
    }
    let agent = mutations
        .headers_set()
        .find(|(n, _)| *n == "user-agent")
        .map(|(_, v)| v.to_string());
    assert_eq!(
        agent,
        Some(format!(
            "databricks-sdk-go/0.50.0 brickgate/{} req/req-7",
            crate::VERSION
        ))
    );
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

#[test]
fn no_exchange_without_the_mapped_subject_claim_even_from_the_cache() {
    let engine = engine_with(
        json!({"upstream": exchange_upstream(Some("email"))}),
        json!({}),
    );
    let mut cache = TokenCache::new(16, 1 << 20);
    let mut decide_cached = |claims: Value| {
        let auth = format!("Bearer {}", token(claims));
        let headers = vec![("authorization".to_string(), auth)];
        let request = Request {
            method: "GET",
            path: "/api/2.1/clusters/list",
            headers: &headers,
            body: None,
            fingerprint: false,
        };
        let first = engine.0.decide(&request, &engine.1, &mut cache, NOW * 1000);
        let second = engine.0.decide(&request, &engine.1, &mut cache, NOW * 1000);
        assert_eq!(second.audit().cache, Some("hit"));
        assert_eq!(first.audit().cache, Some("miss"));
        assert_eq!(
            (first.audit().reason, first.audit().detail.clone()),
            (second.audit().reason, second.audit().detail.clone()),
            "the cache decides as verification did"
        );
        second
    };
    let cases = [
        (json!({}), "token claim \"email\" is missing"),
        (json!({"email": ""}), "token claim \"email\" is empty"),
        (
            json!({"email": ["a@example.com"]}),
            "token claim \"email\" is not a string",
        ),
        (json!({"email": 7}), "token claim \"email\" is not a string"),
    ];
    for (claims, message) in cases {
        let decision = decide_cached(claims.clone());
        let Decision::Deny { response, audit } = &decision else {
            panic!("{claims}: {decision:?}")
        };
        assert_eq!(response.status, 401, "{claims}");
        assert_eq!(audit.reason, Some("missing_subject"), "{claims}");
        let detail = audit.detail.as_deref().unwrap_or_default();
        assert!(detail.starts_with(message), "{claims}: {detail}");
        assert!(detail.contains("subject_claim"), "{detail}");
    }
    let key_of = |decision: Decision| match decision {
        Decision::Allow {
            upstream: UpstreamAction::Fetch(request),
            ..
        } => request.cache_key,
        other => panic!("{other:?}"),
    };
    // `sub` is the same for all three: only the mapped claim tells the callers apart.
    let alice = key_of(decide_cached(json!({"email": "alice@example.com"})));
    let bob = key_of(decide_cached(json!({"email": "bob@example.com"})));
    let alice_again = key_of(decide_cached(
        json!({"email": "alice@example.com", "jti": "another token"}),
    ));
    assert_ne!(alice, bob);
    assert_eq!(alice, alice_again);
}

#[test]
fn the_client_credential_never_reaches_the_upstream_when_brickgate_sends_its_own() {
    let sources = json!([{"header": "authorization", "prefix": "Bearer "}, {"header": "x-idp-token"}, {"query": "access_token"}]);
    let service_principal = json!({"mode": "service_principal", "cluster": "ws", "workspace_url": "https://ws.example",
                                   "client_id": "sp", "client_secret": "secret", "scopes": ["all-apis"]});
    let idp_token = token(json!({}));
    // (mode, forward_authorization, where the credential is, whether it is forwarded)
    let cases = [
        (exchange_upstream(None), false, "header", false),
        (exchange_upstream(None), false, "query", false),
        (exchange_upstream(None), true, "header", false),
        (exchange_upstream(None), true, "query", false),
        (service_principal.clone(), false, "header", false),
        (service_principal.clone(), false, "query", false),
        (service_principal, true, "query", false),
        (json!({"mode": "pass_through"}), false, "query", false),
        (json!({"mode": "pass_through"}), true, "header", true),
        (json!({"mode": "pass_through"}), true, "query", true),
    ];
    for (upstream, forward, place, forwarded) in cases {
        let engine = engine_with(
            json!({"upstream": upstream, "token_sources": sources}),
            json!({"forward_authorization": forward}),
        );
        let query_path = format!("/api/2.1/clusters/list?cluster_id=1&access_token={idp_token}");
        let (path, headers) = match place {
            "header" => (
                "/api/2.1/clusters/list?cluster_id=1",
                vec![("x-idp-token", idp_token.as_str())],
            ),
            _ => (query_path.as_str(), vec![]),
        };
        let decision = decide(&engine, "GET", path, &headers, None);
        let Decision::Allow { mutations, .. } = &decision else {
            panic!("{upstream} {place}: {decision:?}")
        };
        let original: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain([(":path".to_string(), path.to_string())])
            .collect();
        let sent = mutations.applied_to(&original);
        let carries_token = sent.iter().any(|(_, value)| value.contains(&idp_token));
        assert_eq!(
            carries_token, forwarded,
            "{upstream} forward={forward} {place}: {sent:?}"
        );
        let sent_path = sent
            .iter()
            .rev()
            .find(|(n, _)| n == ":path")
            .map(|(_, v)| v.as_str());
        if !forwarded {
            assert_eq!(
                sent_path,
                Some("/api/2.1/clusters/list?cluster_id=1"),
                "{upstream} {place}"
            );
        }
    }
}

/// Finding 7 of issue 8: paths that could mean one route to brickgate and another upstream are
/// refused before any rule decides, or decided by the rule of the path the upstream receives.
#[test]
fn ambiguous_paths_are_refused_before_a_rule_decides() {
    let engine = engine(json!({"mode": "pass_through"}));
    let admin = format!("Bearer {}", token(json!({"scope": "all-apis"})));
    let secrets_reader = format!("Bearer {}", token(json!({"scope": "secrets:read"})));
    // (method, path, token, status, reason, deciding rule)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        u32,
        Option<&'a str>,
        Option<&'a str>,
    );
    let sensitive = Some("databricks:authentication:personal_access_tokens");
    let cases: Vec<Case> = vec![
        // `;` path parameters: never the anonymous OIDC rule, never around route_disabled.
        (
            "POST",
            "/oidc/..;/api/2.0/token/create",
            None,
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/oidc/..;/api/2.0/token/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/oidc/%2e%2e;/api/2.0/token/create",
            None,
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/oidc/..%3B/api/2.0/token/create",
            None,
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token;/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token;jsessionid=1/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token%3b/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        // Backslashes, raw as escaped.
        (
            "POST",
            "/oidc/..\\api/2.0/token/create",
            None,
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token\\create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token%5Ccreate",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        // Letter case that would change the rule.
        (
            "POST",
            "/api/2.0/Token/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/API/2.0/TOKEN/CREATE",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        ("POST", "/OIDC/v1/token", None, 400, Some("bad_path"), None),
        // Dot- and space-ended segments.
        (
            "POST",
            "/api/2.0/token./create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/token%20/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "POST",
            "/api/2.0/.../token/create",
            Some(&admin),
            400,
            Some("bad_path"),
            None,
        ),
        // A secret's value is not a `:read`, suffix or not.
        (
            "GET",
            "/api/2.0/secrets/get.json",
            Some(&secrets_reader),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "GET",
            "/api/2.0/secrets/get%2Ejson",
            Some(&secrets_reader),
            400,
            Some("bad_path"),
            None,
        ),
        (
            "GET",
            "/api/2.0/secrets/get",
            Some(&secrets_reader),
            403,
            Some("route_disabled"),
            Some("databricks:secrets:secret_values"),
        ),
        (
            "GET",
            "/api/2.0/secrets/list",
            Some(&secrets_reader),
            200,
            None,
            Some("databricks:secrets:read"),
        ),
        // What brickgate resolves itself is decided by the rule of the resolved path.
        (
            "POST",
            "/oidc/../api/2.0/token/create",
            None,
            403,
            Some("route_disabled"),
            sensitive,
        ),
        (
            "POST",
            "/api/2.0/token/create",
            Some(&admin),
            403,
            Some("route_disabled"),
            sensitive,
        ),
        (
            "POST",
            "/oidc/v1/token",
            None,
            200,
            None,
            Some("databricks:oauth:anonymous"),
        ),
    ];
    for (method, path, auth, status, reason, rule) in cases {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let decision = decide(&engine, method, path, &headers, None);
        let audit = decision.audit();
        assert_eq!(
            (audit.status, audit.reason, audit.rule.as_deref()),
            (status, reason, rule),
            "{method} {path}: {:?}",
            audit.detail
        );
    }
}

/// Finding 8 of issue 8: one `model` per body, and endpoint names that differ from a configured
/// one only in letter case are refused rather than sent to a looser rule.
#[test]
fn serving_bodies_and_endpoint_names_cannot_sidestep_endpoint_rules() {
    let engine = engine(json!({"mode": "pass_through"}));
    let outsider = format!(
        "Bearer {}",
        token(json!({"scope": "serving:FRAUD serving:churn"}))
    );
    let chat = "/serving-endpoints/chat/completions";
    // (path, body, status, reason)
    type Case<'a> = (&'a str, Option<&'a [u8]>, u32, Option<&'a str>);
    let cases: [Case; 8] = [
        (
            chat,
            Some(br#"{"model":"churn","model":"fraud"}"#),
            400,
            Some("bad_body"),
        ),
        (
            chat,
            Some(br#"{"model":"fraud","model":"churn"}"#),
            400,
            Some("bad_body"),
        ),
        (
            chat,
            Some(br#"{"model":"churn","mod\u0065l":"fraud"}"#),
            400,
            Some("bad_body"),
        ),
        (
            chat,
            Some(br#"{"model":"FRAUD","messages":[]}"#),
            400,
            Some("bad_body"),
        ),
        (chat, Some(br#"{"model":"Fraud"}"#), 400, Some("bad_body")),
        (
            "/serving-endpoints/FRAUD/invocations",
            None,
            400,
            Some("bad_path"),
        ),
        (
            "/serving-endpoints/fraud/invocations",
            None,
            403,
            Some("group_not_allowed"),
        ),
        (
            chat,
            Some(br#"{"model":"churn","messages":[{"model":"x"}]}"#),
            200,
            None,
        ),
    ];
    for (path, body, status, reason) in cases {
        let decision = decide(&engine, "POST", path, &[("authorization", &outsider)], body);
        let audit = decision.audit();
        assert_eq!(
            (audit.status, audit.reason),
            (status, reason),
            "{path} {:?}: {:?}",
            body.map(String::from_utf8_lossy),
            audit.detail
        );
    }
}

/// Issue 9 point 3: an Entra ID (v1) token for AzureDatabricks carries `scp:
/// user_impersonation` and app roles, never Databricks scopes; the provider's `grants` map them
/// to catalogue scopes, so the catalogue decides on least privilege.
#[test]
fn entra_grants_map_roles_groups_and_idp_scopes_to_catalogue_scopes() {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "providers": {
            "entra": {
                "issuer": "https://okta.test", "idp": "entra",
                "audiences": ["2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"], "jwks": {"inline": jwks},
                "claims": {"subject": "upn"},
                "grants": {
                    "group:ml-engineers": ["model-serving", "mlflow"],
                    "role:Databricks.Reader": ["all-apis:read"],
                    "scope:user_impersonation": ["sql"]
                }
            }
        },
        "databricks": {"route_catalogue": true}
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    let engine = (Engine::new(config, Box::new(InWasmVerifier)), store);
    let entra = |claims: Value| {
        let mut all =
            json!({"aud": "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d", "upn": "alice@example.com"});
        for (k, v) in claims.as_object().unwrap() {
            all[k] = v.clone();
        }
        format!("Bearer {}", token(all))
    };
    let impersonation = entra(json!({"scp": "user_impersonation"}));
    let reader = entra(json!({"roles": ["Databricks.Reader"]}));
    let ml = entra(json!({"scp": "user_impersonation", "groups": ["ml-engineers"]}));
    let nothing = entra(json!({}));
    let cases = [
        (&impersonation, "POST", "/api/2.0/sql/statements", None),
        (
            &impersonation,
            "GET",
            "/api/2.1/clusters/list",
            Some("insufficient_scope"),
        ),
        (&reader, "GET", "/api/2.1/clusters/list", None),
        (
            &reader,
            "POST",
            "/api/2.1/clusters/create",
            Some("insufficient_scope"),
        ),
        (&ml, "POST", "/serving-endpoints/fraud/invocations", None),
        (&ml, "POST", "/api/2.0/mlflow/runs/search", None),
        (&ml, "POST", "/sql/1.0/warehouses/w1", None),
        (
            &ml,
            "POST",
            "/api/2.0/jobs/create",
            Some("insufficient_scope"),
        ),
        (
            &nothing,
            "GET",
            "/api/2.1/clusters/list",
            Some("insufficient_scope"),
        ),
    ];
    for (auth, method, path, reason) in cases {
        let decision = decide(&engine, method, path, &[("authorization", auth)], None);
        assert_eq!(
            decision.audit().reason,
            reason,
            "{method} {path}: {:?}",
            decision.audit().detail
        );
    }
}

/// Issue 9 point 4: a per-endpoint rule cannot be side-stepped through one served model of the
/// endpoint or through the AI Gateway, whose body's `model` names the endpoint.
#[test]
fn per_endpoint_rules_cover_served_models_and_the_ai_gateway() {
    let engine = engine(json!({"mode": "pass_through"}));
    let outsider = format!(
        "Bearer {}",
        token(json!({"scope": "all-apis serving:other"}))
    );
    let auth = [("authorization", outsider.as_str())];
    let served = decide(
        &engine,
        "POST",
        "/serving-endpoints/fraud/served-models/v2/invocations",
        &auth,
        None,
    );
    assert_eq!(
        served.audit().reason,
        Some("group_not_allowed"),
        "{:?}",
        served.audit().detail
    );
    assert_eq!(served.audit().rule.as_deref(), Some("fraud-team"));
    let gateway = "/ai-gateway/mlflow/v1/chat/completions";
    assert!(matches!(
        decide(&engine, "POST", gateway, &auth, None),
        Decision::NeedBody { .. }
    ));
    let body = br#"{"model": "fraud", "messages": []}"#;
    let decided = decide(&engine, "POST", gateway, &auth, Some(body));
    assert_eq!(decided.audit().reason, Some("group_not_allowed"));
    let other = decide(
        &engine,
        "POST",
        gateway,
        &auth,
        Some(br#"{"model": "other"}"#),
    );
    assert!(
        matches!(other, Decision::Allow { .. }),
        "{:?}",
        other.audit().detail
    );
    assert_eq!(other.audit().rule.as_deref(), Some("per-endpoint"));
    // reads name no endpoint: the catalogue decides them without a body
    let read = decide(&engine, "GET", "/ai-gateway/mlflow/v1/models", &auth, None);
    assert_eq!(
        read.audit().rule.as_deref(),
        Some("databricks:ai-gateway:read")
    );
}

/// Issue 9 point 4: `bypass_cors_preflight` forwards browser preflights without a token (as
/// Envoy's jwt_authn does); anything else under OPTIONS, or with the option off, needs one.
#[test]
fn cors_preflights_pass_only_when_enabled() {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = |bypass: bool| {
        let raw = json!({
            "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}}},
            "databricks": {"route_catalogue": true},
            "bypass_cors_preflight": bypass
        });
        let config = Config::from_json(raw.to_string().as_bytes()).unwrap();
        let store = JwksStore::new(&config, 1);
        (Engine::new(config, Box::new(InWasmVerifier)), store)
    };
    let preflight = [
        ("origin", "https://app.example"),
        ("access-control-request-method", "POST"),
        ("x-forwarded-email", "ceo@example.com"),
        ("authorization", "Bearer junk"),
    ];
    let on = config(true);
    let Decision::Allow {
        mutations, audit, ..
    } = decide(&on, "OPTIONS", "/api/2.0/sql/statements", &preflight, None)
    else {
        panic!("preflight refused");
    };
    assert_eq!(audit.rule.as_deref(), Some(CORS_PREFLIGHT_RULE));
    assert!(
        mutations
            .remove_headers
            .contains(&"authorization".to_string())
    );
    assert!(
        mutations
            .remove_headers
            .contains(&"x-forwarded-email".to_string()),
        "{:?}",
        mutations.remove_headers
    );
    let not_preflight = decide(
        &on,
        "OPTIONS",
        "/api/2.0/sql/statements",
        &[("origin", "https://app.example")],
        None,
    );
    assert_eq!(not_preflight.audit().reason, Some("missing_token"));
    let off = decide(
        &config(false),
        "OPTIONS",
        "/api/2.0/sql/statements",
        &preflight[..2],
        None,
    );
    assert_eq!(off.audit().reason, Some("missing_token"));
}

#[test]
fn serving_bodies_are_limited_per_endpoint_kind() {
    let engine = engine(json!({"mode": "pass_through"}));
    let auth = format!(
        "Bearer {}",
        token(json!({"scope": "serving:databricks-llama serving:agents_a-b-c serving:churn"}))
    );
    let chat = "/serving-endpoints/chat/completions";
    const MIB: usize = 1 << 20;
    // A JSON body of exactly `len` bytes naming `model`.
    let body = |model: &str, len: usize| {
        let head = format!("{{\"model\":\"{model}\",\"pad\":\"");
        let mut body = head.into_bytes();
        body.resize(len - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    let path = |endpoint: &str| format!("/serving-endpoints/{endpoint}/invocations");
    let four = (4 * MIB).to_string();
    let four_plus = (4 * MIB + 1).to_string();
    let sixteen_plus = (16 * MIB + 1).to_string();
    // (path, content-length, body, refused naming) — None: allowed.
    type Case = (
        String,
        Option<String>,
        Option<Vec<u8>>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        // Path form, decided at header time from Content-Length.
        (path("databricks-llama"), Some(four.clone()), None, None),
        (
            path("databricks-llama"),
            Some(four_plus.clone()),
            None,
            Some("foundation-model endpoint `databricks-llama`"),
        ),
        (
            path("agents_a-b-c"),
            Some(four_plus.clone()),
            None,
            Some("agent endpoint `agents_a-b-c`"),
        ),
        (path("churn"), Some(four_plus.clone()), None, None),
        (
            path("churn"),
            Some(sixteen_plus),
            None,
            Some("databricks.max_body_bytes"),
        ),
        // Path form without Content-Length: once the body is read.
        (
            path("agents_a-b-c"),
            None,
            Some(vec![b' '; 4 * MIB + 1]),
            Some("agent endpoint"),
        ),
        (path("agents_a-b-c"), None, Some(vec![b' '; 4 * MIB]), None),
        // Body form: once the body's model is read.
        (
            chat.to_string(),
            None,
            Some(body("databricks-llama", 4 * MIB + 1)),
            Some("foundation-model endpoint `databricks-llama`"),
        ),
        (
            chat.to_string(),
            None,
            Some(body("databricks-llama", 4 * MIB)),
            None,
        ),
        (
            chat.to_string(),
            None,
            Some(body("churn", 4 * MIB + 1)),
            None,
        ),
    ];
    for (path, length, body, refused) in cases {
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(length) = &length {
            headers.push(("content-length", length));
        }
        let decision = decide(&engine, "POST", &path, &headers, body.as_deref());
        let what = format!(
            "{path} length={length:?} body={:?}",
            body.as_ref().map(Vec::len)
        );
        match refused {
            None => assert!(
                matches!(decision, Decision::Allow { .. }),
                "{what}: {:?}",
                decision.audit()
            ),
            Some(naming) => {
                let Decision::Deny { response, audit } = &decision else {
                    panic!("{what}: not refused: {:?}", decision.audit());
                };
                assert_eq!(response.status, 413, "{what}");
                assert_eq!(audit.reason, Some("body_too_large"), "{what}");
                let detail = audit.detail.as_deref().unwrap_or_default();
                assert!(detail.contains(naming), "{what}: {detail}");
                assert!(
                    detail.contains("databricks."),
                    "{what}: names no setting: {detail}"
                );
            }
        }
    }

    // Unknown length: the body is read, at most the endpoint's limit, and a longer one is
    // refused with the endpoint's own words.
    let headers = vec![("authorization".to_string(), auth.clone())];
    let agent = path("agents_a-b-c");
    let request = Request {
        method: "POST",
        path: &agent,
        headers: &headers,
        body: None,
        fingerprint: false,
    };
    let need = engine.0.decide(
        &request,
        &engine.1,
        &mut TokenCache::new(4, 1 << 20),
        NOW * 1000,
    );
    let Decision::NeedBody { limit, .. } = need else {
        panic!("not held for its body: {need:?}");
    };
    assert_eq!(limit.max_bytes, 4 * MIB);
    assert!(
        limit
            .too_large
            .detail
            .contains("agent endpoint `agents_a-b-c`"),
        "{}",
        limit.too_large.detail
    );
}

mod review_probes;
mod stacked_versions;
mod token_swap;
