//! What each `body_rules` mode can decide (docs/LIFECYCLE.md, "Rules that depend on the body"):
//! the rules refused under `off`, and the orders of rules that cannot work under
//! `buffer_filter`.
//!
//! A request's body is needed to decide it in exactly two cases (`engine::evaluate`,
//! `engine::before_body`):
//!
//! - a body-form serving request (the OpenAI-compatible routes, AI Gateway POSTs) when some
//!   rule matches `serving_endpoint`: the body's `model` chooses the rule;
//! - a path-named invocation without `Content-Length`: its size is counted against the
//!   endpoint's limit.
//!
//! Under `off` the first is a configuration error (the rule is named), and the second is
//! refused at its headers (411, `AuthError::length_required`): no limit is ever given up, and
//! no request waits for a body that cannot come.

use super::{BodyRules, Config, ConfigError};
use crate::policy::{Access, PathPattern, Rule};

/// Under `body_rules: off`, the first rule that needs the request body, as an error naming it.
/// `rules` are the user's rules first, in order (their indices are `rules[i]`).
pub(super) fn refuse_body_rules(body_rules: BodyRules, rules: &[Rule]) -> Result<(), ConfigError> {
    if body_rules != BodyRules::Off {
        return Ok(());
    }
    match rules
        .iter()
        .position(|rule| matches!(rule.pattern, PathPattern::ServingEndpoint(_)))
    {
        Some(index) => Err(ConfigError::new(
            format!("rules[{index}].match.serving_endpoint"),
            "a serving-endpoint rule is chosen by the request body's `model` (OpenAI-style and \
             AI Gateway routes), and with body_rules: off the host cannot give brickgate the body; \
             use body_rules: buffer_filter with Envoy's buffer filter right after brickgate \
             (Istio, Envoy Gateway), or hold_headers on plain Envoy with \
             allow_on_headers_stop_iteration: true (docs/LIFECYCLE.md), or match these routes by \
             path",
        )),
        None => Ok(()),
    }
}

/// Valid orders of rules that the configured `body_rules` mode cannot carry out as written:
/// printed by `brickgate check`.
pub fn body_mode_warnings(config: &Config) -> Vec<String> {
    match config.body_rules {
        BodyRules::BufferFilter => anonymous_before_token(&config.rules),
        BodyRules::HoldHeaders | BodyRules::Off => Vec::new(),
    }
}

/// `buffer_filter`: a body-form request's headers go on with the header changes of the first
/// rule that admits it at its headers, and an anonymous rule admits every request. When the
/// body then selects a token rule further down, that rule would have removed the credential,
/// added identity headers or a Databricks token: changes the headers no longer allow, so the
/// request is refused with 503 `internal_error` (`stream::streaming`).
fn anonymous_before_token(rules: &[Rule]) -> Vec<String> {
    let body_form = |rule: &Rule| {
        matches!(rule.pattern, PathPattern::ServingEndpoint(_))
            && rule
                .methods
                .as_ref()
                .is_none_or(|methods| methods.iter().any(|m| m == "POST"))
    };
    let Some((anonymous, first)) = rules
        .iter()
        .enumerate()
        .find(|(_, rule)| body_form(rule) && rule.access == Access::Anonymous)
    else {
        return Vec::new();
    };
    let first = &first.name;
    rules
        .iter()
        .enumerate()
        .skip(anonymous + 1)
        .filter(|(_, rule)| body_form(rule) && matches!(rule.access, Access::Token { .. }))
        .map(|(index, rule)| {
            format!(
                "rules[{index}] ({}) needs a token but comes after the anonymous serving-endpoint \
                 rule rules[{anonymous}] ({first}): with body_rules: buffer_filter a body-form \
                 request's headers go on with the changes of the first rule that admits it at its \
                 headers, the anonymous one (credential kept, no identity headers, no Databricks \
                 token), so every token-authenticated request whose body selects {} is refused \
                 with 503 internal_error at the end of its body; put the token rules first",
                rule.name, rule.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
