//! Issue 16 point 4: in exchange and service-principal modes the Databricks token brickgate
//! asks for carries no more than the caller's own Databricks scopes; point 7e: the exchange is
//! cached per audience.

use super::*;

fn upstream(mode: &str, scopes: &[&str]) -> Value {
    let mut upstream = json!({"mode": mode, "cluster": "ws", "workspace_url": "https://ws.example", "scopes": scopes});
    if mode == "service_principal" {
        upstream["client_id"] = json!("sp");
        upstream["client_secret"] = json!("secret");
    }
    upstream
}

/// The `scope` the token request asks for, or the refusal's reason.
fn requested(engine: &(Engine, JwksStore), claims: Value, method: &str, path: &str) -> String {
    let auth = format!("Bearer {}", token(claims));
    match decide(engine, method, path, &[("authorization", &auth)], Some(b"")) {
        Decision::Allow {
            upstream: UpstreamAction::Fetch(request),
            ..
        } => {
            let scope = request
                .body
                .split('&')
                .find_map(|pair| pair.strip_prefix("scope="))
                .unwrap_or_default();
            scope.replace("%3A", ":").replace('+', " ")
        }
        Decision::Deny { audit, .. } => format!("refused {}", audit.reason.unwrap_or_default()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_catalogue_callers_scopes_survive_the_swap() {
    // (mode, upstream.scopes, caller's `scope` claim, method, path) → requested scope
    let cases = [
        (
            "exchange",
            &["all-apis"][..],
            "sql:restricted-query",
            "POST",
            "/api/2.0/sql/statements",
            "sql:restricted-query",
        ),
        (
            "exchange",
            &["all-apis"],
            "clusters:read",
            "GET",
            "/api/2.1/clusters/list",
            "clusters:read",
        ),
        (
            "exchange",
            &["all-apis"],
            "clusters:read sql",
            "GET",
            "/api/2.1/clusters/list",
            "clusters:read sql",
        ),
        (
            "exchange",
            &["all-apis"],
            "all-apis",
            "GET",
            "/api/2.1/clusters/list",
            "all-apis",
        ),
        (
            "exchange",
            &["all-apis:read"],
            "all-apis",
            "GET",
            "/api/2.1/clusters/list",
            "all-apis:read",
        ),
        (
            "exchange",
            &["sql"],
            "clusters:read",
            "GET",
            "/api/2.1/clusters/list",
            "refused insufficient_scope",
        ),
        (
            "service_principal",
            &["all-apis"],
            "sql:restricted-query",
            "POST",
            "/api/2.0/sql/statements",
            "sql:restricted-query",
        ),
        (
            "service_principal",
            &["all-apis"],
            "clusters:read",
            "GET",
            "/api/2.1/clusters/list",
            "clusters:read",
        ),
    ];
    for (mode, scopes, held, method, path, expected) in cases {
        let engine = engine(upstream(mode, scopes));
        let got = requested(&engine, json!({"scope": held}), method, path);
        assert_eq!(got, expected, "{mode} {scopes:?} {held} {method} {path}");
    }
}

#[test]
fn callers_admitted_on_groups_alone_get_the_routes_narrowest_scope() {
    // A rule that requires nothing but a verified token: the caller has no Databricks scope.
    let cases = [
        (
            &["all-apis"][..],
            "GET",
            "/api/2.1/clusters/list",
            "clusters:read",
        ),
        (&["all-apis"], "POST", "/api/2.0/sql/statements", "sql"),
        (
            &["all-apis"],
            "GET",
            "/api/2.0/unknown/thing",
            "all-apis:read",
        ),
        (&["sql"], "POST", "/api/2.0/sql/statements", "sql"),
        (
            &["sql:restricted-query"],
            "POST",
            "/api/2.0/sql/statements",
            "sql:restricted-query",
        ),
        (
            &["sql"],
            "GET",
            "/api/2.1/clusters/list",
            "refused insufficient_scope",
        ),
        (
            &["all-apis"],
            "GET",
            "/not-databricks",
            "refused insufficient_scope",
        ),
    ];
    for (scopes, method, path, expected) in cases {
        let engine = engine_with(json!({"upstream": upstream("exchange", scopes)}), json!({}));
        let got = requested(&engine, json!({"groups": ["admins"]}), method, path);
        assert_eq!(got, expected, "{scopes:?} {method} {path}");
    }
}

#[test]
fn a_token_for_another_audience_never_reuses_the_exchange() {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api", "other-api"],
            "jwks": {"inline": jwks}, "upstream": upstream("exchange", &["all-apis"])}},
        "rules": [{"name": "any", "match": {"prefix": "/"}, "providers": ["okta"]}],
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    let engine = (Engine::new(config, Box::new(InWasmVerifier)), store);
    let key = |claims: Value| {
        let auth = format!("Bearer {}", token(claims));
        match decide(
            &engine,
            "GET",
            "/api/2.1/clusters/list",
            &[("authorization", &auth)],
            None,
        ) {
            Decision::Allow {
                upstream: UpstreamAction::Fetch(request),
                ..
            } => request.cache_key,
            other => panic!("{other:?}"),
        }
    };
    let api = key(json!({"aud": "api", "scope": "all-apis"}));
    assert_eq!(
        api,
        key(json!({"aud": "api", "scope": "all-apis", "jti": "2"})),
        "same subject, audience and scopes"
    );
    assert_eq!(
        api,
        key(json!({"aud": ["api", "api"], "scope": "all-apis"})),
        "audiences deduplicated"
    );
    assert_ne!(
        api,
        key(json!({"aud": "other-api", "scope": "all-apis"})),
        "another audience"
    );
    assert_ne!(
        api,
        key(json!({"aud": ["api", "other-api"], "scope": "all-apis"})),
        "an extra audience"
    );
    assert_ne!(
        api,
        key(json!({"aud": "api", "scope": "clusters:read"})),
        "other scopes"
    );
}
