//! Dry-run: a rule, a provider or the whole plugin reports its refusals instead of sending
//! them, for rolling a policy out on live traffic. The decision is still computed, counted
//! and audited (decision `would_deny` with its reason); the request goes on.

use crate::error::Reason;

/// Which refusals are reported instead of enforced (`"mode": "dry_run"` at the top level,
/// on a rule, or on a provider).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DryRun {
    pub everything: bool,
    /// Rule names (a name covers every rule that bears it).
    pub rules: Vec<String>,
    /// Provider names: refusals of tokens whose issuer names one of these providers.
    pub providers: Vec<String>,
}

impl DryRun {
    /// Whether a refusal for this reason, decided under this rule and provider (as far as
    /// the decision got), is reported instead of enforced.
    pub fn covers(&self, reason: Reason, rule: Option<&str>, provider: Option<&str>) -> bool {
        if !reportable(reason) {
            return false;
        }
        self.everything
            || rule.is_some_and(|rule| self.rules.iter().any(|r| r == rule))
            || provider.is_some_and(|provider| self.providers.iter().any(|p| p == provider))
    }

    pub fn is_off(&self) -> bool {
        !self.everything && self.rules.is_empty() && self.providers.is_empty()
    }
}

/// Refusals that protect the upstream from a request it would read otherwise than brickgate
/// (a path or body brickgate could not read, a method override, two credentials) or that are
/// gateway faults are enforced whatever the mode: dry-run is for policy, not for hygiene.
fn reportable(reason: Reason) -> bool {
    !matches!(
        reason,
        Reason::Internal
            | Reason::Overloaded
            | Reason::BadPath
            | Reason::BadHeader
            | Reason::BadBody
            | Reason::BodyTooLarge
            | Reason::BodyTimeout
            | Reason::LengthRequired
            | Reason::MethodOverride
            | Reason::BadMethod
            | Reason::PathOverride
            | Reason::MultipleTokens
            | Reason::ExchangeRejected
            | Reason::ExchangeFailed
    )
}

/// `enforce` (default) or `dry_run`; `Err` holds the problem for the field.
pub(super) fn parse_mode(mode: Option<&str>) -> Result<bool, String> {
    match mode {
        None | Some("enforce") => Ok(false),
        Some("dry_run") => Ok(true),
        Some(other) => Err(format!(
            "{:?} is not one of enforce, dry_run",
            crate::error::echo(other)
        )),
    }
}
