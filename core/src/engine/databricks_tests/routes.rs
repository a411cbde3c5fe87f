//! The catalogue deciding routes: refusals and route classes, ambiguous paths, Entra grants
//! mapped to catalogue scopes, CORS preflights.

use super::*;

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
