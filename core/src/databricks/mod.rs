//! Databricks specifics: the built-in route catalogue, serving endpoints named in request
//! bodies, how requests authenticate to Databricks (pass-through, token exchange, service
//! principal), and the header hygiene that keeps Databricks' own audit trail meaningful.

pub mod catalogue;
pub mod exchange;
pub mod serving;
pub mod upstream_tokens;

/// The `databricks` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabricksConfig {
    pub route_catalogue: bool,
    /// PAT minting, token management, command execution and global init scripts.
    pub allow_sensitive_routes: bool,
    /// Providers the catalogue's rules accept (indices into `Config::providers`).
    pub catalogue_providers: Vec<usize>,
    /// Largest request body read to find the serving endpoint (`model`) of OpenAI-style routes.
    pub max_body_bytes: usize,
    /// How long a request held for its body waits for the host's first body callback before
    /// brickgate concludes the host never delivers it (and refuses).
    pub first_body_wait_ms: u64,
}

/// Client-sent headers that carry extra credentials, or identity that something downstream
/// might trust (Databricks Apps' forwarded-identity headers).
pub const STRIPPED_HEADERS: [&str; 8] = [
    "x-databricks-azure-sp-management-token",
    "x-databricks-azure-workspace-resource-id",
    "x-databricks-gcp-sa-access-token",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-forwarded-groups",
];

/// The upstream `User-Agent`: the client's, then `brickgate/<version> req/<request id>`, the
/// one field a Databricks audit row (`user_agent`) always records, so it joins with ours.
pub fn user_agent(client: Option<&str>, request_id: Option<&str>) -> String {
    let ours = format!(
        "brickgate/{} req/{}",
        crate::VERSION,
        request_id.unwrap_or("-")
    );
    match client.map(str::trim).filter(|ua| !ua.is_empty()) {
        Some(client) => format!("{client} {ours}"),
        None => ours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_keeps_the_client_and_names_the_request() {
        let version = crate::VERSION;
        assert_eq!(
            user_agent(Some("databricks-sdk-py/0.40.0 python/3.11"), Some("r-1")),
            format!("databricks-sdk-py/0.40.0 python/3.11 brickgate/{version} req/r-1")
        );
        assert_eq!(user_agent(None, None), format!("brickgate/{version} req/-"));
    }
}
