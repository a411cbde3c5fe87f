//! Warnings for `brickgate check`: configurations that load but will not do what they say.
//! Here, above `databricks`, so that the Databricks modules never import the configuration.

use super::Config;
use crate::databricks::exchange::UpstreamMode;
use crate::databricks::token_scopes::{intersect, is_databricks_scope, rule_alternatives};
use crate::policy::Access;

/// Where a configuration cannot keep a swapped token within its callers' scopes, or will
/// refuse callers its rules admit: one line per provider and problem, for `brickgate check`.
pub fn configuration_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (index, provider) in config.providers.iter().enumerate() {
        let endpoint = match &provider.upstream {
            UpstreamMode::PassThrough => continue,
            UpstreamMode::Exchange { endpoint, .. } => endpoint,
            UpstreamMode::ServicePrincipal(endpoint) => {
                warnings.push(format!(
                    "provider {}: service_principal asks Databricks for each caller's own scopes \
                     (within upstream.scopes), so the OAuth secret must allow requesting a subset \
                     of its scopes; a secret whose scopes are fixed refuses narrower requests \
                     (upstream_credentials_rejected). Databricks sees one principal for every caller",
                    provider.name
                ));
                endpoint
            }
        };
        let ignored: Vec<&str> = endpoint
            .scopes
            .iter()
            .filter(|s| !is_databricks_scope(s))
            .map(String::as_str)
            .collect();
        if !ignored.is_empty() {
            warnings.push(format!(
                "provider {}: upstream.scopes [{}] are not Databricks API scopes and are never \
                 requested",
                provider.name,
                ignored.join(" ")
            ));
        }
        let mut uncovered: Vec<String> = config
            .rules
            .iter()
            .filter(|rule| {
                matches!(&rule.access, Access::Token { providers, .. } if providers.contains(&index))
            })
            .flat_map(rule_alternatives)
            .filter(|scope| {
                is_databricks_scope(scope)
                    && intersect(std::slice::from_ref(scope), &endpoint.scopes).is_empty()
            })
            .collect();
        uncovered.sort();
        uncovered.dedup();
        if !uncovered.is_empty() {
            warnings.push(format!(
                "provider {}: rules admit callers by [{}], which upstream.scopes [{}] cannot \
                 cover: callers holding only those are refused (insufficient_scope)",
                provider.name,
                uncovered.join(" "),
                endpoint.scopes.join(" ")
            ));
        }
    }
    warnings
}
