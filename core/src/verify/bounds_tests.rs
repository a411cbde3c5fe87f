//! What a hostile token may cost and make brickgate say: a token without `kid` is tried
//! against a bounded number of keys, and its header and claims are repeated only bounded.

use std::cell::RefCell;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::config::{Config, Provider};
use crate::jwks::{KeyOrigin, VerificationKey, parse_jwks};

const NOW: u64 = 1_800_000_000;
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

/// Refuses every signature except from keys it is told to accept, and remembers which keys
/// it was asked about.
struct CountingVerifier {
    accept_kid: Option<Option<&'static str>>,
    asked: RefCell<Vec<Option<String>>>,
}

impl SignatureVerifier for CountingVerifier {
    fn verify(&self, _: Alg, key: &VerificationKey, _: &[u8], _: &[u8]) -> bool {
        self.asked.borrow_mut().push(key.kid.clone());
        self.accept_kid
            .is_some_and(|kid| kid.map(str::to_string) == key.kid)
    }
}

fn rsa_key(kid: Option<&str>) -> Value {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let mut key = jwks["keys"][0].clone();
    match kid {
        Some(kid) => key["kid"] = json!(kid),
        None => {
            key.as_object_mut().unwrap().remove("kid");
        }
    }
    key
}

fn provider(keys: &[Value]) -> (Provider, KeySet) {
    let document = json!({ "keys": keys });
    let config = json!({
        "providers": {"p": {"issuer": "https://idp.test", "audiences": ["api"],
                            "jwks": {"inline": document.clone()}, "require_typ": false}},
        "rules": [{"match": {"prefix": "/"}, "providers": ["p"]}]
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let set = parse_jwks(&document, KeyOrigin::Inline).unwrap();
    (config.providers[0].clone(), set)
}

fn token(header: Value, overrides: Value) -> String {
    let mut claims = json!({"iss": "https://idp.test", "aud": "api", "sub": "a",
                            "iat": NOW - 10, "exp": NOW + 600});
    for (name, value) in overrides.as_object().unwrap() {
        claims[name] = value.clone();
    }
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn a_token_without_kid_is_tried_against_a_bounded_set_of_keys() {
    let kidless = |n: usize| vec![rsa_key(None); n];
    let named = |n: usize| {
        (0..n)
            .map(|i| rsa_key(Some(&format!("k{i}"))))
            .collect::<Vec<_>>()
    };
    let mixed: Vec<Value> = named(5).into_iter().chain(kidless(1)).collect();
    // (keys, which key verifies, expected outcome, keys asked)
    type Case = (
        Vec<Value>,
        Option<Option<&'static str>>,
        Option<Reason>,
        usize,
    );
    let cases: Vec<Case> = vec![
        (kidless(1), Some(None), None, 1),
        (kidless(3), None, Some(Reason::BadSignature), 3),
        (
            kidless(MAX_KEYS_WITHOUT_KID),
            None,
            Some(Reason::BadSignature),
            4,
        ),
        (
            kidless(50),
            None,
            Some(Reason::BadSignature),
            MAX_KEYS_WITHOUT_KID,
        ),
        (
            named(100),
            None,
            Some(Reason::BadSignature),
            MAX_KEYS_WITHOUT_KID,
        ),
        // Keys published without kid are tried first: the sixth key still verifies.
        (mixed, Some(None), None, 1),
        (
            named(10),
            Some(Some("k7")),
            Some(Reason::BadSignature),
            MAX_KEYS_WITHOUT_KID,
        ),
    ];
    for (index, (keys, accept_kid, expected, asked)) in cases.into_iter().enumerate() {
        let (provider, set) = provider(&keys);
        let verifier = CountingVerifier {
            accept_kid,
            asked: RefCell::new(Vec::new()),
        };
        let text = token(json!({"alg": "RS256"}), json!({}));
        let jwt = UnverifiedJwt::parse(&text).unwrap();
        let got = verify_for_provider(&provider, &jwt, Ok(&set), NOW, &verifier);
        assert_eq!(
            got.as_ref().err().map(|e| e.reason),
            expected,
            "case {index}"
        );
        assert_eq!(verifier.asked.borrow().len(), asked, "case {index}");
        if let Err(error) = got {
            assert_eq!(
                error.detail.contains("at most 4"),
                keys.len() > MAX_KEYS_WITHOUT_KID,
                "case {index}: {}",
                error.detail
            );
        }
    }
}

#[test]
fn too_many_keys_without_kid_are_reported() {
    let cases: Vec<(Vec<Value>, bool)> = vec![
        (vec![rsa_key(None); MAX_KEYS_WITHOUT_KID], false),
        (vec![rsa_key(None); MAX_KEYS_WITHOUT_KID + 1], true),
        (
            (0..20).map(|i| rsa_key(Some(&format!("k{i}")))).collect(),
            false,
        ),
    ];
    for (keys, reported) in cases {
        let (_, set) = provider(&keys);
        let warning = set.too_many_without_kid();
        assert_eq!(
            warning.is_some(),
            reported,
            "{} keys: {warning:?}",
            keys.len()
        );
    }
}

#[test]
fn token_strings_are_repeated_bounded() {
    let long = "x".repeat(5000);
    let many_aud: Vec<String> = (0..200).map(|i| format!("aud-{i}-{long}")).collect();
    let (provider, set) = provider(&[rsa_key(Some("k"))]);
    let mut typed = provider.clone();
    typed.require_typ = true;
    let cases: Vec<(&Provider, Value, Value, Reason)> = vec![
        (
            &typed,
            json!({"alg": "RS256", "typ": long}),
            json!({}),
            Reason::TypMismatch,
        ),
        (
            &provider,
            json!({"alg": long}),
            json!({}),
            Reason::AlgNotAllowed,
        ),
        (
            &provider,
            json!({"alg": "RS256"}),
            json!({"aud": many_aud}),
            Reason::AudienceMismatch,
        ),
        (
            &provider,
            json!({"alg": "RS256", "kid": "k".repeat(256)}),
            json!({}),
            Reason::UnknownKid,
        ),
        (
            &provider,
            json!({"alg": "RS256", "kid": "k\u{7f}\"\\é"}),
            json!({}),
            Reason::UnknownKid,
        ),
    ];
    let verifier = CountingVerifier {
        accept_kid: None,
        asked: RefCell::new(Vec::new()),
    };
    for (provider, header, claims, reason) in cases {
        let text = token(header.clone(), claims);
        let jwt = UnverifiedJwt::parse(&text).unwrap();
        let error = verify_for_provider(provider, &jwt, Ok(&set), NOW, &verifier).unwrap_err();
        assert_eq!(error.reason, reason, "{header}");
        assert!(
            error.detail.len() < 800,
            "{reason:?}: {} bytes",
            error.detail.len()
        );
        assert!(error.detail.is_ascii(), "{}", error.detail);
        let challenge = error
            .to_response("r")
            .header("www-authenticate")
            .unwrap()
            .to_string();
        assert!(
            challenge.len() < 1000,
            "{reason:?}: {} bytes",
            challenge.len()
        );
        let description = challenge
            .split("error_description=\"")
            .nth(1)
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap();
        assert!(
            description
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
            "RFC 6750 error_description: {description}"
        );
    }
    let aud = verify_for_provider(
        &provider,
        &UnverifiedJwt::parse(&token(json!({"alg": "RS256"}), json!({"aud": many_aud}))).unwrap(),
        Ok(&set),
        NOW,
        &verifier,
    )
    .unwrap_err();
    assert!(aud.detail.contains(", and 192 more]"), "{}", aud.detail);
}
