//! Which scopes brickgate asks Databricks for when it swaps tokens (exchange and service
//! principal modes), so that the Databricks token never carries more than the caller's own
//! Databricks scopes after grants (issue 16 point 4).
//!
//! Databricks' scope semantics (the catalogue module doc, [`super::catalogue::scopes`]):
//! `all-apis` holds every service scope `S`; `S` holds `S:read` (GET and HEAD); `all-apis:read`
//! holds every `S:read`; `sql` holds `sql:restricted-query` (read-only queries) and
//! `sql:read:restricted-query` (= `sql:read` and `sql:restricted-query`). Each scope is read
//! here as (service, operations): the meet of two scopes is the same service (or the named one,
//! when the other is `all-apis`) with the operations both allow. A caller scope narrower than an
//! upstream scope is kept as the caller's, an upstream scope narrower than a caller's is kept as
//! the upstream's, and two incomparable ones give what both allow (`all-apis:read` ∧
//! `sql:read:restricted-query` = `sql:read`).
//!
//! Only Databricks' own scopes count: brickgate's `gw.` names, OIDC scopes (`openid`,
//! `offline_access`) and IdP scopes (`user_impersonation`) are not Databricks scopes and are
//! never requested. Scopes Databricks publishes as distinct names (`model-serving` and
//! `model-serving-inference`, `workspace` and the Apps name `workspace.workspace`) are distinct
//! services here: their meet is empty, the conservative reading.

use std::cell::OnceCell;

use super::catalogue::{self, RouteClass, scopes::SCOPES};
use crate::error::AuthError;
use crate::policy::{Access, Rule, match_rule};

const READ: u8 = 1;
const WRITE: u8 = 2;
/// `:restricted-query`: read-only SQL queries, for the `sql` service only.
const RESTRICTED_QUERY: u8 = 4;
const ALL_OPERATIONS: u8 = READ | WRITE | RESTRICTED_QUERY;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Service {
    AllApis,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    service: Service,
    operations: u8,
}

/// The operations a service scope without modifier allows.
fn full(service: &str) -> u8 {
    if service == "sql" {
        ALL_OPERATIONS
    } else {
        READ | WRITE
    }
}

/// A Databricks service scope brickgate knows the source of (not `all-apis`, not `gw.`).
fn is_service(name: &str) -> bool {
    name != "all-apis"
        && !name.starts_with("gw.")
        && !name.contains(':')
        && SCOPES.iter().any(|(known, _)| *known == name)
}

impl Scope {
    /// `None` for anything that is not a Databricks scope.
    fn parse(text: &str) -> Option<Scope> {
        let (service, operations) = match text {
            "all-apis" => (Service::AllApis, ALL_OPERATIONS),
            "all-apis:read" => (Service::AllApis, READ),
            "sql:restricted-query" => (Service::Named("sql".into()), RESTRICTED_QUERY),
            "sql:read:restricted-query" => (Service::Named("sql".into()), READ | RESTRICTED_QUERY),
            _ => match text.strip_suffix(":read") {
                Some(base) if is_service(base) => (Service::Named(base.into()), READ),
                Some(_) => return None,
                None if is_service(text) => (Service::Named(text.into()), full(text)),
                None => return None,
            },
        };
        Some(Scope {
            service,
            operations,
        })
    }

    /// What both scopes allow, if anything.
    fn meet(&self, other: &Scope) -> Option<Scope> {
        let service = match (&self.service, &other.service) {
            (Service::AllApis, service) | (service, Service::AllApis) => service.clone(),
            (Service::Named(a), Service::Named(b)) if a == b => self.service.clone(),
            _ => return None,
        };
        let allowed = match &service {
            Service::AllApis => ALL_OPERATIONS,
            Service::Named(name) => full(name),
        };
        let operations = self.operations & other.operations & allowed;
        (operations != 0).then_some(Scope {
            service,
            operations,
        })
    }

    fn covers(&self, other: &Scope) -> bool {
        self.meet(other).as_ref() == Some(other)
    }

    /// The scope's Databricks name; `None` for an operation set no name stands for.
    fn name(&self) -> Option<String> {
        match (&self.service, self.operations) {
            (Service::AllApis, ALL_OPERATIONS) => Some("all-apis".into()),
            (Service::AllApis, READ) => Some("all-apis:read".into()),
            (Service::AllApis, _) => None,
            (Service::Named(name), ops) if ops == full(name) => Some(name.clone()),
            (Service::Named(name), READ) => Some(format!("{name}:read")),
            (Service::Named(name), RESTRICTED_QUERY) if name == "sql" => {
                Some("sql:restricted-query".into())
            }
            (Service::Named(name), ops) if name == "sql" && ops == READ | RESTRICTED_QUERY => {
                Some("sql:read:restricted-query".into())
            }
            (Service::Named(_), _) => None,
        }
    }
}

fn parsed(scopes: &[String]) -> Vec<Scope> {
    scopes.iter().filter_map(|s| Scope::parse(s)).collect()
}

/// The largest scopes among `scopes` (none covered by another), by name, sorted: one
/// spelling per set, so equal grants share one cache key.
fn canonical(scopes: Vec<Scope>) -> Vec<String> {
    let mut names: Vec<String> = scopes
        .iter()
        .enumerate()
        .filter(|(i, scope)| {
            !scopes
                .iter()
                .enumerate()
                .any(|(j, other)| j != *i && other.covers(scope) && (other != *scope || j < *i))
        })
        .filter_map(|(_, scope)| scope.name())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The caller's Databricks scopes, each narrowed to what `upstream` (the configured
/// `upstream.scopes`) allows. Empty when the caller holds no Databricks scope that upstream
/// allows any part of.
pub fn intersect(caller: &[String], upstream: &[String]) -> Vec<String> {
    let upstream = parsed(upstream);
    let meets = parsed(caller)
        .iter()
        .flat_map(|c| upstream.iter().filter_map(move |u| c.meet(u)))
        .collect();
    canonical(meets)
}

/// Whether `scopes` hold any Databricks scope.
pub fn has_databricks_scope(scopes: &[String]) -> bool {
    scopes.iter().any(|s| Scope::parse(s).is_some())
}

/// The first of `alternatives` (least privilege first, as the catalogue lists them) that
/// `upstream` covers whole: the narrowest scope a request of that route can go with.
pub fn narrowest_covered(alternatives: &[String], upstream: &[String]) -> Option<String> {
    let upstream = parsed(upstream);
    alternatives
        .iter()
        .filter_map(|a| Scope::parse(a).map(|scope| (a, scope)))
        .find(|(_, scope)| upstream.iter().any(|u| u.covers(scope)))
        .map(|(name, _)| name.clone())
}

thread_local! {
    /// The catalogue with every class enabled: only its scopes are read from it.
    static CATALOGUE: OnceCell<Vec<Rule>> = const { OnceCell::new() };
}

/// The scopes the built-in catalogue accepts for `method path`, least privilege first; empty
/// when no catalogue route matches.
pub fn catalogue_alternatives(method: &str, path: &str) -> Vec<String> {
    CATALOGUE.with(|cell| {
        let rules = cell.get_or_init(|| catalogue::rules(&[0], &RouteClass::ALL));
        match match_rule(rules, method, path, None) {
            Ok(Some((rule, _))) => rule_alternatives(rule),
            _ => Vec::new(),
        }
    })
}

/// The scopes a rule's requirement names, `scopes_any` first (literal ones only).
pub fn rule_alternatives(rule: &Rule) -> Vec<String> {
    let Access::Token { require, .. } = &rule.access else {
        return Vec::new();
    };
    require
        .scopes_any
        .iter()
        .chain(&require.scopes_all)
        .filter(|template| template.variables().is_empty())
        .map(|template| template.0.clone())
        .collect()
}

/// What brickgate asks Databricks for on behalf of a caller holding `caller` (after grants),
/// admitted to a route whose scope alternatives are `route` (the matched rule's, or the
/// catalogue's for that request when the rule names no Databricks scope):
/// - a caller with Databricks scopes: those scopes narrowed to `upstream`; refused when none
///   survives;
/// - a caller with none (admitted by groups, roles, or brickgate's own `gw.` scopes): the
///   narrowest scope of the route that `upstream` covers; refused when there is none.
pub fn to_request(
    caller: &[String],
    route: &[String],
    upstream: &[String],
) -> Result<Vec<String>, AuthError> {
    let upstream_list = upstream.join(" ");
    if has_databricks_scope(caller) {
        let narrowed = intersect(caller, upstream);
        if narrowed.is_empty() {
            let held: Vec<&str> = caller
                .iter()
                .filter(|s| Scope::parse(s).is_some())
                .map(String::as_str)
                .collect();
            return Err(AuthError::insufficient_scope(
                format!(
                    "your Databricks scopes [{}] share nothing with the scopes brickgate may \
                     request from Databricks (upstream.scopes [{upstream_list}]): the Databricks \
                     token never carries more than your own scopes",
                    held.join(" ")
                ),
                upstream_list,
            ));
        }
        return Ok(narrowed);
    }
    narrowest_covered(route, upstream)
        .map(|scope| vec![scope])
        .ok_or_else(|| {
            AuthError::insufficient_scope(
                format!(
                    "your token holds no Databricks scope, and none of the scopes this route \
                     takes [{}] is within upstream.scopes [{upstream_list}]: brickgate cannot \
                     ask Databricks for a token narrow enough",
                    route.join(" ")
                ),
                route
                    .first()
                    .cloned()
                    .unwrap_or_else(|| upstream_list.clone()),
            )
        })
}

/// Whether `scope` is one of Databricks' own API scopes (the only ones ever requested).
pub fn is_databricks_scope(scope: &str) -> bool {
    Scope::parse(scope).is_some()
}

#[cfg(test)]
mod tests;
