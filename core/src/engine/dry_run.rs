//! Dry-run (`"mode": "dry_run"`): a refusal the configuration only reports becomes a passage
//! whose audit record says `would_deny`, with the reason, status and detail the refusal would
//! have had. Identity headers go upstream only when the token verified.

use super::mutations::databricks_hygiene;
use super::{Engine, Mutations, Request};
use crate::error::AuthError;
use crate::identity::{AuditRecord, headers_to_strip};

/// The audit record's decision for a reported refusal.
pub const WOULD_DENY: &str = "would_deny";

impl Engine {
    /// Whether this refusal is only reported, as far as the decision got (rule, provider).
    pub(super) fn reports(&self, error: &AuthError, audit: &AuditRecord) -> bool {
        let dry_run = &self.config.dry_run;
        !dry_run.is_off()
            && dry_run.covers(
                error.reason,
                audit.rule.as_deref(),
                audit.provider.as_deref(),
            )
    }

    /// After the token verified (the requirement failed): report the refusal and go on
    /// building the passage, identity included; otherwise refuse.
    pub(super) fn report_or_refuse(
        &self,
        error: AuthError,
        audit: &mut AuditRecord,
    ) -> Result<(), AuthError> {
        if !self.reports(&error, audit) {
            return Err(error);
        }
        mark_would_deny(audit, error);
        Ok(())
    }

    /// A refusal reported before anything verified: the request goes on as the client sent
    /// it, less the identity headers only brickgate may set.
    pub(super) fn unverified_passage(&self, request: &Request<'_>) -> Mutations {
        let mut mutations = Mutations {
            remove_headers: headers_to_strip(request.headers, &self.config.identity.header_prefix),
            ..Mutations::default()
        };
        if self.config.databricks.is_some() {
            databricks_hygiene(request, &mut mutations);
        }
        mutations
    }
}

/// The record of a reported refusal: what would have been answered, and why.
pub(super) fn mark_would_deny(audit: &mut AuditRecord, error: AuthError) {
    audit.decision = WOULD_DENY;
    audit.reason = Some(error.reason.as_str());
    audit.status = error.reason.status();
    audit.detail = Some(error.detail);
}
