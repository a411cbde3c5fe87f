//! Serving endpoints: rules chosen by the endpoint in the path or the body, bodies that
//! cannot side-step an endpoint rule, served models and the AI Gateway, body limits.

use super::*;

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

/// Issue 17: every serving API shape Databricks documents (`databricks::serving`) reaches the
/// endpoint's own rule and limit; a Gemini-style route names its endpoint in the path and is
/// decided without reading a `model` from its body.
#[test]
fn every_documented_serving_shape_is_held_to_the_endpoints_rule_and_limit() {
    let engine = engine(json!({"mode": "pass_through"}));
    let outsider = format!(
        "Bearer {}",
        token(json!({"scope": "all-apis serving:other"}))
    );
    let auth = [("authorization", outsider.as_str())];
    let fraud_body: &[u8] = br#"{"model": "fraud", "input": []}"#;
    // (path, body): each addresses endpoint `fraud`.
    let shapes: [(&str, Option<&[u8]>); 7] = [
        ("/serving-endpoints/fraud/invocations", None),
        ("/serving-endpoints/open-responses", Some(fraud_body)),
        ("/serving-endpoints/responses", Some(fraud_body)),
        ("/serving-endpoints/anthropic/v1/messages", Some(fraud_body)),
        ("/ai-gateway/anthropic/v1/messages", Some(fraud_body)),
        (
            "/serving-endpoints/gemini/v1beta/models/fraud:generateContent",
            None,
        ),
        (
            "/ai-gateway/gemini/v1beta/models/fraud:streamGenerateContent",
            None,
        ),
    ];
    for (path, body) in shapes {
        let decided = decide(&engine, "POST", path, &auth, body);
        assert_eq!(decided.audit().reason, Some("group_not_allowed"), "{path}");
        assert_eq!(
            decided.audit().rule.as_deref(),
            Some("fraud-team"),
            "{path}"
        );
    }
    // Gemini-style: a body without `model` (Google's own shape) is never a bad body.
    let member = format!("Bearer {}", token(json!({"groups": ["fraud"]})));
    let gemini_body: &[u8] = br#"{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}"#;
    for path in [
        "/serving-endpoints/gemini/v1beta/models/fraud:generateContent",
        "/ai-gateway/gemini/v1beta/models/fraud:generateContent",
    ] {
        let length = gemini_body.len().to_string();
        let headers = [
            ("authorization", member.as_str()),
            ("content-length", length.as_str()),
        ];
        let decided = decide(&engine, "POST", path, &headers, None);
        assert!(
            matches!(decided, Decision::Allow { .. }),
            "{path}: {:?}",
            decided.audit().detail
        );
        assert_eq!(
            decided.audit().rule.as_deref(),
            Some("fraud-team"),
            "{path}"
        );
        let decided = decide(&engine, "POST", path, &headers, Some(gemini_body));
        assert!(matches!(decided, Decision::Allow { .. }), "{path}");
    }
    // The foundation-model limit holds on the Gemini shape too (decided from Content-Length).
    let scoped = format!(
        "Bearer {}",
        token(json!({"scope": "serving:databricks-gemini"}))
    );
    let over = ((4 << 20) + 1).to_string();
    let headers = [
        ("authorization", scoped.as_str()),
        ("content-length", over.as_str()),
    ];
    let decided = decide(
        &engine,
        "POST",
        "/serving-endpoints/gemini/v1beta/models/databricks-gemini:generateContent",
        &headers,
        None,
    );
    assert_eq!(decided.audit().reason, Some("body_too_large"));
}
