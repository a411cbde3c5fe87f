//! How an allowed request authenticates to Databricks: forwarded as it came, or with a token
//! brickgate obtains for it, carrying no more than the caller's own Databricks scopes.

use super::mutations::UpstreamAction;
use crate::config::Provider;
use crate::databricks::exchange::{FederatedCaller, UpstreamMode};
use crate::databricks::token_scopes::{self, catalogue_alternatives, rule_alternatives};
use crate::error::{AuthError, Reason};
use crate::identity::{FederatedSubject, Verified};
use crate::policy::Rule;

/// The request `method path` was admitted by `rule` for the holder of `verified` (its
/// `token`, from `provider`).
pub(super) fn upstream_action(
    provider: &Provider,
    rule: &Rule,
    method: &str,
    path: &str,
    verified: &Verified,
    token: &str,
) -> Result<UpstreamAction, AuthError> {
    let endpoint = match &provider.upstream {
        UpstreamMode::PassThrough => return Ok(UpstreamAction::Forward),
        UpstreamMode::Exchange { endpoint, .. } | UpstreamMode::ServicePrincipal(endpoint) => {
            endpoint
        }
    };
    let scopes = token_scopes::to_request(
        &verified.scopes,
        &route_alternatives(rule, method, path, &verified.scopes),
        &endpoint.scopes,
    )?;
    Ok(UpstreamAction::Fetch(match &provider.upstream {
        UpstreamMode::Exchange { subject_claim, .. } => {
            let (subject, audiences) = federated_subject(&verified.federated_subject)?;
            let caller = FederatedCaller {
                issuer: &provider.issuer,
                audiences,
                subject_claim,
                subject,
                subject_token: token,
            };
            endpoint.exchange(&caller, &scopes)
        }
        _ => endpoint.client_credentials(&provider.name, &scopes),
    }))
}

/// The scopes the request's route takes, least privilege first: only needed for a caller
/// without Databricks scopes. The rule's own when it names Databricks scopes, otherwise
/// (a rule on groups alone) the built-in catalogue's for this request.
fn route_alternatives(rule: &Rule, method: &str, path: &str, caller: &[String]) -> Vec<String> {
    if token_scopes::has_databricks_scope(caller) {
        return Vec::new();
    }
    let own = rule_alternatives(rule);
    if token_scopes::has_databricks_scope(&own) {
        return own;
    }
    catalogue_alternatives(method, path)
}

/// The mapped subject an exchange is cached under, and the token's audiences; no exchange
/// without a subject.
fn federated_subject(subject: &FederatedSubject) -> Result<(&str, &[String]), AuthError> {
    match subject {
        FederatedSubject::Claim { subject, audiences } => Ok((subject, audiences)),
        FederatedSubject::Unusable(why) => Err(AuthError::new(Reason::MissingSubject, why.clone())),
        FederatedSubject::NotExchanged => Err(AuthError::new(
            Reason::MissingSubject,
            "the token was verified for a provider that does not exchange tokens",
        )),
    }
}
