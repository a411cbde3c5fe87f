//! Differential tests: the in-wasm verifier must accept and refuse exactly what an independent
//! implementation (jsonwebtoken's RustCrypto provider) does, for every algorithm.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, encode};
use serde_json::{Value, json};

use super::*;
use crate::jwks::{KeyMaterial, KeyOrigin, parse_jwks};

const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn public_jwk(kid: &str) -> Value {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap()
        .clone()
}

/// (our alg, their alg, private PEM or secret, public JWK)
fn algorithms() -> Vec<(Alg, Algorithm, EncodingKey, Value)> {
    let rsa =
        || EncodingKey::from_rsa_pem(include_bytes!("../../../tests/keys/rsa-1.pem")).unwrap();
    let secret_jwk = json!({"kty": "oct", "kid": "s", "k": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, SECRET)});
    vec![
        (
            Alg::RS256,
            Algorithm::RS256,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::RS384,
            Algorithm::RS384,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::RS512,
            Algorithm::RS512,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::PS256,
            Algorithm::PS256,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::PS384,
            Algorithm::PS384,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::PS512,
            Algorithm::PS512,
            rsa(),
            public_jwk("test-rsa-1"),
        ),
        (
            Alg::ES256,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(include_bytes!("../../../tests/keys/ec-1.pem")).unwrap(),
            public_jwk("test-ec-1"),
        ),
        (
            Alg::ES384,
            Algorithm::ES384,
            EncodingKey::from_ec_pem(include_bytes!("../../../tests/keys/ec-384.pem")).unwrap(),
            public_jwk("test-ec-384"),
        ),
        (
            Alg::EdDSA,
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(include_bytes!("../../../tests/keys/ed-1.pem")).unwrap(),
            public_jwk("test-ed-1"),
        ),
        (
            Alg::HS256,
            Algorithm::HS256,
            EncodingKey::from_secret(SECRET),
            secret_jwk.clone(),
        ),
        (
            Alg::HS384,
            Algorithm::HS384,
            EncodingKey::from_secret(SECRET),
            secret_jwk.clone(),
        ),
        (
            Alg::HS512,
            Algorithm::HS512,
            EncodingKey::from_secret(SECRET),
            secret_jwk,
        ),
    ]
}

/// Variants of a valid token: (name, token, expected valid).
fn variants(valid: &str) -> Vec<(&'static str, String, bool)> {
    let (input, signature) = valid.rsplit_once('.').unwrap();
    let (header, _) = input.split_once('.').unwrap();
    let other_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"sub":"mallory"}"#,
    );
    let mut flipped = signature.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let raw = base64::Engine::decode(&engine, signature).unwrap();
    let zero = base64::Engine::encode(&engine, vec![0u8; raw.len()]);
    let truncated = base64::Engine::encode(&engine, &raw[..raw.len() - 3]);
    vec![
        ("valid", valid.to_string(), true),
        (
            "payload swapped",
            format!("{header}.{other_payload}.{signature}"),
            false,
        ),
        (
            "signature flipped",
            format!("{input}.{}", String::from_utf8(flipped).unwrap()),
            false,
        ),
        ("signature truncated", format!("{input}.{truncated}"), false),
        ("signature zeroed", format!("{input}.{zero}"), false),
    ]
}

fn ours(alg: Alg, jwk: &Value, token: &str) -> bool {
    let origin = if alg.is_hmac() {
        KeyOrigin::Inline
    } else {
        KeyOrigin::Remote
    };
    let set = parse_jwks(&json!({"keys": [jwk]}), origin).unwrap();
    let key = &set.keys[0];
    assert!(
        key.mismatch(alg).is_none(),
        "{alg}: {:?}",
        key.mismatch(alg)
    );
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = crate::encoding::b64url_decode(signature).unwrap();
    InWasmVerifier.verify(alg, key, input.as_bytes(), &signature)
}

fn theirs(alg: Algorithm, jwk: &Value, token: &str) -> bool {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    validation.validate_aud = false;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation).is_ok()
}

#[test]
fn in_wasm_verifier_agrees_with_an_independent_implementation() {
    for (alg, their_alg, encoding_key, jwk) in algorithms() {
        let token = encode(
            &Header::new(their_alg),
            &json!({"sub": "alice"}),
            &encoding_key,
        )
        .unwrap();
        for (name, variant, expected) in variants(&token) {
            assert_eq!(ours(alg, &jwk, &variant), expected, "{alg} {name}: ours");
            assert_eq!(
                theirs(their_alg, &jwk, &variant),
                expected,
                "{alg} {name}: theirs"
            );
        }
    }
}

#[test]
fn a_key_only_verifies_its_own_algorithm_family() {
    let token = encode(
        &Header::new(Algorithm::RS256),
        &json!({}),
        &EncodingKey::from_rsa_pem(include_bytes!("../../../tests/keys/rsa-1.pem")).unwrap(),
    )
    .unwrap();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = crate::encoding::b64url_decode(signature).unwrap();
    let set = parse_jwks(
        &json!({"keys": [public_jwk("test-rsa-1")]}),
        KeyOrigin::Remote,
    )
    .unwrap();
    for alg in [Alg::ES256, Alg::EdDSA, Alg::HS256, Alg::PS256] {
        assert!(
            !InWasmVerifier.verify(alg, &set.keys[0], input.as_bytes(), &signature),
            "{alg}"
        );
    }
}

#[test]
fn spki_der_matches_the_jwk() {
    use p256::pkcs8::DecodePublicKey;
    use rsa::traits::PublicKeyParts;
    let set = parse_jwks(
        &serde_json::from_str(PUBLIC_JWKS).unwrap(),
        KeyOrigin::Remote,
    )
    .unwrap();
    for key in &set.keys {
        match &key.material {
            KeyMaterial::Rsa { n, e } => {
                let parsed =
                    rsa::RsaPublicKey::from_public_key_der(key.spki_der.as_ref().unwrap()).unwrap();
                assert_eq!(&parsed.n().to_bytes_be(), n);
                assert_eq!(&parsed.e().to_bytes_be(), e);
            }
            KeyMaterial::Ec { point } if point.len() == 65 => {
                let parsed =
                    p256::PublicKey::from_public_key_der(key.spki_der.as_ref().unwrap()).unwrap();
                assert_eq!(parsed.to_sec1_bytes().as_ref(), point.as_slice());
            }
            KeyMaterial::Ec { point } => {
                let parsed =
                    p384::PublicKey::from_public_key_der(key.spki_der.as_ref().unwrap()).unwrap();
                assert_eq!(parsed.to_sec1_bytes().as_ref(), point.as_slice());
            }
            KeyMaterial::Ed25519 { .. } | KeyMaterial::Hmac { .. } => {
                assert!(key.spki_der.is_none())
            }
        }
    }
}
