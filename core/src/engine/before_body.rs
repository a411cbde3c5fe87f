//! Credentials before bodies. A request whose serving endpoint is named in its body (the
//! OpenAI-compatible routes, AI Gateway POSTs) cannot have its rule chosen before the body has
//! arrived, but its credential can be judged at the headers: against every rule the body's
//! `model` could select. When none of them could admit it (no, malformed, forged or expired
//! token, another issuer or audience, or scopes and groups that no candidate accepts whatever
//! endpoint the body names) it is refused at once and its body is never read, so clients without
//! a usable credential cannot hold request bodies in the VM (`databricks.max_held_body_bytes`).
//! Only the choice between the rules that could admit it waits for the body; the decision with
//! the body is made in full again, and is the one that counts.

use std::sync::Arc;

use super::passage::Admitting;
use super::{Engine, ReadLimit, Request};
use crate::cache::TokenCache;
use crate::config::BodyRules;
use crate::databricks::body_limits::{self, BodyCheck, ServingBodyLimits};
use crate::databricks::serving;
use crate::error::{AuthError, Reason};
use crate::identity::AuditRecord;
use crate::jwks::{JwksStore, UnixMillis};
use crate::policy::{Access, Bindings, NormalizedPath, PathPattern, Rule, Segment, normalize_path};
use crate::request_hygiene;

/// A rule the body could select, and what it binds.
enum Candidate<'a> {
    /// A path rule: its bindings come from the path, known now.
    Path(Bindings),
    /// A serving-endpoint rule naming the endpoint variable `{name}`: bound by the body.
    AnyEndpoint(&'a str),
    /// A serving-endpoint rule naming one endpoint: no bindings.
    OneEndpoint,
}

impl Engine {
    /// Whether deciding this request needs its body, and how much of it brickgate reads: what
    /// a stream that waits for keys at the headers reads meanwhile (its body may end while it
    /// waits, and the host delivers each byte once).
    pub fn body_read_limit(&self, request: &Request<'_>) -> Option<ReadLimit> {
        let path = normalize_path(request.path).ok()?;
        if self.config.bypass_cors_preflight && super::is_cors_preflight(request) {
            return None;
        }
        if self.endpoint_in_body(request.method, &path.path) {
            return Some(self.model_read_limit());
        }
        let endpoint = serving::endpoint(request.method, &path.path, None)?;
        self.size_to_read(request, endpoint).ok().flatten()
    }

    pub(super) fn endpoint_in_body(&self, method: &str, path: &str) -> bool {
        self.config.reads_model_from_body && serving::endpoint_in_body(method, path)
    }

    pub(super) fn serving_limits(&self) -> &ServingBodyLimits {
        match self.config.databricks.as_ref() {
            Some(databricks) => &databricks.serving_body_limits,
            None => &self.default_serving_limits,
        }
    }

    /// How much of a body is read to find its `model`.
    pub(super) fn model_read_limit(&self) -> ReadLimit {
        let max_bytes = self.serving_limits().other;
        ReadLimit {
            max_bytes,
            too_large: AuthError::body_too_large(max_bytes),
        }
    }

    /// For a request to `endpoint`: the body still to count against the endpoint's limit (no
    /// `Content-Length`, none read yet), or a refusal when it is too large.
    pub(super) fn size_to_read(
        &self,
        request: &Request<'_>,
        endpoint: &str,
    ) -> Result<Option<ReadLimit>, AuthError> {
        let declared = body_limits::declared_length(request.headers);
        let limit = self.serving_limits().limit_for(endpoint);
        match body_limits::check(limit, request.body, declared) {
            BodyCheck::Fits => Ok(None),
            BodyCheck::TooLarge(refusal) => Err(refusal),
            // The host gives brickgate no body: the limit cannot be counted, so a size only
            // the body would tell is refused at the headers rather than waited for.
            BodyCheck::Read(limit) if self.config.body_rules == BodyRules::Off => {
                Err(AuthError::length_required(limit.max_bytes))
            }
            BodyCheck::Read(limit) => Ok(Some(ReadLimit {
                max_bytes: limit.max_bytes,
                too_large: limit.refusal(None),
            })),
        }
    }

    /// The first rule the body could select that might admit this request's credential;
    /// otherwise the refusal of the first such rule (a wait for keys first, so the stream waits
    /// at the headers and is judged again once they arrive), its audit fields filled.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admits_without_body(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<Admitting, AuthError> {
        // Refused whatever rule applies.
        request_hygiene::headers_to_remove(request.method, &path.path, request.headers)?;
        let candidates = self.body_candidates(request.method, &path.path);
        let mut key_wait = None;
        let mut first_refusal = None;
        for (index, candidate) in &candidates {
            let Some(rule) = self.config.rules.get(*index) else {
                continue;
            };
            let mut attempt = audit.clone();
            attempt.rule = Some(rule.name.clone());
            let error = match self.could_admit(
                request,
                path,
                *index,
                rule,
                candidate,
                keys,
                cache,
                now_ms,
                &mut attempt,
            ) {
                Ok(bindings) => {
                    return Ok(Admitting {
                        index: *index,
                        bindings,
                    });
                }
                Err(error) => error,
            };
            let slot = if matches!(error.reason, Reason::KeysUnavailable | Reason::UnknownKid) {
                &mut key_wait
            } else {
                &mut first_refusal
            };
            if slot.is_none() {
                *slot = Some((error, attempt));
            }
        }
        let Some((mut error, attempt)) = key_wait.or(first_refusal) else {
            return Err(super::no_matching_rule(request.method, &path.path));
        };
        *audit = attempt;
        error.detail.push_str(
            "; judged at the headers against every rule the body's \"model\" could select, so the body was not read",
        );
        Err(error)
    }

    /// The rules the body's `model` could select, in order: every serving-endpoint rule for
    /// the method up to the first rule the path alone selects, then that rule.
    fn body_candidates(&self, method: &str, path: &str) -> Vec<(usize, Candidate<'_>)> {
        let rules = &self.config.rules;
        // A path whose reading decides its rule is refused with the body unless an endpoint
        // rule before it is chosen: no path rule can admit it, every endpoint rule may.
        let by_path = self
            .rule_index
            .match_rule(rules, method, path, None)
            .ok()
            .flatten();
        let end = by_path.as_ref().map_or(rules.len(), |(index, ..)| *index);
        let fits_method = |rule: &Rule| {
            rule.methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m == method))
        };
        let mut candidates: Vec<(usize, Candidate<'_>)> = self
            .endpoint_rules
            .iter()
            .copied()
            .take_while(|index| *index < end)
            .filter_map(|index| {
                let rule = rules.get(index).filter(|rule| fits_method(rule))?;
                let candidate = match &rule.pattern {
                    PathPattern::ServingEndpoint(Segment::Variable(name)) => {
                        Candidate::AnyEndpoint(name.as_str())
                    }
                    _ => Candidate::OneEndpoint,
                };
                Some((index, candidate))
            })
            .collect();
        if let Some((index, _, bindings)) = by_path {
            candidates.push((index, Candidate::Path(bindings)));
        }
        candidates
    }

    /// Whether this rule might admit the request, whatever endpoint the body names: the
    /// bindings it would admit it with.
    #[allow(clippy::too_many_arguments)]
    fn could_admit(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        index: usize,
        rule: &Rule,
        candidate: &Candidate<'_>,
        keys: &JwksStore,
        cache: &mut TokenCache,
        now_ms: UnixMillis,
        audit: &mut AuditRecord,
    ) -> Result<Bindings, AuthError> {
        let require = match &rule.access {
            Access::Anonymous => return Ok(Vec::new()),
            Access::Refuse(why) => return Err(AuthError::new(Reason::RouteDisabled, why.clone())),
            Access::Token { require, .. } => require,
        };
        let accepted = self
            .accepted
            .get(index)
            .map_or_else(Default::default, Arc::clone);
        let credential = self.credential(request, path, rule, &accepted)?;
        let (_, verified) = self.authenticate(
            rule,
            &accepted,
            &credential.token,
            request.fingerprint,
            keys,
            cache,
            now_ms,
            audit,
        )?;
        audit.principal_kind = Some(verified.kind.as_str());
        let (scopes, groups) = (&verified.scopes, &verified.groups);
        let variable = match candidate {
            Candidate::Path(bindings) => {
                return require
                    .check(&rule.name, bindings, scopes, groups)
                    .map(|()| bindings.clone());
            }
            Candidate::OneEndpoint => {
                return require
                    .check(&rule.name, &Vec::new(), scopes, groups)
                    .map(|()| Vec::new());
            }
            Candidate::AnyEndpoint(variable) => *variable,
        };
        // The endpoint is not known yet: try every value a held scope gives the variable
        // (`serving:{name}` and a held `serving:churn` give `churn`); unbound, the check fails
        // with the templates named as written.
        let unbound = require.check(&rule.name, &Vec::new(), scopes, groups);
        if unbound.is_ok() {
            return Ok(Vec::new());
        }
        let marker = format!("{{{variable}}}");
        let templates = require.scopes_all.iter().chain(&require.scopes_any);
        for template in templates {
            let Some((before, after)) = template.0.split_once(&marker) else {
                continue;
            };
            for scope in scopes {
                let value = scope
                    .strip_prefix(before)
                    .and_then(|rest| rest.strip_suffix(after));
                let Some(value) = value.filter(|v| !v.is_empty()) else {
                    continue;
                };
                let bindings = vec![(variable.to_string(), value.to_string())];
                if require.check(&rule.name, &bindings, scopes, groups).is_ok() {
                    return Ok(bindings);
                }
            }
        }
        unbound.map(|()| Vec::new())
    }
}

#[cfg(test)]
mod tests;
