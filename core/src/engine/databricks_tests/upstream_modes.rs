//! Upstream modes and header hygiene: the Databricks token asked for in exchange and
//! service-principal modes, the mapped subject claim, client credentials never forwarded
//! when brickgate sends its own.

use super::*;

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
