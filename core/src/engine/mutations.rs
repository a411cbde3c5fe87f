//! What an allowed request becomes upstream: header and path changes, the credential's removal,
//! Databricks' header hygiene, and how it authenticates to the upstream.

use std::sync::Arc;

use super::{Request, header};
use crate::config::TokenSource;
use crate::databricks::{self, exchange::TokenRequest};
use crate::header_name::same_header_name;
use crate::identity::Principal;
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
    /// Headers this request sets (the rule's, the Databricks token, the `User-Agent`).
    pub set_headers: Vec<(String, String)>,
    /// The verified token's identity headers, shared with the verified-token cache: set
    /// after `set_headers`, without a copy per request.
    pub verified_headers: Arc<[(String, String)]>,
    pub set_path: Option<String>,
    /// The verified principal published to the filters after brickgate (`identity.publish`),
    /// before the request goes on to them.
    pub publish: Option<Box<Principal>>,
}

impl Mutations {
    /// Whether the request goes upstream as it came.
    pub fn is_empty(&self) -> bool {
        self.remove_headers.is_empty()
            && self.set_headers.is_empty()
            && self.verified_headers.is_empty()
            && self.set_path.is_none()
            && self.publish.is_none()
    }

    /// Every header these changes set, in order.
    pub fn headers_set(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set_headers
            .iter()
            .chain(self.verified_headers.iter())
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The request's headers once these changes are made, borrowed: lets the adapter replace
    /// the whole map in one host call instead of one per header, without copying a header.
    pub fn applied_pairs<'a>(&'a self, headers: &'a [(String, String)]) -> Vec<(&'a str, &'a str)> {
        let replaced = |name: &str| {
            self.remove_headers
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
                || self
                    .headers_set()
                    .any(|(s, _)| s.eq_ignore_ascii_case(name))
                || (name == ":path" && self.set_path.is_some())
        };
        let mut result = Vec::with_capacity(
            headers.len() + self.set_headers.len() + self.verified_headers.len() + 1,
        );
        result.extend(
            headers
                .iter()
                .filter(|(name, _)| !replaced(name))
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        if let Some(path) = &self.set_path {
            result.push((":path", path.as_str()));
        }
        result.extend(self.headers_set());
        result
    }

    /// [`Mutations::applied_pairs`], owned.
    pub fn applied_to(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        self.applied_pairs(headers)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

/// An allowed request's headers and the changes the verdict makes to them: the adapter
/// replaces the request's header map with [`HeaderRewrite::pairs`] in one host call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRewrite {
    pub original: Vec<(String, String)>,
    pub mutations: Mutations,
}

/// One change to the request's header map, as the proxy-wasm host makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Remove every header of this name.
    Remove(&'a str),
    /// Set `:path` (a pseudo-header is replaced where it stands, never removed).
    ReplacePath(&'a str),
    /// Append a header.
    Add(&'a str, &'a str),
}

impl HeaderRewrite {
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.mutations.applied_pairs(&self.original)
    }

    /// The same rewrite as the fewest single-header changes: a removal for each name the
    /// request carries that is removed or set, the path, then each header set. Replacing the
    /// whole map costs the host a removal and an insertion for every header the request has,
    /// and a warm request usually only gains headers. A set header is removed before it is
    /// added because a host's "replace" may keep a second copy of the name.
    pub fn edits(&self) -> Vec<HeaderEdit<'_>> {
        let m = &self.mutations;
        let mut edits = Vec::with_capacity(m.set_headers.len() + m.verified_headers.len() + 1);
        for (index, (name, _)) in self.original.iter().enumerate() {
            let earlier = self.original.get(..index).unwrap_or_default();
            let replaced = !name.starts_with(':')
                && (m
                    .remove_headers
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(name))
                    || m.headers_set().any(|(s, _)| s.eq_ignore_ascii_case(name)));
            if replaced && !earlier.iter().any(|(e, _)| e.eq_ignore_ascii_case(name)) {
                edits.push(HeaderEdit::Remove(name));
            }
        }
        if let Some(path) = &m.set_path {
            edits.push(HeaderEdit::ReplacePath(path));
        }
        edits.extend(m.headers_set().map(|(n, v)| HeaderEdit::Add(n, v)));
        edits
    }

    /// Whether the host must pick the request's route again once the edits are made. Envoy
    /// chose the route (cluster, per-route filter configs) from the headers as the client sent
    /// them, before brickgate ran; a route can match on `:path` and on any request header, so
    /// any edit may select another route, and the request must take the route of what it
    /// becomes upstream (docs/PATHS.md, "Envoy in front"). True exactly when
    /// [`HeaderRewrite::edits`] is not empty (an adapter that made the edits knows already).
    pub fn reselects_route(&self) -> bool {
        !self.edits().is_empty()
    }

    /// What the upstream receives, owned (for tests and logs).
    pub fn to_headers(&self) -> Vec<(String, String)> {
        self.mutations.applied_to(&self.original)
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

#[cfg(test)]
mod tests;
