//! The catalogue's table: each Databricks route, the methods and scopes it needs and its
//! class, in match order. The compile logic in `catalogue.rs` turns it into rules.

mod data_and_compute;
mod workspace_and_identity;

use super::RouteClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Methods {
    /// GET and HEAD.
    Read,
    /// POST, PUT, PATCH and DELETE.
    Write,
    /// POST, PUT and PATCH: creating or changing, not deleting.
    Change,
    /// Every method but DELETE: reads, creations and updates return the resource.
    NotDelete,
    Post,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Satisfied by `S:read` and `all-apis:read` too.
    Read,
    /// Reads, writes, executions: `S` or `all-apis`.
    Full,
    /// Mints credentials or runs arbitrary code: refused unless its class is enabled, then
    /// `S` or `all-apis`.
    Sensitive(RouteClass),
    /// Any valid token (SCIM `Me`, which every Databricks scope includes).
    AnyScope,
    Anonymous,
}

/// (template, methods, scopes (first is the service scope; `|` adds alternatives), class).
pub(super) type Entry = (&'static str, Methods, &'static str, Class);

/// Every entry. Order matters: the first match wins, so specific routes come before their
/// family; the table is split in two files only to keep them readable, in this order.
pub(super) fn entries() -> impl Iterator<Item = &'static Entry> {
    data_and_compute::ENTRIES
        .iter()
        .chain(workspace_and_identity::ENTRIES)
}
