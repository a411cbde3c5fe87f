//! Verification of a parsed token for one provider, cheapest checks first: header, `alg`,
//! time, audience, key lookup, and only then the signature.

pub mod claims;
pub mod host_abi;
mod signature;

pub use signature::{InWasmVerifier, SignatureVerifier};

use crate::UnixTime;
use crate::alg::Alg;
use crate::error::{AuthError, Reason, echo, echo_list};
use crate::jwks::{KeySet, MAX_KEYS_WITHOUT_KID};
use crate::token::UnverifiedJwt;

/// What verification reads of a configured provider. Declared here, and filled by
/// `config::Provider`, so that `verify` sits below `config` in the module graph.
#[derive(Debug, Clone, Copy)]
pub struct ProviderChecks<'a> {
    pub name: &'a str,
    pub require_typ: bool,
    pub algorithms: &'a [Alg],
    pub clock_skew_s: u64,
    pub max_lifetime_s: u64,
    /// `None` when the provider explicitly waives the audience check.
    pub audiences: Option<&'a [String]>,
}

/// Whether a JOSE `typ` names an RFC 9068 access token (`require_typ`), either way it may be
/// spelled (RFC 9068 §2.1; case-insensitive, RFC 7515 §4.1.9).
pub fn is_access_token_typ(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// The token's `alg`, when it is one the provider accepts.
pub fn accepted_alg(algorithms: &[Alg], alg: &str) -> Option<Alg> {
    Alg::parse(alg).filter(|alg| algorithms.contains(alg))
}

/// Checks everything about `jwt` that depends on `provider`. `keys` is the error to answer
/// when the provider's keys cannot be used (not fetched yet, or expired beyond grace); it is
/// only consulted once the cheap checks have passed.
pub fn verify_for_provider<'p>(
    provider: impl Into<ProviderChecks<'p>>,
    jwt: &UnverifiedJwt<'_>,
    keys: Result<&KeySet, AuthError>,
    now: UnixTime,
    verifier: &dyn SignatureVerifier,
) -> Result<Alg, AuthError> {
    let provider = provider.into();
    if provider.require_typ {
        let typ = jwt.header.typ.as_deref().unwrap_or("");
        if !is_access_token_typ(typ) {
            return Err(AuthError::new(
                Reason::TypMismatch,
                format!(
                    "token typ is {:?}; provider {} accepts only at+jwt access tokens (RFC 9068)",
                    echo(typ),
                    provider.name
                ),
            ));
        }
    }
    let alg = accepted_alg(provider.algorithms, &jwt.header.alg).ok_or_else(|| {
        let allowed: Vec<&str> = provider.algorithms.iter().map(|a| a.name()).collect();
        AuthError::new(
            Reason::AlgNotAllowed,
            format!(
                "alg {:?} is not accepted for provider {} (accepted: [{}])",
                echo(&jwt.header.alg),
                provider.name,
                allowed.join(", ")
            ),
        )
    })?;
    claims::check_lifetime(
        &jwt.claims,
        now,
        provider.clock_skew_s,
        provider.max_lifetime_s,
    )?;
    if let Some(audiences) = provider.audiences {
        claims::check_audience(&jwt.claims, audiences)?;
    }
    let keys = keys?;
    let kid = jwt.header.kid.as_deref();
    let candidates = keys.candidates(kid, alg);
    if candidates.is_empty() {
        return Err(AuthError::new(
            Reason::UnknownKid,
            match kid {
                Some(kid) => format!(
                    "no key with kid {:?} in provider {}'s key set (known: [{}])",
                    echo(kid),
                    provider.name,
                    echo_list(&keys.kids())
                ),
                None => format!(
                    "token has no kid and provider {} has no {alg} key",
                    provider.name
                ),
            },
        ));
    }
    let mut fitting: Vec<_> = candidates
        .iter()
        .filter(|key| key.mismatch(alg).is_none())
        .collect();
    let fit = fitting.len();
    if kid.is_none() {
        // Bounded work per token; keys published without kid are the likeliest signers.
        fitting.sort_by_key(|key| key.kid.is_some());
        fitting.truncate(MAX_KEYS_WITHOUT_KID);
    }
    if fitting.is_empty() {
        let why = candidates
            .first()
            .and_then(|key| key.mismatch(alg))
            .unwrap_or_default();
        return Err(AuthError::new(
            Reason::KeyMismatch,
            format!(
                "key {:?} cannot verify {alg}: {why}",
                echo(kid.unwrap_or(""))
            ),
        ));
    }
    let signing_input = jwt.signing_input.as_bytes();
    if fitting
        .iter()
        .any(|key| verifier.verify(alg, key, signing_input, &jwt.signature))
    {
        return Ok(alg);
    }
    Err(AuthError::new(
        Reason::BadSignature,
        match kid {
            Some(kid) => format!(
                "signature does not verify with key {:?} of provider {}",
                echo(kid),
                provider.name
            ),
            None if fit > MAX_KEYS_WITHOUT_KID => format!(
                "signature does not verify with the first {MAX_KEYS_WITHOUT_KID} of provider {}'s \
                 {fit} {alg} keys (a token without kid is tried against at most \
                 {MAX_KEYS_WITHOUT_KID}; send a kid)",
                provider.name
            ),
            None => format!(
                "signature does not verify with any {alg} key of provider {}",
                provider.name
            ),
        },
    ))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bounds_tests;
