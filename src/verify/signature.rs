//! The signature seam. Everything else in verification is backend-agnostic; a faster backend
//! (the host's native `verify_signature`) plugs in here without touching the rest.

use jsonwebtoken::Algorithm;

use crate::alg::Alg;
use crate::jwks::VerificationKey;

pub trait SignatureVerifier {
    /// `true` only when `signature_b64` is a valid signature of `signing_input` under `key`.
    /// The caller has already checked that the key fits `alg`.
    fn verify(
        &self,
        alg: Alg,
        key: &VerificationKey,
        signing_input: &[u8],
        signature_b64: &str,
    ) -> bool;
}

/// Verification inside the wasm VM through `jsonwebtoken`'s `CryptoProvider` (RustCrypto).
#[derive(Debug, Default, Clone, Copy)]
pub struct InWasmVerifier;

impl SignatureVerifier for InWasmVerifier {
    fn verify(
        &self,
        alg: Alg,
        key: &VerificationKey,
        signing_input: &[u8],
        signature_b64: &str,
    ) -> bool {
        jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input,
            &key.decoding,
            to_jsonwebtoken(alg),
        )
        .unwrap_or(false)
    }
}

fn to_jsonwebtoken(alg: Alg) -> Algorithm {
    match alg {
        Alg::RS256 => Algorithm::RS256,
        Alg::RS384 => Algorithm::RS384,
        Alg::RS512 => Algorithm::RS512,
        Alg::PS256 => Algorithm::PS256,
        Alg::PS384 => Algorithm::PS384,
        Alg::PS512 => Algorithm::PS512,
        Alg::ES256 => Algorithm::ES256,
        Alg::ES384 => Algorithm::ES384,
        Alg::EdDSA => Algorithm::EdDSA,
        Alg::HS256 => Algorithm::HS256,
        Alg::HS384 => Algorithm::HS384,
        Alg::HS512 => Algorithm::HS512,
    }
}
