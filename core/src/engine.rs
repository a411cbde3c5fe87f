//! The decision pipeline: path → rule → credential → token → provider → verification →
//! requirement → identity. Pure: the adapter supplies the request, the key store and `now`.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::UnixTime;
use crate::cache::{self, CachedToken, TokenCache, TokenDigest};
use crate::config::{Config, Provider, TokenSource};
use crate::databricks::exchange::{TokenRequest, UpstreamMode};
use crate::databricks::{self, serving};
use crate::error::{AuthError, DenyResponse, Reason, echo};
use crate::header_name::same_header_name;
use crate::identity::{
    AuditRecord, FederatedSubject, Holder, Verified, client_id, fingerprint, headers_to_strip,
    identity_headers, principal_kind,
};
use crate::jwks::{Availability, JwksStore, KeySet, UnixMillis};
use crate::policy::{Access, Bindings, NormalizedPath, Rule, match_rule, normalize_path};
use crate::request_hygiene;
use crate::token::{Credential, UnverifiedJwt, extract_credential};
use crate::verify::claims::{check_times, string_claim, string_list, token_times};
use crate::verify::{SignatureVerifier, verify_for_provider};

type Claims = Map<String, Value>;

/// What the adapter knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The raw `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lower-case as the host delivers them.
    pub headers: &'a [(String, String)],
    /// The request body, once read: only for OpenAI-style serving routes, when a rule names
    /// serving endpoints (the decision asks for it with `NeedBody`).
    pub body: Option<&'a [u8]>,
    /// Fill the audit record's token fingerprint (a SHA-256): only worth it when the record
    /// will be written.
    pub fingerprint: bool,
}

/// How the allowed request authenticates to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAction {
    /// As the client sent it.
    Forward,
    /// Replace `Authorization` with the token this request yields (Databricks token
    /// exchange or service principal), cached under its `cache_key`.
    Fetch(TokenRequest),
}

/// Changes to make to an allowed request before it goes upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    pub remove_headers: Vec<String>,
    pub set_headers: Vec<(String, String)>,
    pub set_path: Option<String>,
}

impl Mutations {
    /// The request's headers once these changes are made: lets the adapter replace the whole
    /// map in one host call instead of one per header.
    pub fn applied_to(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        let replaced = |name: &str| {
            self.remove_headers
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
                || self
                    .set_headers
                    .iter()
                    .any(|(s, _)| s.eq_ignore_ascii_case(name))
                || (name == ":path" && self.set_path.is_some())
        };
        let mut result: Vec<(String, String)> = headers
            .iter()
            .filter(|(name, _)| !replaced(name))
            .cloned()
            .collect();
        if let Some(path) = &self.set_path {
            result.push((":path".to_string(), path.clone()));
        }
        result.extend(self.set_headers.iter().cloned());
        result
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        mutations: Mutations,
        upstream: UpstreamAction,
        audit: AuditRecord,
    },
    Deny {
        response: DenyResponse,
        audit: AuditRecord,
    },
    /// The rule depends on the serving endpoint named in the body: hold the request (headers
    /// included) until its body has arrived (at most `max_bytes`), then decide again with it.
    /// Nothing is decided, so nothing may reach the upstream yet.
    NeedBody {
        max_bytes: usize,
        audit: AuditRecord,
    },
}

impl Decision {
    pub fn audit(&self) -> &AuditRecord {
        match self {
            Decision::Allow { audit, .. }
            | Decision::Deny { audit, .. }
            | Decision::NeedBody { audit, .. } => audit,
        }
    }
}

/// What evaluation concluded, short of a refusal. Short-lived, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    Allowed(Mutations, UpstreamAction),
    /// Read the body (at most this many bytes), then decide.
    NeedBody(usize),
}

pub struct Engine {
    pub config: Config,
    verifier: Box<dyn SignatureVerifier>,
}

impl Engine {
    pub fn new(config: Config, verifier: Box<dyn SignatureVerifier>) -> Self {
        Engine { config, verifier }
    }

    pub fn decide(
        &self,
        request: &Request<'_>,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
    ) -> Decision {
        let mut audit = AuditRecord {
            method: request.method.to_string(),
            path: request
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string(),
            request_id: header(request.headers, "x-request-id").map(str::to_string),
            ..AuditRecord::default()
        };
        match self.evaluate(request, keys, cache, now_ms, &mut audit) {
            Ok(Verdict::Allowed(mutations, upstream)) => {
                audit.decision = "allow";
                audit.status = 200;
                Decision::Allow {
                    mutations,
                    upstream,
                    audit,
                }
            }
            Ok(Verdict::NeedBody(max_bytes)) => Decision::NeedBody { max_bytes, audit },
            Err(error) => {
                let response = error.to_response(&self.config.realm);
                audit.decision = "deny";
                audit.reason = Some(error.reason.as_str());
                audit.status = response.status;
                audit.detail = Some(error.detail);
                Decision::Deny { response, audit }
            }
        }
    }

    fn evaluate(
        &self,
        request: &Request<'_>,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<Verdict, AuthError> {
        let config = &self.config;
        let path = normalize_path(request.path).map_err(|problem| {
            AuthError::new(Reason::BadPath, format!("bad request path: {problem}"))
        })?;
        audit.path = path.path.clone();
        let body_limit = config
            .databricks
            .as_ref()
            .map_or(1 << 20, |d| d.max_body_bytes);
        let model = match request.body {
            _ if !(config.reads_model_from_body
                && serving::is_openai_route(request.method, &path.path)) =>
            {
                None
            }
            None => return Ok(Verdict::NeedBody(body_limit)),
            Some(body) => Some(serving::model_from_body(body, body_limit)?),
        };
        let endpoint = serving::endpoint(request.method, &path.path, model.as_deref());
        let (rule, bindings) = match_rule(&config.rules, request.method, &path.path, endpoint)
            .map_err(|conflict| conflict.into_error(model.is_some()))?
            .ok_or_else(|| no_matching_rule(request.method, &path.path))?;
        self.apply_rule(request, &path, rule, &bindings, keys, cache, now_ms, audit)
    }

    /// Everything after the rule is chosen: credential, token, requirement, identity.
    #[allow(clippy::too_many_arguments)]
    fn apply_rule(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        rule: &Rule,
        bindings: &Bindings,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<Verdict, AuthError> {
        let config = &self.config;
        audit.rule = Some(rule.name.clone());
        let mut mutations = Mutations {
            remove_headers: headers_to_strip(request.headers, &config.identity.header_prefix),
            ..Mutations::default()
        };
        if config.databricks.is_some() {
            databricks_hygiene(request, &mut mutations);
        }
        let overrides = request_hygiene::headers_to_remove(request.method, request.headers)?;
        mutations.remove_headers.extend(overrides);
        let (providers, requirement) = match &rule.access {
            Access::Anonymous => {
                mutations.set_path = path.rewritten.clone();
                return Ok(Verdict::Allowed(mutations, UpstreamAction::Forward));
            }
            Access::Refuse(why) => return Err(AuthError::new(Reason::RouteDisabled, why.clone())),
            Access::Token { providers, require } => (providers, require),
        };
        let sources = self.token_sources(providers);
        let credential = extract_credential(request.headers, path.query.as_deref(), &sources, config.max_token_bytes)?
            .ok_or_else(|| {
                AuthError::new(
                    Reason::MissingToken,
                    format!("no bearer token: rule {} needs an access token (Authorization: Bearer <token>)", rule.name),
                )
            })?;
        let digest = cache::digest(&credential.token);
        if request.fingerprint {
            audit.token_fingerprint = Some(fingerprint(&credential.token));
        }
        let (index, verified) = self.authenticate(
            rule,
            providers,
            &credential.token,
            &digest,
            keys,
            cache,
            now_ms,
            audit,
        )?;
        let provider = config.providers.get(index).ok_or_else(|| {
            AuthError::new(
                Reason::IssuerNotAccepted,
                "provider vanished from the configuration",
            )
        })?;
        audit.principal_kind = Some(verified.kind.as_str());
        requirement.check(&rule.name, bindings, &verified.scopes, &verified.groups)?;

        let upstream = match &provider.upstream {
            UpstreamMode::PassThrough => UpstreamAction::Forward,
            UpstreamMode::Exchange {
                endpoint,
                subject_claim,
            } => UpstreamAction::Fetch(endpoint.exchange(
                &provider.issuer,
                subject_claim,
                federated_subject(&verified.federated_subject)?,
                &credential.token,
            )),
            UpstreamMode::ServicePrincipal(endpoint) => {
                UpstreamAction::Fetch(endpoint.client_credentials(&provider.name))
            }
        };
        let identity = &config.identity;
        mutations
            .set_headers
            .extend(verified.headers.iter().cloned());
        mutations
            .set_headers
            .push((format!("{}rule", identity.header_prefix), rule.name.clone()));
        // With a Databricks token of brickgate's making, the client's credential is of no use
        // upstream: it goes wherever it was read from, whatever `forward_authorization` says.
        if identity.forward_authorization && upstream == UpstreamAction::Forward {
            mutations.set_path = path.rewritten.clone();
        } else {
            remove_credential(&credential, path, &mut mutations);
        }
        Ok(Verdict::Allowed(mutations, upstream))
    }

    /// Who the token belongs to: from the verified-token cache when it was verified before
    /// (time and audience re-checked), otherwise parsed and verified in full, then cached.
    #[allow(clippy::too_many_arguments)]
    fn authenticate(
        &self,
        rule: &Rule,
        providers: &[usize],
        token: &str,
        digest: &TokenDigest,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<(usize, Rc<Verified>), AuthError> {
        let now: UnixTime = now_ms / 1000;
        if let Some(hit) = cache.get(digest, now, |p| keys.generation(p)) {
            audit.cache = Some("hit");
            audit.kid = hit.kid.clone();
            audit.alg = Some(hit.alg.name().to_string());
            let provider = self.config.providers.get(hit.provider).ok_or_else(|| {
                AuthError::new(
                    Reason::IssuerNotAccepted,
                    "provider vanished from the configuration",
                )
            })?;
            fill_audit(audit, provider, &hit.verified.holder, Trust::Claimed);
            if !providers.contains(&hit.provider) {
                return Err(self.issuer_not_accepted(rule, providers, &provider.issuer));
            }
            // The audience was checked when the token was verified; providers do not change.
            check_times(
                &hit.verified.times,
                now,
                provider.clock_skew_s,
                provider.max_lifetime_s,
            )?;
            usable_keys(keys, hit.provider, now_ms, audit)?;
            fill_audit(audit, provider, &hit.verified.holder, Trust::Verified);
            return Ok((hit.provider, hit.verified));
        }
        audit.cache = Some("miss");
        let jwt = UnverifiedJwt::parse(token)?;
        audit.kid = jwt.header.kid.clone();
        audit.alg = Some(jwt.header.alg.clone());
        let (index, provider) = self.provider_for(rule, providers, &jwt)?;
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
        let verified = Rc::new(self.verified_identity(provider, &jwt.claims, holder)?);
        fill_audit(audit, provider, &verified.holder, Trust::Verified);
        if let Some(generation) = generation {
            let entry = CachedToken {
                provider: index,
                key_generation: generation,
                alg,
                kid: jwt.header.kid,
                exp: verified.times.exp,
                bytes: token.len() + verified.approximate_bytes(),
                verified: Rc::clone(&verified),
            };
            cache.insert(*digest, entry);
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
        let scopes = scopes_of(provider, claims);
        let groups = string_list(claims, &provider.groups_claim);
        let identity = &self.config.identity;
        let built_in = vec![
            ("subject", holder.subject.clone()),
            ("issuer", Some(provider.issuer.clone())),
            ("provider", Some(provider.name.clone())),
            ("client-id", holder.client_id.clone()),
            ("scopes", Some(scopes.join(" "))),
            ("groups", Some(groups.join(","))),
            ("principal-kind", Some(kind.as_str().to_string())),
            ("token-id", holder.token_id.clone()),
        ];
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
            headers,
        })
    }

    fn issuer_not_accepted(&self, rule: &Rule, providers: &[usize], iss: &str) -> AuthError {
        let issuers: Vec<&str> = providers
            .iter()
            .filter_map(|i| self.config.providers.get(*i).map(|p| p.issuer.as_str()))
            .collect();
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

    /// The union of the token sources of the rule's providers, in order, without repeats.
    fn token_sources(&self, providers: &[usize]) -> Vec<&TokenSource> {
        let mut sources: Vec<&TokenSource> = Vec::new();
        for provider in providers
            .iter()
            .filter_map(|i| self.config.providers.get(*i))
        {
            for source in &provider.token_sources {
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
        sources
    }

    /// The provider whose issuer is the token's `iss`, among those the rule accepts.
    fn provider_for(
        &self,
        rule: &Rule,
        providers: &[usize],
        jwt: &UnverifiedJwt<'_>,
    ) -> Result<(usize, &Provider), AuthError> {
        let iss = string_claim(&jwt.claims, "iss").ok_or_else(|| {
            AuthError::new(
                Reason::IssuerNotAccepted,
                "token has no iss claim (or it is not a string)",
            )
        })?;
        providers
            .iter()
            .filter_map(|i| self.config.providers.get(*i).map(|p| (*i, p)))
            .find(|(_, p)| p.issuer == iss)
            .ok_or_else(|| self.issuer_not_accepted(rule, providers, &iss))
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
    audit.provider = Some(provider.name.clone());
    audit.issuer = Some(provider.issuer.clone());
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
            return FederatedSubject::Claim(text.clone());
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

/// The mapped subject an exchange is cached under; no exchange without it.
fn federated_subject(subject: &FederatedSubject) -> Result<&str, AuthError> {
    match subject {
        FederatedSubject::Claim(value) => Ok(value),
        FederatedSubject::Unusable(why) => Err(AuthError::new(Reason::MissingSubject, why.clone())),
        FederatedSubject::NotExchanged => Err(AuthError::new(
            Reason::MissingSubject,
            "the token was verified for a provider that does not exchange tokens",
        )),
    }
}

fn scopes_of(provider: &Provider, claims: &Claims) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for claim in &provider.scope_claims {
        for scope in string_list(claims, claim) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

/// With `forward_authorization: false`, the credential never reaches the upstream.
fn remove_credential(credential: &Credential, path: &NormalizedPath, mutations: &mut Mutations) {
    let mut query_params: Vec<&str> = Vec::new();
    for source in &credential.found_in {
        match source {
            TokenSource::Header { name, .. } => mutations.remove_headers.push(name.clone()),
            TokenSource::Query { param } => query_params.push(param),
        }
    }
    if query_params.is_empty() {
        mutations.set_path = path.rewritten.clone();
        return;
    }
    let base = path.encoded.clone();
    let kept: Vec<&str> = path
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && !query_params.contains(&name)
        })
        .collect();
    mutations.set_path = Some(if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    });
}

/// Headers a Databricks upstream must not receive from clients, and the `User-Agent` that
/// lets a Databricks audit row be joined to brickgate's record.
fn databricks_hygiene(request: &Request<'_>, mutations: &mut Mutations) {
    for (name, _) in request.headers {
        if databricks::STRIPPED_HEADERS
            .iter()
            .any(|h| same_header_name(name, h))
            && !mutations.remove_headers.contains(name)
        {
            mutations.remove_headers.push(name.clone());
        }
    }
    let agent = databricks::user_agent(
        header(request.headers, "user-agent"),
        header(request.headers, "x-request-id"),
    );
    mutations
        .set_headers
        .push(("user-agent".to_string(), agent));
}

fn no_matching_rule(method: &str, path: &str) -> AuthError {
    AuthError::new(
        Reason::NoMatchingRule,
        format!(
            "no rule matches {} {}; requests are denied by default",
            crate::error::echo_at_most(method, 16),
            crate::error::echo_at_most(path, 256)
        ),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod databricks_tests;
