//! Dry-run: which refusals are reported instead of sent, what the passage carries upstream,
//! and what the audit record says. Real signatures, a fixed clock.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::verify::InWasmVerifier;

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const ATTACKER: &str = include_str!("../../../tests/keys/attacker-rsa.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

/// Provider `strict` enforces, provider `trial` reports; rule `new-policy` reports, rule
/// `enforced` does not; `top` sets the top-level mode.
fn engine(top: &str) -> (Engine, JwksStore) {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "mode": top,
        "providers": {
            "strict": {"issuer": "https://strict.test", "audiences": ["api"], "jwks": {"inline": jwks}},
            "trial": {"issuer": "https://trial.test", "audiences": ["api"], "jwks": {"inline": jwks}, "mode": "dry_run"}
        },
        "rules": [
            {"name": "new-policy", "match": {"prefix": "/new/"}, "providers": ["strict"],
             "require": {"scopes_all": ["new:read"]}, "mode": "dry_run"},
            {"name": "enforced", "match": {"prefix": "/api/"}, "providers": ["strict", "trial"],
             "require": {"scopes_all": ["api"]}}
        ]
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let store = JwksStore::new(&config, 1);
    (Engine::new(config, Box::new(InWasmVerifier)), store)
}

fn token(iss: &str, scope: &str, key: &str) -> String {
    let claims = json!({"iss": iss, "aud": "api", "sub": "alice", "scope": scope,
                        "iat": NOW - 10, "exp": NOW + 600});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let pem = if key == "attacker" { ATTACKER } else { RSA_1 };
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    encode(&header, &claims, &key).unwrap()
}

fn decide(engine: &(Engine, JwksStore), path: &str, token: Option<&str>) -> Decision {
    let mut headers = vec![
        ("x-brickgate-subject".to_string(), "mallory".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    if let Some(token) = token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    let request = Request {
        method: "GET",
        path,
        headers: &headers,
        body: None,
        fingerprint: false,
    };
    let mut cache = TokenCache::new(16, 1 << 20);
    engine.0.decide(&request, &engine.1, &mut cache, NOW * 1000)
}

/// (decision, reason, status, identity header set, client's forged header stripped)
type Outcome = (&'static str, Option<&'static str>, u32, bool, bool);

fn outcome(decision: &Decision) -> Outcome {
    let audit = decision.audit();
    let (identity, stripped) = match decision {
        Decision::Allow { mutations, .. } => (
            mutations
                .headers_set()
                .any(|(n, v)| n == "x-brickgate-subject" && v == "alice"),
            mutations
                .remove_headers
                .iter()
                .any(|n| n == "x-brickgate-subject"),
        ),
        _ => (false, false),
    };
    (
        audit.decision,
        audit.reason,
        audit.status,
        identity,
        stripped,
    )
}

#[test]
fn reported_refusals_go_through_with_their_reason_and_identity_only_when_verified() {
    let good_new = token("https://strict.test", "new:read", "rsa");
    let strict_no_scope = token("https://strict.test", "other", "rsa");
    let trial_no_scope = token("https://trial.test", "other", "rsa");
    let trial_forged = token("https://trial.test", "api", "attacker");
    let strict_forged = token("https://strict.test", "api", "attacker");
    #[rustfmt::skip]
    let cases: [(&str, &str, Option<&str>, Outcome); 9] = [
        // rule new-policy reports: verified but lacking the scope → identity headers set
        ("enforce", "/new/x", Some(&strict_no_scope), ("would_deny", Some("insufficient_scope"), 403, true, true)),
        ("enforce", "/new/x", Some(&good_new), ("allow", None, 200, true, true)),
        // no token: nothing verified → no identity, the forged header still stripped
        ("enforce", "/new/x", None, ("would_deny", Some("missing_token"), 401, false, true)),
        // rule enforced, provider trial reports: its forged token goes through unverified
        ("enforce", "/api/x", Some(&trial_forged), ("would_deny", Some("bad_signature"), 401, false, true)),
        ("enforce", "/api/x", Some(&trial_no_scope), ("would_deny", Some("insufficient_scope"), 403, true, true)),
        // ... but provider strict enforces
        ("enforce", "/api/x", Some(&strict_forged), ("deny", Some("bad_signature"), 401, false, false)),
        ("enforce", "/nowhere", None, ("deny", Some("no_matching_rule"), 403, false, false)),
        // the whole plugin reports
        ("dry_run", "/nowhere", None, ("would_deny", Some("no_matching_rule"), 403, false, true)),
        ("dry_run", "/api/x", Some(&strict_forged), ("would_deny", Some("bad_signature"), 401, false, true)),
    ];
    for (top, path, token, expected) in cases {
        let engine = engine(top);
        let decision = decide(&engine, path, token);
        assert_eq!(outcome(&decision), expected, "{top} {path}");
        if expected.0 == "would_deny" {
            let Decision::Allow {
                upstream, audit, ..
            } = &decision
            else {
                panic!("a reported refusal is a passage");
            };
            assert_eq!(*upstream, UpstreamAction::Forward);
            assert!(audit.detail.is_some(), "the reason's detail is audited");
        }
    }
}

#[test]
fn hygiene_refusals_are_enforced_even_in_dry_run() {
    let engine = engine("dry_run");
    let decision = decide(&engine, "/api/a%2Fb", None);
    assert_eq!(decision.audit().decision, "deny");
    assert_eq!(decision.audit().reason, Some("bad_path"));
}

#[test]
fn a_bad_mode_names_its_field() {
    for (config, field) in [
        (json!({"mode": "audit"}), "mode"),
        (
            json!({"rules": [{"match": {"prefix": "/"}, "providers": ["p"], "mode": "dryrun"}]}),
            "rules[0].mode",
        ),
    ] {
        let mut base = json!({
            "providers": {"p": {"issuer": "https://p.test", "audiences": ["api"],
                                "jwks": {"inline": serde_json::from_str::<Value>(PUBLIC_JWKS).unwrap()}}},
            "rules": [{"match": {"prefix": "/"}, "providers": ["p"]}]
        });
        for (key, value) in config.as_object().unwrap() {
            base[key] = value.clone();
        }
        let error = Config::from_json(base.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.field, field);
        assert!(error.problem.contains("enforce, dry_run"), "{error}");
    }
}
