//! `body_rules: buffer_filter` (docs/LIFECYCLE.md, "Rules that depend on the body"): on a
//! mesh, brickgate cannot hold the headers while it reads the body, so everything that touches
//! the headers (credential, identity headers, removals, the Databricks token) is settled at the
//! headers, from the rule that admits the request there, and only the allow or refuse waits for
//! the end of the body. Envoy's buffer filter right after brickgate holds the whole request from
//! the upstream until then. The decision made with the body is the one that counts: it must
//! allow, and with exactly the header changes already made, else the request is refused.

use super::{Engine, Mutations, Request, UpstreamAction, Verdict};
use crate::config::BodyRules;
use crate::error::{AuthError, Reason};
use crate::identity::AuditRecord;
use crate::policy::{Bindings, NormalizedPath};

/// The header changes made at the headers, before the body verdict, and how the request
/// authenticates upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    pub mutations: Mutations,
    pub upstream: UpstreamAction,
}

impl Passage {
    /// Whether the decision made with the body allows exactly what was let through at the
    /// headers. The rule-name header and the published principal's rule are left out: for a
    /// rule the body chooses, neither can be sent (the rule is not known at the headers), and
    /// they are all that may differ.
    pub fn covers(
        &self,
        mutations: &Mutations,
        upstream: &UpstreamAction,
        rule_header: Option<&str>,
    ) -> bool {
        let without_rule = |m: &Mutations| {
            let mut m = m.clone();
            m.set_headers
                .retain(|(name, _)| Some(name.as_str()) != rule_header);
            if let Some(principal) = &mut m.publish {
                principal.rule = None;
            }
            m
        };
        self.upstream == *upstream && without_rule(&self.mutations) == without_rule(mutations)
    }
}

/// The rule that admits a request at its headers, before the body chooses between rules.
pub(super) struct Admitting {
    pub index: usize,
    pub bindings: Bindings,
}

impl Engine {
    fn streams_bodies(&self) -> bool {
        self.config.body_rules == BodyRules::BufferFilter
    }

    /// Envoy chose the request's route, and with it whether its buffer filter holds the
    /// request, on the path as sent; brickgate reads and forwards the canonical path. Where the
    /// two differ (`//serving-endpoints/...`, `/x/../ai-gateway/...`, escaped letters), the
    /// route may be one the buffer filter is off on, and the headers and body would reach the
    /// upstream before the verdict. So a request whose body this mode reads must come with the
    /// canonical path, which every route that reaches the serving paths then matches as
    /// brickgate reads it.
    pub(super) fn routed_as_read(&self, path: &NormalizedPath) -> Result<(), AuthError> {
        if !self.streams_bodies() || path.rewritten.is_none() {
            return Ok(());
        }
        Err(AuthError::new(
            Reason::BadPath,
            "the request's body decides it, and its path is not in canonical form (repeated slashes, dot segments or escaped letters): with body_rules: buffer_filter Envoy picked its route, and so whether the buffer filter holds it, on the path as sent; send the path as brickgate reads it",
        ))
    }

    /// The passage of a request decided at its headers whose body is still to be read (its
    /// size, for a path-named endpoint without `Content-Length`): the same header changes.
    pub(super) fn passage_of(
        &self,
        mutations: Mutations,
        upstream: UpstreamAction,
    ) -> Option<Box<Passage>> {
        self.streams_bodies().then(|| {
            Box::new(Passage {
                mutations,
                upstream,
            })
        })
    }

    /// Dry-run reported a refusal before the body: the request goes on as unverified.
    pub(super) fn unverified_passage_of(&self, request: &Request<'_>) -> Option<Box<Passage>> {
        self.passage_of(self.unverified_passage(request), UpstreamAction::Forward)
    }

    /// The passage of a request whose body chooses its rule: that of the first rule that could
    /// admit it at the headers, without the rule-name header.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn passage_before_body(
        &self,
        request: &Request<'_>,
        path: &NormalizedPath,
        admitting: Admitting,
        keys: &crate::jwks::JwksStore,
        cache: &mut crate::cache::TokenCache,
        now_ms: crate::jwks::UnixMillis,
        audit: &AuditRecord,
    ) -> Result<Option<Box<Passage>>, AuthError> {
        if !self.streams_bodies() {
            return Ok(None);
        }
        self.routed_as_read(path)?;
        let Some(rule) = self.config.rules.get(admitting.index) else {
            return Err(AuthError::internal(
                "the admitting rule vanished from the configuration",
            ));
        };
        let accepted = self
            .accepted
            .get(admitting.index)
            .map_or_else(Default::default, std::sync::Arc::clone);
        // Its audit fields belong to the decision made with the body.
        let mut scratch = audit.clone();
        let verdict = self.apply_rule(
            request,
            path,
            rule,
            &accepted,
            &admitting.bindings,
            keys,
            cache,
            now_ms,
            &mut scratch,
        )?;
        let Verdict::Allowed(mut mutations, upstream) = verdict else {
            return Err(AuthError::internal(
                "a rule asked for the body while its passage was built",
            ));
        };
        if let Some(rule_header) = &self.config.identity.rule_header {
            mutations
                .set_headers
                .retain(|(name, _)| name != rule_header);
        }
        if let Some(principal) = &mut mutations.publish {
            principal.rule = None;
        }
        Ok(self.passage_of(mutations, upstream))
    }
}
