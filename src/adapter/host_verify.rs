//! Signature verification through Envoy's native `verify_signature` foreign function
//! (BoringSSL), with the in-wasm verifier for what the host does not cover.

use proxy_wasm::hostcalls;

use brickgate_core::alg::Alg;
use brickgate_core::jwks::VerificationKey;
use brickgate_core::verify::host_abi::{
    decode_result, encode_arguments, host_hash, host_signature, self_test_cases,
};
use brickgate_core::verify::{InWasmVerifier, SignatureVerifier};

const FOREIGN_FUNCTION: &str = "verify_signature";

pub struct HostVerifier;

/// `Some(result)` when the host gave a verdict; `None` when it could not be asked.
fn ask_host(
    alg: Alg,
    key: &VerificationKey,
    signing_input: &[u8],
    signature: &[u8],
) -> Option<bool> {
    let hash = host_hash(alg)?;
    let spki = key.spki_der.as_ref()?;
    let Some(signature) = host_signature(alg, signature) else {
        return Some(false);
    };
    let arguments = encode_arguments(hash, spki, &signature, signing_input);
    let reply = hostcalls::call_foreign_function(FOREIGN_FUNCTION, Some(&arguments)).ok()??;
    decode_result(&reply).map(|(result, _)| result)
}

impl SignatureVerifier for HostVerifier {
    fn verify(
        &self,
        alg: Alg,
        key: &VerificationKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> bool {
        match ask_host(alg, key, signing_input, signature) {
            Some(result) => result,
            None => InWasmVerifier.verify(alg, key, signing_input, signature),
        }
    }
}

/// Whether the host verifies the self-test vectors exactly as expected: genuine signatures
/// accepted, altered ones refused. Only then is it trusted with traffic.
pub fn host_passes_self_test() -> Result<(), String> {
    for case in self_test_cases() {
        match ask_host(case.alg, &case.key, case.message, &case.signature) {
            Some(result) if result == case.expected => {}
            Some(result) => {
                return Err(format!(
                    "{} self-test returned {result}, expected {}",
                    case.alg, case.expected
                ));
            }
            None => {
                return Err(format!(
                    "host has no usable {FOREIGN_FUNCTION} for {}",
                    case.alg
                ));
            }
        }
    }
    Ok(())
}
