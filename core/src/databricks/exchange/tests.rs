use super::*;

const ISSUER: &str = "https://okta.test";

fn all_apis() -> Vec<String> {
    vec!["all-apis".into(), "sql".into()]
}

/// An exchange by `endpoint` of a token with `aud: databricks`, for `all-apis sql`.
fn exchange(
    endpoint: &TokenEndpoint,
    issuer: &str,
    claim: &str,
    subject: &str,
    token: &str,
) -> TokenRequest {
    let audiences = ["databricks".to_string()];
    let caller = FederatedCaller {
        issuer,
        audiences: &audiences,
        subject_claim: claim,
        subject,
        subject_token: token,
    };
    endpoint.exchange(&caller, &all_apis())
}

fn endpoint(client_id: Option<&str>) -> TokenEndpoint {
    TokenEndpoint {
        cluster: "workspace".into(),
        location: FetchLocation::parse("https://adb-1.azuredatabricks.net/oidc/v1/token").unwrap(),
        scopes: vec!["all-apis".into(), "sql".into()],
        client_id: client_id.map(String::from),
        client_secret: Some("s3cret".into()),
        timeout_ms: 5000,
    }
}

#[test]
fn exchange_requests_follow_rfc_8693() {
    let request = exchange(
        &endpoint(Some("sp-app")),
        ISSUER,
        "sub",
        "alice@example.com",
        "eyJ.a.b",
    );
    assert_eq!(request.path, "/oidc/v1/token");
    assert_eq!(
        request.body,
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=eyJ.a.b\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&scope=all-apis+sql&client_id=sp-app"
    );
    assert!(!format!("{request:?}").contains("eyJ"), "never printed");
}

#[test]
fn exchanged_tokens_are_cached_per_issuer_mapped_subject_and_client_id() {
    let key = |client_id: Option<&str>, issuer: &str, claim: &str, subject: &str| {
        exchange(&endpoint(client_id), issuer, claim, subject, "eyJ.a.b").cache_key
    };
    let alice = key(Some("sp-app"), ISSUER, "email", "alice@example.com");
    let differing = [
        (
            "subject",
            key(Some("sp-app"), ISSUER, "email", "bob@example.com"),
        ),
        (
            "issuer",
            key(
                Some("sp-app"),
                "https://other.test",
                "email",
                "alice@example.com",
            ),
        ),
        (
            "client id",
            key(Some("sp-other"), ISSUER, "email", "alice@example.com"),
        ),
        (
            "no client id",
            key(None, ISSUER, "email", "alice@example.com"),
        ),
        (
            "claim",
            key(Some("sp-app"), ISSUER, "sub", "alice@example.com"),
        ),
        // A value holding the separator cannot borrow the next part.
        (
            "shifted",
            key(Some("sp-app"), ISSUER, "email\nalice@example.com", ""),
        ),
    ];
    for (what, other) in differing {
        assert_ne!(alice, other, "{what}");
    }
    assert_eq!(
        alice,
        exchange(
            &endpoint(Some("sp-app")),
            ISSUER,
            "email",
            "alice@example.com",
            "eyJ.other.token"
        )
        .cache_key,
        "a new IdP token of the same subject reuses the Databricks token"
    );
}

#[test]
fn service_principal_requests_use_basic_auth() {
    let request = endpoint(Some("sp-app")).client_credentials("okta", &all_apis());
    assert_eq!(
        request.body,
        "grant_type=client_credentials&scope=all-apis+sql"
    );
    assert_eq!(
        request.headers[0].1,
        format!("Basic {}", STANDARD.encode("sp-app:s3cret"))
    );
    assert!(!format!("{:?}", endpoint(Some("x"))).contains("s3cret"));
}

#[test]
fn token_endpoint_answers_map_to_precise_refusals() {
    let request = exchange(
        &endpoint(None),
        ISSUER,
        "sub",
        "alice",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ",
    );
    let ok = parse_token_response(
        &request,
        200,
        br#"{"access_token": "dbx-token", "expires_in": 3600}"#,
    )
    .unwrap();
    assert_eq!(
        ok,
        IssuedToken {
            access_token: "dbx-token".into(),
            expires_in_s: 3600
        }
    );
    let refused = parse_token_response(
        &request,
        400,
        format!(
            r#"{{"error": "invalid_request", "error_description": "audience mismatch for {}"}}"#,
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
        )
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(refused.reason, Reason::ExchangeRejected);
    assert_eq!(
        refused.detail,
        "Databricks refused the token exchange: invalid_request: audience mismatch for [token]"
    );
    let cases: [(u32, &[u8], Reason, &str); 4] = [
        (
            404,
            b"",
            Reason::ExchangeFailed,
            "federation not enabled, or not a Databricks workspace host",
        ),
        (500, b"oops", Reason::ExchangeFailed, "HTTP 500"),
        (0, b"", Reason::ExchangeFailed, "no response"),
        (
            200,
            b"{}",
            Reason::ExchangeFailed,
            "without an access_token",
        ),
    ];
    for (status, body, reason, text) in cases {
        let error = parse_token_response(&request, status, body).unwrap_err();
        assert_eq!(error.reason, reason, "{status}");
        assert!(error.detail.contains(text), "{}", error.detail);
    }
}

/// Issue 9 point 5: when Databricks refuses brickgate's own client credentials, the client
/// is not told its token is bad; Databricks' `error_id` survives for support tickets.
#[test]
fn service_principal_refusals_blame_the_gateway_and_keep_the_error_id() {
    let request = endpoint(Some("sp-client")).client_credentials("idp", &all_apis());
    let cases: [(u32, &[u8]); 3] = [
        (401, br#"{"error": "invalid_client", "error_description": "Client authentication failed", "error_id": "7f3c9a12-0b1d-4e5f-9a8b-1c2d3e4f5a6b"}"#),
        (400, br#"{"error": "access_denied", "error_description": "Scopes 'all-apis' are not assigned", "error_id": "7f3c9a12-0b1d-4e5f-9a8b-1c2d3e4f5a6b"}"#),
        (403, br#"{"error_code": "PERMISSION_DENIED", "message": "no", "error_id": "7f3c9a12-0b1d-4e5f-9a8b-1c2d3e4f5a6b"}"#),
    ];
    for (status, body) in cases {
        let error = parse_token_response(&request, status, body).unwrap_err();
        assert_eq!(
            error.reason,
            Reason::UpstreamCredentialsRejected,
            "{status}"
        );
        assert_eq!(error.to_response("r").status, 502);
        assert!(
            error
                .detail
                .contains("error_id 7f3c9a12-0b1d-4e5f-9a8b-1c2d3e4f5a6b"),
            "{}",
            error.detail
        );
        assert!(error.detail.contains("not your token"), "{}", error.detail);
    }
    let exchange = exchange(&endpoint(None), ISSUER, "sub", "alice", "a.b.c");
    let error = parse_token_response(
        &exchange,
        401,
        br#"{"error": "invalid_request", "error_description": "x", "error_id": "abc-123"}"#,
    )
    .unwrap_err();
    assert_eq!(error.reason, Reason::ExchangeRejected);
    assert!(
        error.detail.ends_with("(error_id abc-123)"),
        "{}",
        error.detail
    );
    // an error_id that is not a plain id is dropped, not relayed
    let error = parse_token_response(&exchange, 401, br#"{"error": "e", "error_id": "<script>"}"#)
        .unwrap_err();
    assert!(!error.detail.contains("script"), "{}", error.detail);
}

#[test]
fn relayed_messages_keep_ids_but_not_token_parts() {
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU";
    let request = exchange(&endpoint(None), ISSUER, "sub", "alice", token);
    let quoted = parse_token_response(
        &request,
        401,
        br#"{"error": "invalid_request", "error_description": "bad signature c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU on eyJzdWIiOiJhbGljZUBleGFtcGxlLmNvbSJ9 for 5a1c0d6e-0000-4000-8000-000000000001"}"#,
    )
    .unwrap_err();
    assert!(
        !quoted.detail.contains("c2lnbmF0dXJl") && !quoted.detail.contains("eyJzdWIi"),
        "{}",
        quoted.detail
    );
    assert!(
        quoted
            .detail
            .contains("5a1c0d6e-0000-4000-8000-000000000001"),
        "{}",
        quoted.detail
    );
    let down = parse_token_response(&request, 503, b"upstream connect error").unwrap_err();
    assert!(
        down.detail.contains("could not reach the workspace"),
        "{}",
        down.detail
    );
    let slow = parse_token_response(&request, 504, b"upstream request timeout").unwrap_err();
    assert!(slow.detail.contains("timed out"), "{}", slow.detail);
}

/// Found by the token_response fuzzer: brickgate's own secret, echoed back, reached the
/// client's refusal; and a refusal of brickgate's own credentials blamed the client (401).
#[test]
fn service_principal_refusals_are_the_gateway_s_and_never_quote_its_secret() {
    let endpoint = TokenEndpoint {
        client_secret: Some("sp-secret-value".into()),
        ..endpoint(Some("sp-app"))
    };
    let request = endpoint.client_credentials("okta", &all_apis());
    for status in [400, 401, 403] {
        let body =
            br#"{"error": "invalid_client", "error_description": "bad secret sp-secret-value"}"#;
        let refused = parse_token_response(&request, status, body).unwrap_err();
        assert_eq!(
            refused.reason,
            Reason::UpstreamCredentialsRejected,
            "{status}"
        );
        assert_eq!(refused.to_response("r").status, 502);
        assert!(
            !refused.detail.contains("sp-secret-value"),
            "{}",
            refused.detail
        );
        assert!(
            refused
                .detail
                .contains("invalid_client: bad secret [secret]")
        );
    }
}

/// Issue 16 point 7e: the cache key holds what the federation policy judges, so a token of
/// the same subject that the policy would judge otherwise (another `aud`), or a caller
/// with other scopes, never reuses the cached Databricks token.
#[test]
fn exchanges_are_cached_per_audience_and_requested_scopes() {
    let endpoint = endpoint(None);
    let key = |audiences: &[&str], scopes: &[&str]| {
        let audiences: Vec<String> = audiences.iter().map(|a| a.to_string()).collect();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let caller = FederatedCaller {
            issuer: ISSUER,
            audiences: &audiences,
            subject_claim: "sub",
            subject: "alice",
            subject_token: "eyJ.a.b",
        };
        endpoint.exchange(&caller, &scopes).cache_key
    };
    let alice = key(&["databricks"], &["all-apis"]);
    let differing = [
        ("another aud", key(&["other-api"], &["all-apis"])),
        (
            "an extra aud",
            key(&["databricks", "other-api"], &["all-apis"]),
        ),
        ("no aud", key(&[], &["all-apis"])),
        ("joined auds", key(&["databricks other-api"], &["all-apis"])),
        ("narrower scopes", key(&["databricks"], &["clusters:read"])),
    ];
    for (what, other) in differing {
        assert_ne!(alice, other, "{what}");
    }
    assert_eq!(alice, key(&["databricks"], &["all-apis"]));
}

#[test]
fn requests_ask_for_the_given_scopes() {
    let scopes = vec!["sql:restricted-query".to_string()];
    let audiences = ["databricks".to_string()];
    let caller = FederatedCaller {
        issuer: ISSUER,
        audiences: &audiences,
        subject_claim: "sub",
        subject: "alice",
        subject_token: "eyJ.a.b",
    };
    let exchange = endpoint(None).exchange(&caller, &scopes);
    assert!(
        exchange.body.contains("&scope=sql%3Arestricted-query"),
        "{}",
        exchange.body
    );
    let own = endpoint(Some("sp")).client_credentials("okta", &scopes);
    assert_eq!(
        own.body,
        "grant_type=client_credentials&scope=sql%3Arestricted-query"
    );
    assert_ne!(
        own.cache_key,
        endpoint(Some("sp"))
            .client_credentials("okta", &all_apis())
            .cache_key
    );
}

/// Issue 16 point 7d: `expires_in` is capped at Databricks' one hour, whatever the answer
/// says; absurd values never overflow.
#[test]
fn expires_in_is_capped_at_one_hour() {
    let request = endpoint(None).client_credentials("okta", &all_apis());
    let cases: [(&str, u64); 6] = [
        (r#"{"access_token": "t", "expires_in": 3599}"#, 3599),
        (r#"{"access_token": "t", "expires_in": 3601}"#, 3600),
        (
            r#"{"access_token": "t", "expires_in": 18446744073709551615}"#,
            3600,
        ),
        (r#"{"access_token": "t", "expires_in": 1e300}"#, 300),
        (r#"{"access_token": "t", "expires_in": -5}"#, 300),
        (r#"{"access_token": "t"}"#, 300),
    ];
    for (body, expected) in cases {
        let issued = parse_token_response(&request, 200, body.as_bytes()).unwrap();
        assert_eq!(issued.expires_in_s, expected, "{body}");
    }
}
