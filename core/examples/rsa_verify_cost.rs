//! The native cost of one in-wasm-path RS256 verification (`InWasmVerifier`, `ring`), for
//! callgrind: `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*verify_loop*'
//! target/release/examples/rsa_verify_cost`, then `callgrind_annotate --inclusive=yes` shows
//! how much of it is `ring`'s per-call key set-up (`from_modulus_and_exponent`). REQUESTS
//! (default 100) verifications.

use brickgate_core::alg::Alg;
use brickgate_core::jwks::{KeyOrigin, KeySet, VerificationKey, parse_jwks};
use brickgate_core::verify::{InWasmVerifier, SignatureVerifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const RSA_1: &str = include_str!("../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../tests/keys/public-jwks.json");

#[inline(never)]
fn verify_loop(key: &VerificationKey, input: &[u8], signature: &[u8], n: usize) -> usize {
    (0..n)
        .filter(|_| InWasmVerifier.verify(Alg::RS256, key, input, signature))
        .count()
}

fn main() {
    let n: usize = std::env::var("REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let document: Value = serde_json::from_str(PUBLIC_JWKS).unwrap_or(Value::Null);
    let keys: KeySet = match parse_jwks(&document, KeyOrigin::Inline) {
        Ok(keys) => keys,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(2);
        }
    };
    let Some(key) = keys
        .candidates(Some("test-rsa-1"), Alg::RS256)
        .first()
        .copied()
    else {
        eprintln!("no test-rsa-1 key");
        std::process::exit(2);
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let claims = json!({"iss": "https://idp.test", "exp": 2_000_000_000u64});
    let token = EncodingKey::from_rsa_pem(RSA_1.as_bytes())
        .and_then(|k| encode(&header, &claims, &k))
        .unwrap_or_default();
    let Some((input, signature)) = token.rsplit_once('.') else {
        std::process::exit(2);
    };
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
            .unwrap_or_default();
    let valid = verify_loop(key, input.as_bytes(), &signature, n);
    println!("RS256 verifications: {n}, valid: {valid}");
}
