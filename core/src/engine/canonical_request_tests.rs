//! Issue 16 points 2, 3 and 7: one canonical method, escaped delimiters that are data in both
//! places, Files API names as the SDKs encode them, preflight and path-override hygiene. Through
//! the whole engine with the Databricks route catalogue and a fixed clock.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::policy::SDK_FILE_NAMES;
use crate::verify::InWasmVerifier;

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

struct Harness {
    engine: Engine,
    store: JwksStore,
}

fn harness() -> Harness {
    harness_in("enforce")
}

fn harness_in(mode: &str) -> Harness {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let raw = json!({
        "mode": mode,
        "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}}},
        "rules": [{"name": "health", "match": {"path": "/healthz"}, "allow_anonymous": true}],
        "databricks": {"route_catalogue": true},
        "bypass_cors_preflight": true
    });
    let config = Config::from_json(raw.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    Harness {
        engine: Engine::new(config, Box::new(InWasmVerifier)),
        store,
    }
}

fn bearer(scope: &str) -> String {
    let claims = json!({"iss": "https://okta.test", "aud": "api", "sub": "alice@example.com",
                        "iat": NOW, "exp": NOW + 600, "scope": scope});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let key = EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap();
    format!("Bearer {}", encode(&header, &claims, &key).unwrap())
}

fn decide(h: &Harness, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let request = Request {
        method,
        path,
        headers: &headers,
        body: Some(b""),
        fingerprint: false,
    };
    let mut cache = TokenCache::new(16, 1 << 20);
    h.engine.decide(&request, &h.store, &mut cache, NOW * 1000)
}

/// (rule that allowed, `:path` rewrite) or the refusal's reason.
fn outcome(decision: &Decision) -> Result<(String, Option<String>), &'static str> {
    match decision {
        Decision::Allow {
            mutations, audit, ..
        } => Ok((
            audit.rule.clone().unwrap_or_default(),
            mutations.set_path.clone(),
        )),
        Decision::Deny { response, audit } => {
            let reason = audit.reason.unwrap_or("?");
            assert_eq!(response.header("x-brickgate-reason"), Some(reason));
            Err(reason)
        }
        Decision::NeedBody { .. } => Err("need_body"),
    }
}

#[test]
fn only_the_exact_upper_case_method_reaches_any_rule() {
    let h = harness();
    let all_apis = bearer("all-apis");
    let secrets = "/api/2.0/accounts/servicePrincipals/1/credentials/secrets";
    let auth = [("authorization", all_apis.as_str())];
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Result<&'a str, &'a str>,
    );
    let cases: &[Case] = &[
        ("POST", secrets, &auth, Err("route_disabled")),
        // Issue 16's finding: over HTTP/2 `Post` skipped the POST-only rule.
        ("Post", secrets, &auth, Err("bad_method")),
        ("post", secrets, &auth, Err("bad_method")),
        ("POST ", secrets, &auth, Err("bad_method")),
        ("GET", "/api/2.0/clusters/list", &auth, Ok("")),
        ("get", "/api/2.0/clusters/list", &auth, Err("bad_method")),
        ("TRACE", "/api/2.0/clusters/list", &auth, Err("bad_method")),
        (
            "CONNECT",
            "/api/2.0/clusters/list",
            &auth,
            Err("bad_method"),
        ),
        (
            "PROPFIND",
            "/api/2.0/clusters/list",
            &auth,
            Err("bad_method"),
        ),
        // Anonymous rules and unauthenticated requests too: the method is checked first.
        ("GET", "/healthz", &[], Ok("health")),
        ("Get", "/healthz", &[], Err("bad_method")),
        ("Post", secrets, &[], Err("bad_method")),
    ];
    for (method, path, headers, expected) in cases {
        let got = outcome(&decide(&h, method, path, headers));
        match (expected, &got) {
            (Ok(""), Ok(_)) => {}
            (Ok(rule), Ok((chosen, _))) => assert_eq!(chosen, rule, "{method} {path}"),
            (Err(reason), Err(got)) => assert_eq!(got, reason, "{method} {path}"),
            _ => panic!("{method:?} {path}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn escaped_delimiters_are_data_only_where_every_reading_picks_the_same_rule() {
    let h = harness();
    let token = bearer("all-apis secrets:read files");
    let auth = [("authorization", token.as_str())];
    let files = "/api/2.0/fs/files/Volumes/main/default/vol";
    let rule_of = |method: &str, path: &str| outcome(&decide(&h, method, path, &auth));
    let secrets_read = rule_of("GET", "/api/2.0/secrets/list").unwrap().0;
    let secret_values = rule_of("GET", "/api/2.0/secrets/get");
    let file_rule = rule_of("PUT", &format!("{files}/plain.csv")).unwrap().0;
    assert_ne!(Ok((secrets_read.clone(), None)), secret_values);
    let cases: Vec<(&str, String, Result<&str, &str>)> = vec![
        // Issue 16's finding: `get%3F` was a `secrets:read` request to brickgate.
        ("GET", "/api/2.0/secrets/get%3F".into(), Err("bad_path")),
        (
            "GET",
            "/api/2.0/secrets/get%3Fscope=x".into(),
            Err("bad_path"),
        ),
        ("GET", "/api/2.0/secrets/get%23".into(), Err("bad_path")),
        ("GET", "/api/2.0/secrets/get%3B".into(), Err("bad_path")),
        ("GET", "/api/2.0/secrets/get.".into(), Err("bad_path")),
        ("GET", "/api/2.0/secrets/get%20".into(), Err("bad_path")),
        ("GET", "/api/2.0/secrets%3F/get".into(), Err("bad_path")),
        ("POST", "/api/2.0/token%3B/create".into(), Err("bad_path")),
        ("POST", "/api/2.0/token./create".into(), Err("bad_path")),
        (
            "POST",
            "/oidc/..%3B/api/2.0/token/create".into(),
            Err("bad_path"),
        ),
        // Where every reading is decided alike, the bytes are data.
        (
            "GET",
            "/api/2.0/secrets/list%3F".into(),
            Ok(secrets_read.as_str()),
        ),
        (
            "PUT",
            format!("{files}/what%3F.csv"),
            Ok(file_rule.as_str()),
        ),
        (
            "PUT",
            format!("{files}/dir%23x/a.csv"),
            Ok(file_rule.as_str()),
        ),
        (
            "PUT",
            format!("{files}/..%3B/a.csv"),
            Ok(file_rule.as_str()),
        ),
        // Double encoding stays refused, in file names too.
        ("PUT", format!("{files}/100%2541.csv"), Err("bad_path")),
        ("PUT", format!("{files}/%252e%252e/x"), Err("bad_path")),
    ];
    for (method, path, expected) in cases {
        let got = rule_of(method, &path);
        match (expected, &got) {
            (Ok(rule), Ok((chosen, rewrite))) => {
                assert_eq!(chosen, rule, "{method} {path}");
                assert_eq!(rewrite, &None, "{method} {path} is forwarded as sent");
            }
            (Err(reason), Err(got)) => assert_eq!(got, &reason, "{method} {path}"),
            _ => panic!("{method} {path}: expected {expected:?}, got {got:?}"),
        }
    }
}

/// The Files API carries every name the SDKs encode, forwarded exactly as the SDK sent it.
#[test]
fn files_api_names_from_the_sdks_are_admitted_and_forwarded_as_sent() {
    let h = harness();
    let token = bearer("files");
    let auth = [("authorization", token.as_str())];
    let base = "/api/2.0/fs/files/Volumes/main/default/vol";
    let file_rule = outcome(&decide(&h, "PUT", &format!("{base}/plain.csv"), &auth))
        .unwrap()
        .0;
    for (name, python, go) in SDK_FILE_NAMES {
        for encoded in [python, go] {
            for method in ["PUT", "GET", "HEAD", "DELETE"] {
                let path = format!("{base}/{encoded}");
                let got = outcome(&decide(&h, method, &path, &auth));
                let expected_rule =
                    outcome(&decide(&h, method, &format!("{base}/plain.csv"), &auth));
                assert_eq!(got, expected_rule, "{method} {name:?} as {encoded}");
                if method == "PUT" {
                    assert_eq!(got, Ok((file_rule.clone(), None)), "{name:?}");
                }
            }
        }
    }
}

#[test]
fn a_cors_preflight_gets_the_hygiene_of_any_request() {
    let h = harness();
    let preflight = |extra: &[(&'static str, &'static str)]| {
        let mut headers = vec![
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
        ];
        headers.extend_from_slice(extra);
        headers
    };
    let removed = |decision: &Decision| match decision {
        Decision::Allow { mutations, .. } => mutations.remove_headers.clone(),
        other => panic!("{other:?}"),
    };
    let path = "/api/2.0/sql/statements";
    let allowed = decide(&h, "OPTIONS", path, &preflight(&[]));
    assert_eq!(
        outcome(&allowed),
        Ok((CORS_PREFLIGHT_RULE.to_string(), None))
    );
    let proxy = decide(
        &h,
        "OPTIONS",
        path,
        &preflight(&[("proxy-authorization", "Basic dXNlcjpwdw==")]),
    );
    assert!(removed(&proxy).contains(&"proxy-authorization".to_string()));
    let same_path = decide(
        &h,
        "OPTIONS",
        path,
        &preflight(&[("x-original-url", "/api/2.0/sql/statements")]),
    );
    assert!(removed(&same_path).contains(&"x-original-url".to_string()));
    let rewritten = decide(
        &h,
        "OPTIONS",
        "//api/2.0/./sql//statements?x=1",
        &preflight(&[]),
    );
    assert_eq!(
        outcome(&rewritten),
        Ok((
            CORS_PREFLIGHT_RULE.to_string(),
            Some("/api/2.0/sql/statements?x=1".to_string())
        ))
    );
    type Refusal<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);
    let refusals: &[Refusal] = &[
        ("options", path, preflight(&[]), "bad_method"),
        (
            "OPTIONS",
            path,
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "Post"),
            ],
            "bad_method",
        ),
        (
            "OPTIONS",
            path,
            preflight(&[("x-http-method-override", "DELETE")]),
            "method_override",
        ),
        (
            "OPTIONS",
            path,
            preflight(&[("x-original-url", "/api/2.0/token/create")]),
            "path_override",
        ),
        (
            "OPTIONS",
            "/api/2.0/token;/create",
            preflight(&[]),
            "bad_path",
        ),
        ("OPTIONS", "/api/2.0/%2e%2e/x", preflight(&[]), "bad_path"),
    ];
    for (method, path, headers, reason) in refusals {
        let got = outcome(&decide(&h, method, path, headers));
        assert_eq!(got, Err(*reason), "{method} {path} {headers:?}");
    }
}

#[test]
fn path_override_headers_never_reach_the_upstream() {
    let h = harness();
    let token = bearer("all-apis");
    let path = "/api/2.0/clusters/list";
    let with = |name: &'static str, value: &'static str| {
        vec![("authorization", token.as_str()), (name, value)]
    };
    for name in [
        "x-original-url",
        "X-Rewrite-URL",
        "x_original_uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-envoy-original-path",
    ] {
        let same = decide(&h, "GET", path, &with(name, "/api/2.0/clusters/list"));
        let Decision::Allow { mutations, .. } = &same else {
            panic!("{name}: {same:?}");
        };
        assert!(
            mutations.remove_headers.contains(&name.to_string()),
            "{name}"
        );
        let other = decide(&h, "GET", path, &with(name, "/api/2.0/token/create"));
        assert_eq!(outcome(&other), Err("path_override"), "{name}");
        let anonymous = decide(&h, "GET", "/healthz", &[(name, "/api/2.0/token/create")]);
        assert_eq!(
            outcome(&anonymous),
            Err("path_override"),
            "{name} anonymous"
        );
    }
    let prefix = decide(&h, "GET", path, &with("x-forwarded-prefix", "/admin"));
    let Decision::Allow { mutations, .. } = &prefix else {
        panic!("{prefix:?}");
    };
    assert!(
        mutations
            .remove_headers
            .contains(&"x-forwarded-prefix".to_string())
    );
}

/// Hygiene, not policy: enforced in dry-run mode too.
#[test]
fn method_and_path_override_refusals_are_enforced_in_dry_run() {
    let h = harness_in("dry_run");
    let token = bearer("all-apis");
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("Post", "/api/2.0/clusters/create", &[], "bad_method"),
        (
            "GET",
            "/healthz",
            &[("x-original-url", "/api/2.0/token/create")],
            "path_override",
        ),
        ("GET", "/api/2.0/secrets/get%3F", &[], "bad_path"),
    ];
    for (method, path, extra, reason) in cases {
        let mut headers = vec![("authorization", token.as_str())];
        headers.extend_from_slice(extra);
        let decision = decide(&h, method, path, &headers);
        assert_eq!(decision.audit().decision, "deny", "{method} {path}");
        assert_eq!(outcome(&decision), Err(*reason), "{method} {path}");
    }
}
