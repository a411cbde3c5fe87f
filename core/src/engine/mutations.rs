//! What an allowed request becomes upstream: header and path changes, the credential's removal,
//! Databricks' header hygiene, and how it authenticates to the upstream.

use super::{Request, header};
use crate::config::TokenSource;
use crate::databricks::{self, exchange::TokenRequest};
use crate::header_name::same_header_name;
use crate::policy::NormalizedPath;
use crate::token::Credential;

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

/// With `forward_authorization: false`, the credential never reaches the upstream.
pub(super) fn remove_credential(
    credential: &Credential,
    path: &NormalizedPath,
    mutations: &mut Mutations,
) {
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
pub(super) fn databricks_hygiene(request: &Request<'_>, mutations: &mut Mutations) {
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
