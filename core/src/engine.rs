//! The decision pipeline: path → rule → credential → token → provider → verification →
//! requirement → identity. Pure: the adapter supplies the request, the key store and `now`.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::cache::TokenCache;
use crate::config::Config;
use crate::databricks::body_limits::ServingBodyLimits;
use crate::databricks::{catalogue, serving};
use crate::error::{AuthError, DenyResponse, Reason};
use crate::identity::{AuditRecord, Principal, headers_to_strip};
use crate::jwks::{JwksStore, UnixMillis};
use crate::policy::{
    Access, Bindings, NormalizedPath, PathPattern, Rule, RuleIndex, normalize_path,
};
use crate::request_hygiene;
use crate::token::{Credential, extract_credential};
use crate::verify::SignatureVerifier;
use accepted::{AcceptedProviders, accepted_by_rule};
use mutations::{databricks_hygiene, remove_credential};

mod accepted;
mod authenticate;
mod before_body;
mod dry_run;
mod mutations;
mod passage;
mod upstream;

pub use dry_run::WOULD_DENY;
pub use mutations::{HeaderEdit, HeaderRewrite, Mutations, UpstreamAction};
pub use passage::Passage;

type Claims = Map<String, Value>;

/// What the adapter knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The raw `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lower-case as the host delivers them.
    pub headers: &'a [(String, String)],
    /// The request body, once read: for OpenAI-style serving routes when a rule names serving
    /// endpoints, and for path-form serving requests without `Content-Length` (their size is
    /// checked against the endpoint's limit); the decision asks for it with `NeedBody`.
    pub body: Option<&'a [u8]>,
    /// Fill the audit record's token fingerprint (a SHA-256): only worth it when the record
    /// will be written.
    pub fingerprint: bool,
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
    /// included) until its body has arrived (at most `limit.max_bytes`), then decide again
    /// with it. Nothing is decided, so nothing may reach the upstream yet.
    NeedBody {
        limit: ReadLimit,
        audit: AuditRecord,
        /// With `body_rules: buffer_filter`: the header changes to make before the headers go
        /// on to Envoy's buffer filter (`passage`); the decision with the body must cover them.
        passage: Option<Box<Passage>>,
    },
}

/// How much of a held body brickgate reads, and the refusal when the body is longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLimit {
    pub max_bytes: usize,
    pub too_large: AuthError,
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
    /// Read the body (at most this many bytes), then decide; with `body_rules:
    /// buffer_filter`, the header changes made before it.
    NeedBody(ReadLimit, Option<Box<Passage>>),
}

/// The compiled policy: immutable once built, so one instance can serve every worker thread
/// of a native host (an Envoy dynamic module shares its filter config across workers).
/// Per-worker mutable state (the verified-token cache, the key store) is not in here: it is
/// `worker::Worker`'s, beside an `Arc<Engine>`, and the caller passes it to `decide` by reference.
pub struct Engine {
    /// Read-only once the engine is built: the indices below are derived from it.
    pub config: Config,
    verifier: Box<dyn SignatureVerifier + Send + Sync>,
    rule_index: RuleIndex,
    /// By rule index.
    accepted: Vec<Arc<AcceptedProviders>>,
    /// The serving-endpoint rules, in order (the rules a body's `model` may select).
    endpoint_rules: Vec<usize>,
    /// Serving body limits when the configuration has no `databricks` section (with one, its
    /// own): built once, not per request.
    default_serving_limits: ServingBodyLimits,
}

// The compiled policy must stay shareable across threads (see `Engine`).
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};

impl Engine {
    pub fn new(config: Config, verifier: Box<dyn SignatureVerifier + Send + Sync>) -> Self {
        let rule_index = RuleIndex::new(&config.rules);
        let accepted = accepted_by_rule(&config);
        let endpoint_rules = (config.rules.iter().enumerate())
            .filter(|(_, rule)| matches!(rule.pattern, PathPattern::ServingEndpoint(_)))
            .map(|(index, _)| index)
            .collect();
        Engine {
            config,
            verifier,
            rule_index,
            accepted,
            endpoint_rules,
            default_serving_limits: ServingBodyLimits::default(),
        }
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
            // Set by `evaluate`: the path rules saw, or the raw one if it cannot be read.
            path: String::new(),
            request_id: header(request.headers, "x-request-id").map(str::to_string),
            ..AuditRecord::default()
        };
        match self.evaluate(request, keys, cache, now_ms, &mut audit) {
            Ok(Verdict::Allowed(mutations, upstream)) => {
                if audit.decision != WOULD_DENY {
                    audit.decision = "allow";
                    audit.status = 200;
                }
                Decision::Allow {
                    mutations,
                    upstream,
                    audit,
                }
            }
            Ok(Verdict::NeedBody(limit, passage)) => Decision::NeedBody {
                limit,
                audit,
                passage,
            },
            Err(error) if self.reports(&error, &audit) => {
                dry_run::mark_would_deny(&mut audit, error);
                Decision::Allow {
                    mutations: self.unverified_passage(request),
                    upstream: UpstreamAction::Forward,
                    audit,
                }
            }
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
            audit.path = request
                .path
                .split('?')
                .next()
                .unwrap_or_default()
                .to_string();
            AuthError::new(Reason::BadPath, format!("bad request path: {problem}"))
        })?;
        audit.path = path.path.clone();
        if config
            .databricks
            .as_ref()
            .is_some_and(|d| d.route_catalogue)
        {
            catalogue::check_api_spelling(&path.path)
                .map_err(|problem| AuthError::new(Reason::BadPath, problem))?;
        }
        request_hygiene::check_method(request.method)?;
        request_hygiene::check_query_overrides(request.method, path.query.as_deref())?;
        if config.bypass_cors_preflight && is_cors_preflight(request) {
            return self.cors_preflight(request, &path, audit);
        }
        // Credentials before bodies: a request whose rule its body decides is judged at the
        // headers against every rule the body could select (`before_body`); only then read.
        let model = match request.body {
            _ if !self.endpoint_in_body(request.method, &path.path) => None,
            None => {
                let limit = self.model_read_limit();
                let passage = self
                    .admits_without_body(request, &path, keys, cache, now_ms, audit)
                    .and_then(|admitting| {
                        self.passage_before_body(
                            request, &path, admitting, keys, cache, now_ms, audit,
                        )
                    });
                return match passage {
                    Ok(passage) => Ok(Verdict::NeedBody(limit, passage)),
                    Err(error) => self.refuse_or_read(error, request, audit, limit),
                };
            }
            Some(body) => Some(serving::model_from_body(body, self.serving_limits().other)?),
        };
        let endpoint = serving::endpoint(request.method, &path.path, model.as_deref());
        let size_unknown = match endpoint {
            Some(endpoint) => self.size_to_read(request, endpoint)?,
            None => None,
        };
        let (index, rule, bindings) = self
            .rule_index
            .match_rule(&config.rules, request.method, &path.path, endpoint)
            .map_err(|conflict| conflict.into_error(model.is_some()))?
            .ok_or_else(|| no_matching_rule(request.method, &path.path))?;
        let accepted = self
            .accepted
            .get(index)
            .map_or_else(Default::default, Arc::clone);
        let verdict = self.apply_rule(
            request, &path, rule, &accepted, &bindings, keys, cache, now_ms, audit,
        );
        // A path-named endpoint without `Content-Length`: rule and credential are decided at
        // the headers; only the body's size waits for the body.
        match (size_unknown, verdict) {
            (Some(limit), Ok(Verdict::Allowed(mutations, upstream))) => {
                match self.routed_as_read(&path) {
                    Ok(()) => Ok(Verdict::NeedBody(
                        limit,
                        self.passage_of(mutations, upstream),
                    )),
                    Err(error) => self.refuse_or_read(error, request, audit, limit),
                }
            }
            (Some(limit), Err(error)) => self.refuse_or_read(error, request, audit, limit),
            (_, verdict) => verdict,
        }
    }

    /// Before the body: a refusal is sent at once, unless dry-run only reports it; then the
    /// body is read as for a passage, and the decision with it reports the refusal (the body's
    /// own checks, enforced in every mode, included).
    fn refuse_or_read(
        &self,
        error: AuthError,
        request: &Request<'_>,
        audit: &AuditRecord,
        limit: ReadLimit,
    ) -> Result<Verdict, AuthError> {
        if self.reports(&error, audit) {
            Ok(Verdict::NeedBody(
                limit,
                self.unverified_passage_of(request),
            ))
        } else {
            Err(error)
        }
    }

    /// The request's credential, from the sources the rule's providers read.
    fn credential<'r>(
        &self,
        request: &Request<'r>,
        path: &'r NormalizedPath,
        rule: &Rule,
        accepted: &'r AcceptedProviders,
    ) -> Result<Credential<'r>, AuthError> {
        let sources = accepted.source_refs();
        extract_credential(request.headers, path.query.as_deref(), &sources, self.config.max_token_bytes)?
            .ok_or_else(|| {
                AuthError::new(
                    Reason::MissingToken,
                    format!("no bearer token: rule {} needs an access token (Authorization: Bearer <token>)", rule.name),
                )
            })
    }

    /// Everything after the rule is chosen: credential, token, requirement, identity.
    #[allow(clippy::too_many_arguments)]
    fn apply_rule(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        rule: &Rule,
        accepted: &AcceptedProviders,
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
        let overrides =
            request_hygiene::headers_to_remove(request.method, &path.path, request.headers)?;
        mutations.remove_headers.extend(overrides);
        let requirement = match &rule.access {
            Access::Anonymous => {
                mutations.set_path = path.rewritten.clone();
                return Ok(Verdict::Allowed(mutations, UpstreamAction::Forward));
            }
            Access::Refuse(why) => return Err(AuthError::new(Reason::RouteDisabled, why.clone())),
            Access::Token { require, .. } => require,
        };
        let credential = self.credential(request, path, rule, accepted)?;
        let (index, verified) = self.authenticate(
            rule,
            accepted,
            &credential.token,
            request.fingerprint,
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
        if let Err(error) =
            requirement.check(&rule.name, bindings, &verified.scopes, &verified.groups)
        {
            self.report_or_refuse(error, audit)?;
        }

        let upstream = upstream::upstream_action(
            provider,
            rule,
            request.method,
            &path.path,
            &verified,
            &credential.token,
        )?;
        let identity = &config.identity;
        mutations.verified_headers = Arc::clone(&verified.headers);
        if let Some(name) = &identity.rule_header {
            mutations
                .set_headers
                .push((name.clone(), rule.name.clone()));
        }
        if !identity.publish.is_empty() {
            mutations.publish = Some(Box::new(Principal::chosen(
                &identity.publish,
                &verified,
                &provider.issuer,
                &rule.name,
            )));
        }
        // With a Databricks token of brickgate's making, the client's credential is of no use
        // upstream: it goes wherever it was read from, whatever `forward_authorization` says.
        if identity.forward_authorization && upstream == UpstreamAction::Forward {
            mutations.set_path = path.rewritten.clone();
        } else {
            remove_credential(&credential, path, &mut mutations);
        }
        Ok(Verdict::Allowed(mutations, upstream))
    }
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

/// A CORS preflight, as Envoy jwt_authn defines it: OPTIONS with `Origin` and
/// `Access-Control-Request-Method`. Browsers send it without credentials.
fn is_cors_preflight(request: &Request<'_>) -> bool {
    request.method == "OPTIONS"
        && header(request.headers, "origin").is_some()
        && header(request.headers, "access-control-request-method").is_some()
}

impl Engine {
    /// `bypass_cors_preflight`: forwarded without a token, but with the hygiene of any request
    /// (the canonical path, the method it announces spelled exactly, no method or path override,
    /// no proxy credentials), and without any credential (a preflight carries none; one that
    /// does is not trusted).
    fn cors_preflight(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        audit: &mut AuditRecord,
    ) -> Result<Verdict, AuthError> {
        audit.rule = Some(CORS_PREFLIGHT_RULE.to_string());
        let announced = header(request.headers, "access-control-request-method").unwrap_or("");
        request_hygiene::check_method(announced)?;
        let mut mutations = Mutations {
            remove_headers: headers_to_strip(request.headers, &self.config.identity.header_prefix),
            set_path: path.rewritten.clone(),
            ..Mutations::default()
        };
        if self.config.databricks.is_some() {
            databricks_hygiene(request, &mut mutations);
        }
        let overrides =
            request_hygiene::headers_to_remove(request.method, &path.path, request.headers)?;
        mutations.remove_headers.extend(overrides);
        mutations.remove_headers.push("authorization".to_string());
        Ok(Verdict::Allowed(mutations, UpstreamAction::Forward))
    }
}

/// The rule name a bypassed CORS preflight is audited under.
pub const CORS_PREFLIGHT_RULE: &str = "cors-preflight";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod body_off_tests;
#[cfg(test)]
mod databricks_tests;

#[cfg(test)]
mod dry_run_tests;

#[cfg(test)]
mod canonical_request_tests;
