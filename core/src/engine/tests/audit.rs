//! Audit records name the caller only once the token verified: before that, what the token
//! claims goes into `claimed_*` (a forged token must not put a name in `subject`).

use super::*;

struct Names {
    subject: Option<&'static str>,
    claimed: Option<&'static str>,
}

const VERIFIED: Names = Names {
    subject: Some("alice@example.com"),
    claimed: None,
};
const CLAIMED: Names = Names {
    subject: None,
    claimed: Some("alice@example.com"),
};

fn assert_names(case: &str, audit: &AuditRecord, names: &Names) {
    assert_eq!(audit.subject.as_deref(), names.subject, "{case}: subject");
    assert_eq!(
        audit.claimed_subject.as_deref(),
        names.claimed,
        "{case}: claimed"
    );
    let verified = names.subject.is_some();
    let pair = |named: &Option<String>, claimed: &Option<String>| {
        if verified {
            (named.clone(), claimed.clone())
        } else {
            (claimed.clone(), named.clone())
        }
    };
    assert_eq!(
        pair(&audit.client_id, &audit.claimed_client_id),
        (Some("app-1".to_string()), None),
        "{case}: client id"
    );
    assert_eq!(
        pair(&audit.token_id, &audit.claimed_token_id),
        (Some("j-1".to_string()), None),
        "{case}: token id"
    );
    let json = audit.to_json();
    assert_eq!(json.contains("\"subject\""), verified, "{case}: {json}");
    assert_eq!(
        json.contains("\"claimed_subject\""),
        !verified,
        "{case}: {json}"
    );
}

#[test]
fn only_verified_tokens_name_a_subject() {
    let h = engine_with(json!({}));
    let cases: Vec<(&str, String, &str, Option<&str>, Names)> = vec![
        ("allowed", rs(json!({})), "GET", None, VERIFIED),
        (
            "forged signature",
            mint(Algorithm::RS256, Some("attacker"), None, json!({})),
            "GET",
            Some("bad_signature"),
            CLAIMED,
        ),
        (
            "unknown kid",
            mint(Algorithm::RS256, Some("nope"), None, json!({})),
            "GET",
            Some("unknown_kid"),
            CLAIMED,
        ),
        (
            "expired",
            rs(json!({"iat": NOW - 7200, "exp": NOW - 3600})),
            "GET",
            Some("expired"),
            CLAIMED,
        ),
        (
            "other audience",
            rs(json!({"aud": "web"})),
            "GET",
            Some("audience_mismatch"),
            CLAIMED,
        ),
        (
            "alg not allowed",
            mint(
                Algorithm::ES256,
                Some("test-ec-1"),
                None,
                json!({"iss": "https://hmac.test"}),
            ),
            "GET",
            Some("alg_not_allowed"),
            CLAIMED,
        ),
        (
            "verified, scope missing",
            rs(json!({"jti": "j-1"})),
            "POST",
            Some("insufficient_scope"),
            VERIFIED,
        ),
    ];
    for (case, token, method, expected, names) in cases {
        let auth = format!("Bearer {token}");
        let decision = decide_with(
            &h,
            method,
            "/api/2.0/clusters/list",
            &[("authorization", &auth)],
        );
        assert_eq!(reason(&decision), expected, "{case}");
        assert_names(case, decision.audit(), &names);
    }
}

#[test]
fn cached_tokens_refused_for_this_request_are_only_claimed() {
    let h = engine_with(json!({}));
    let hmac = mint(
        Algorithm::HS256,
        Some("s1"),
        None,
        json!({"iss": "https://hmac.test", "exp": NOW + 600}),
    );
    let auth = format!("Bearer {hmac}");
    let headers = [("authorization", auth.as_str())];
    let first = decide_with(&h, "GET", "/api/2.0/clusters/list", &headers);
    assert_eq!(reason(&first), None);
    assert_names("verified", first.audit(), &VERIFIED);

    let hit = decide_with(&h, "GET", "/api/2.0/clusters/list", &headers);
    assert_eq!(hit.audit().cache, Some("hit"));
    assert_names("cache hit", hit.audit(), &VERIFIED);

    let other_rule = decide_with(&h, "POST", "/api/2.0/clusters/create", &headers);
    assert_eq!(
        (reason(&other_rule), other_rule.audit().cache),
        (Some("issuer_not_accepted"), Some("hit"))
    );
    assert_names("issuer not accepted", other_rule.audit(), &CLAIMED);

    let later = decide_at(&h, NOW + 700, "GET", "/api/2.0/clusters/list", &headers);
    assert_eq!(reason(&later), Some("expired"));
    assert_names("expired on hit", later.audit(), &CLAIMED);
}

#[test]
fn an_unknown_issuer_is_repeated_bounded() {
    let h = engine_with(json!({}));
    let iss = format!("https://{}\u{e9}", "i".repeat(5000));
    let auth = format!("Bearer {}", rs(json!({ "iss": iss })));
    let decision = decide_with(
        &h,
        "GET",
        "/api/2.0/clusters/list",
        &[("authorization", &auth)],
    );
    let Decision::Deny { response, audit } = decision else {
        panic!("allowed")
    };
    assert_eq!(audit.reason, Some("issuer_not_accepted"));
    let detail = audit.detail.unwrap_or_default();
    assert!(
        detail.contains(&format!("\"https://{}...\"", "i".repeat(56))),
        "{detail}"
    );
    assert!(detail.len() < 300, "{detail}");
    assert!(response.header("www-authenticate").unwrap().len() < 400);
}

/// A Databricks personal access token or Databricks-issued OAuth token sent where the route
/// takes IdP tokens: refused as `databricks_credential`, naming what it is and the issuers the
/// rule takes, in the body, the challenge and the audit, never repeating the token.
#[test]
fn databricks_own_credentials_are_named_not_parsed() {
    let pat = "dapi0123456789abcdef0123456789abcdef".to_string();
    let databricks_jwt =
        rs(json!({ "iss": "https://dbc-1234abcd-5678.cloud.databricks.com/oidc" }));
    let cases = [
        (&pat, "this is a Databricks personal access token; rule "),
        (
            &databricks_jwt,
            "this is a Databricks-issued OAuth token (issuer \"https://dbc-1234abcd-5678.cloud.databricks.com/oidc\"); rule ",
        ),
    ];
    let h = engine_with(json!({}));
    for (token, expected) in cases {
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
        assert_eq!(audit.reason, Some("databricks_credential"));
        let detail = audit.detail.unwrap_or_default();
        assert!(detail.starts_with(expected), "{detail}");
        assert!(
            detail.contains("takes tokens issued by [https://"),
            "{detail}"
        );
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(challenge.contains("this is a Databricks"), "{challenge}");
        let body = String::from_utf8_lossy(&response.body);
        assert!(body.contains("this is a Databricks"), "{body}");
        for text in [challenge, &body, &detail] {
            assert!(
                !text.contains(token.as_str()),
                "the token is never repeated"
            );
        }
    }
}
