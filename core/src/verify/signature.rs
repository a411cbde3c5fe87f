//! The signature seam. Everything else in verification is backend-agnostic: the adapter picks
//! the host's native `verify_signature` when Envoy offers it, and `ring` inside wasm otherwise.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::alg::Alg;
use crate::jwks::{KeyMaterial, VerificationKey};

pub trait SignatureVerifier {
    /// `true` only when `signature` is a valid signature of `signing_input` under `key`.
    /// The caller has already checked that the key fits `alg`.
    fn verify(
        &self,
        alg: Alg,
        key: &VerificationKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> bool;
}

/// Verification inside the wasm VM with `ring` (4× RustCrypto's throughput for cold RS256 in
/// Envoy's V8, docs/BENCHMARKS.md, and a smaller module).
#[derive(Debug, Default, Clone, Copy)]
pub struct InWasmVerifier;

impl SignatureVerifier for InWasmVerifier {
    fn verify(
        &self,
        alg: Alg,
        key: &VerificationKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> bool {
        match &key.material {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, signing_input, signature)
                    .is_ok()
            }
            KeyMaterial::Ec { point } => {
                let params = match alg {
                    Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            KeyMaterial::Ed25519 { x } => {
                alg == Alg::EdDSA
                    && UnparsedPublicKey::new(&signature::ED25519, x)
                        .verify(signing_input, signature)
                        .is_ok()
            }
            KeyMaterial::Hmac { secret } => {
                let algorithm = match alg {
                    Alg::HS256 => ring::hmac::HMAC_SHA256,
                    Alg::HS384 => ring::hmac::HMAC_SHA384,
                    Alg::HS512 => ring::hmac::HMAC_SHA512,
                    _ => return false,
                };
                // Constant-time comparison inside ring.
                ring::hmac::verify(
                    &ring::hmac::Key::new(algorithm, secret),
                    signing_input,
                    signature,
                )
                .is_ok()
            }
        }
    }
}
