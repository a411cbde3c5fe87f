//! Who holds the token: the verified-token cache, or parsing and verifying it in full against
//! the keys of the provider its issuer names; what a verified token says about its holder.

use std::sync::Arc;

use serde_json::Value;

use super::accepted::AcceptedProviders;
use super::{Claims, Engine};
use crate::UnixTime;
use crate::cache::{CachedToken, TokenCache};
use crate::config::Provider;
use crate::databricks::exchange::UpstreamMode;
use crate::databricks::own_credentials;
use crate::error::{AuthError, Reason, echo};
use crate::identity::grants::effective_scopes;
use crate::identity::{
    AuditRecord, FederatedSubject, Holder, Verified, client_id, fingerprint, identity_headers,
    principal_kind,
};
use crate::jwks::{Availability, JwksStore, KeySet, UnixMillis};
use crate::policy::Rule;
use crate::token::UnverifiedJwt;
use crate::verify::claims::{check_times, name_list, scope_list, string_claim, token_times};
use crate::verify::verify_for_provider;

impl Engine {
    /// Who the token belongs to: from the verified-token cache when it was verified before
    /// (time and audience re-checked), otherwise parsed and verified in full, then cached.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn authenticate(
        &self,
        rule: &Rule,
        accepted: &AcceptedProviders,
        token: &str,
        want_fingerprint: bool,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<(usize, Arc<Verified>), AuthError> {
        let now: UnixTime = now_ms / 1000;
        if let Some(hit) = cache.get(token, now, |p| keys.generation(p)) {
            audit.cache = Some("hit");
            if want_fingerprint {
                // Computed once per token (a SHA-256 in wasm costs microseconds), not per hit.
                audit.token_fingerprint =
                    Some(hit.fingerprint.unwrap_or_else(|| fingerprint(token)));
            }
            audit.kid = hit.kid;
            audit.alg = Some(hit.alg.name().to_string());
            let provider = self.config.providers.get(hit.provider).ok_or_else(|| {
                AuthError::new(
                    Reason::IssuerNotAccepted,
                    "provider vanished from the configuration",
                )
            })?;
            // The holder is filled in once, as verified or (if refused now) as claimed.
            fill_provider(audit, provider);
            let still_valid = if accepted.accepts(hit.provider) {
                // The audience was checked when the token was verified; providers do not change.
                check_times(
                    &hit.verified.times,
                    now,
                    provider.clock_skew_s,
                    provider.max_lifetime_s,
                )
                .and_then(|()| usable_keys(keys, hit.provider, now_ms, audit).map(|_| ()))
            } else {
                Err(self.issuer_not_accepted(rule, &accepted.providers, &provider.issuer))
            };
            let trust = match still_valid {
                Ok(()) => Trust::Verified,
                Err(_) => Trust::Claimed,
            };
            fill_holder(audit, &hit.verified.holder, trust);
            still_valid?;
            return Ok((hit.provider, hit.verified));
        }
        audit.cache = Some("miss");
        if want_fingerprint {
            audit.token_fingerprint = Some(fingerprint(token));
        }
        if own_credentials::is_personal_access_token(token) {
            let issuers = self.accepted_issuers(&accepted.providers);
            return Err(own_credentials::personal_access_token_refused(
                &rule.name, &issuers,
            ));
        }
        let jwt = UnverifiedJwt::parse(token)?;
        audit.kid = jwt.header.kid.clone();
        audit.alg = Some(jwt.header.alg.clone());
        let (index, provider) = self.provider_for(rule, accepted, &jwt)?;
        // Read once: the audit names the claimed holder even when verification refuses the token.
        let holder = Holder {
            subject: string_claim(&jwt.claims, &provider.subject_claim),
            client_id: client_id(&jwt.claims),
            token_id: string_claim(&jwt.claims, "jti"),
        };
        fill_audit(audit, provider, &holder, Trust::Claimed);
        let usable = usable_keys(keys, index, now_ms, audit);
        let generation = usable.as_ref().ok().map(|k| k.generation);
        let alg = verify_for_provider(provider, &jwt, usable, now, self.verifier.as_ref())?;
        let verified = Arc::new(self.verified_identity(provider, &jwt.claims, holder)?);
        fill_audit(audit, provider, &verified.holder, Trust::Verified);
        if let Some(generation) = generation {
            let entry = CachedToken {
                provider: index,
                key_generation: generation,
                alg,
                kid: jwt.header.kid,
                fingerprint: audit.token_fingerprint.clone(),
                exp: verified.times.exp,
                bytes: token.len() + verified.approximate_bytes(),
                verified: Arc::clone(&verified),
            };
            cache.insert(token, entry);
        }
        Ok((index, verified))
    }

    /// What a verified token says about its holder, and the identity headers it earns.
    fn verified_identity(
        &self,
        provider: &Provider,
        claims: &Claims,
        holder: Holder,
    ) -> Result<Verified, AuthError> {
        let kind = principal_kind(provider.idp, claims, holder.subject.as_deref());
        let groups = name_list(claims, &provider.groups_claim);
        let roles = name_list(claims, &provider.roles_claim);
        let scopes = effective_scopes(
            &provider.grants,
            scopes_of(provider, claims),
            &groups,
            &roles,
        );
        let identity = &self.config.identity;
        let mut built_in = vec![
            ("subject", holder.subject.clone()),
            ("issuer", Some(provider.issuer.clone())),
            ("provider", Some(provider.name.clone())),
            ("client-id", holder.client_id.clone()),
            ("scopes", Some(scopes.join(" "))),
            ("groups", Some(groups.join(","))),
            ("principal-kind", Some(kind.as_str().to_string())),
            ("token-id", holder.token_id.clone()),
        ];
        built_in.retain(|(suffix, _)| identity.built_in.contains(suffix));
        let headers = identity_headers(
            &identity.header_prefix,
            built_in,
            claims,
            &identity.claim_headers,
        );
        Ok(Verified {
            times: token_times(claims)?,
            federated_subject: federated_subject_of(provider, claims),
            holder,
            kind,
            scopes,
            groups,
            headers: headers.into(),
        })
    }

    fn accepted_issuers(&self, providers: &[usize]) -> Vec<&str> {
        providers
            .iter()
            .filter_map(|i| self.config.providers.get(*i).map(|p| p.issuer.as_str()))
            .collect()
    }

    fn issuer_not_accepted(&self, rule: &Rule, providers: &[usize], iss: &str) -> AuthError {
        let issuers = self.accepted_issuers(providers);
        if own_credentials::is_databricks_issuer(iss) {
            return own_credentials::oauth_token_refused(iss, &rule.name, &issuers);
        }
        AuthError::new(
            Reason::IssuerNotAccepted,
            format!(
                "issuer {:?} is not accepted by rule {} (accepted: [{}])",
                echo(iss),
                rule.name,
                issuers.join(", ")
            ),
        )
    }

    /// The provider whose issuer is the token's `iss`, among those the rule accepts.
    fn provider_for(
        &self,
        rule: &Rule,
        accepted: &AcceptedProviders,
        jwt: &UnverifiedJwt<'_>,
    ) -> Result<(usize, &Provider), AuthError> {
        let iss = string_claim(&jwt.claims, "iss").ok_or_else(|| {
            AuthError::new(
                Reason::IssuerNotAccepted,
                "token has no iss claim (or it is not a string)",
            )
        })?;
        accepted
            .by_issuer(&iss)
            .and_then(|i| self.config.providers.get(i).map(|p| (i, p)))
            .ok_or_else(|| self.issuer_not_accepted(rule, &accepted.providers, &iss))
    }
}

/// The provider's keys if they may be used now; stale keys (IdP unreachable, within the grace
/// period) are used and marked in the audit record.
fn usable_keys<'a>(
    keys: &'a JwksStore,
    provider: usize,
    now_ms: UnixMillis,
    audit: &mut AuditRecord,
) -> Result<&'a KeySet, AuthError> {
    match keys.availability(provider, now_ms) {
        Availability::Ready(keys) => Ok(keys),
        Availability::Stale(keys) => {
            audit.stale_keys = true;
            Ok(keys)
        }
        Availability::Cold => Err(AuthError::new(
            Reason::KeysUnavailable,
            format!(
                "signing keys for provider {} have not been fetched yet; retry shortly",
                audit.provider.as_deref().unwrap_or("?")
            ),
        )),
        Availability::Expired(why) => Err(AuthError::new(Reason::KeysUnavailable, why)),
    }
}

/// Whether the token's signature and claims verified for this request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    Claimed,
    Verified,
}

/// The holder goes into `subject`, `client_id`, `token_id` only once verified; until then
/// into `claimed_*`, so a forged token cannot put a name in the record's `subject`.
fn fill_audit(audit: &mut AuditRecord, provider: &Provider, holder: &Holder, trust: Trust) {
    fill_provider(audit, provider);
    fill_holder(audit, holder, trust);
}

fn fill_provider(audit: &mut AuditRecord, provider: &Provider) {
    audit.provider = Some(provider.name.clone());
    audit.issuer = Some(provider.issuer.clone());
}

fn fill_holder(audit: &mut AuditRecord, holder: &Holder, trust: Trust) {
    let (named, claimed) = match trust {
        Trust::Verified => (Some(holder), None),
        Trust::Claimed => (None, Some(holder)),
    };
    audit.subject = named.and_then(|h| h.subject.clone());
    audit.client_id = named.and_then(|h| h.client_id.clone());
    audit.token_id = named.and_then(|h| h.token_id.clone());
    audit.claimed_subject = claimed.and_then(|h| h.subject.clone());
    audit.claimed_client_id = claimed.and_then(|h| h.client_id.clone());
    audit.claimed_token_id = claimed.and_then(|h| h.token_id.clone());
}

/// The claim the federation policy maps, as the workspace reads it: a top-level claim (its
/// name may hold dots, as namespaced claims do), a non-empty string.
fn federated_subject_of(provider: &Provider, claims: &Claims) -> FederatedSubject {
    let UpstreamMode::Exchange { subject_claim, .. } = &provider.upstream else {
        return FederatedSubject::NotExchanged;
    };
    let problem = match claims.get(subject_claim) {
        Some(Value::String(text)) if !text.is_empty() => {
            return FederatedSubject::Claim {
                subject: text.clone(),
                audiences: audiences_of(claims),
            };
        }
        Some(Value::String(_)) => "is empty",
        Some(_) => "is not a string",
        None => "is missing",
    };
    FederatedSubject::Unusable(format!(
        "token claim {subject_claim:?} {problem}: provider {} exchanges tokens for Databricks \
         tokens by that claim (the federation policy's subject_claim), so this token cannot be used",
        provider.name
    ))
}

/// The token's `aud` values, sorted and deduplicated (the audience was checked already).
fn audiences_of(claims: &Claims) -> Vec<String> {
    let mut audiences: Vec<String> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    audiences.sort();
    audiences.dedup();
    audiences
}

fn scopes_of(provider: &Provider, claims: &Claims) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for claim in &provider.scope_claims {
        for scope in scope_list(claims, claim) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}
