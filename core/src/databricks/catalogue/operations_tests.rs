//! The facts file, `operations.tsv`: every Go SDK operation with the scope a Databricks source
//! states for it (or `undocumented`), its `:read` eligibility, and the catalogue's fallback with
//! the reason. The test checks the catalogue against every stated scope, operation by operation,
//! and that the fallback column is what the catalogue decides today. `make route-coverage`
//! (`BRICKGATE_BLESS=1`) rewrites the fallback columns and keeps the stated ones.

use std::collections::BTreeMap;

use super::*;
use crate::policy::match_rule;

const SDK_ROUTES: &str =
    include_str!("../../../../tests/data/databricks-rest-routes-from-sdk-go.tsv");
const FACTS: &str = include_str!("operations.tsv");
const FACTS_PATH: &str = "core/src/databricks/catalogue/operations.tsv";
const UNDOCUMENTED: &str = "undocumented";

const HEADER: &str = "\
# Every operation of databricks/databricks-sdk-go @1ff3c785425fbb6ad4c96c50c538231fce761996
# (tests/data/databricks-rest-routes-from-sdk-go.tsv), with the API scope a Databricks source
# states for it. `scope` is filled only from a source read by whoever filled it (`source`: the page
# URL, or SDK file@commit); otherwise `undocumented`. Databricks' per-operation pages
# (docs.databricks.com/api/workspace/<service>/<operation>, \"API scopes: ...\") and the full scope
# lists (docs.databricks.com/api/workspace/scopes, /api/account/scopes) could not be read from the
# machine that wrote this file, and neither SDK annotates operations with scopes, so every scope is
# `undocumented` until someone who can read those pages fills it in; the unit test then checks the
# catalogue against it.
# `read_eligible`: `read` when a `<scope>:read` token may call it: GET and HEAD only, per
# https://docs.databricks.com/aws/en/dev-tools/auth/scope-modifiers (a POST is never a `:read`
# call there, whatever it does). `fallback`: the catalogue rule deciding the operation and the
# scopes it accepts; `reason`: why (the family's scope source, the route class, or the default).
# Columns: method\tpath\tservice\toperation\tscope\tread_eligible\tsource\tfallback\treason
";

struct Operation {
    method: String,
    /// As the SDK list writes it, `{}` per path parameter.
    path: String,
    service: String,
    operation: String,
}

fn sdk_operations() -> Vec<Operation> {
    SDK_ROUTES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("scope\t"))
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Some(Operation {
                method: f.get(1)?.to_string(),
                path: f.get(2)?.to_string(),
                service: format!("{}.{}", f.get(3)?, f.get(4)?),
                operation: f.get(5)?.to_string(),
            })
        })
        .collect()
}

/// (method, path) → (scope, source) of the committed file's stated scopes.
fn stated() -> BTreeMap<(String, String), (String, String)> {
    FACTS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Some((
                (f.first()?.to_string(), f.get(1)?.to_string()),
                (f.get(4)?.to_string(), f.get(6)?.to_string()),
            ))
        })
        .collect()
}

fn scopes_accepted(rule: &Rule) -> Vec<String> {
    match &rule.access {
        Access::Token { require, .. } => require.scopes_any.iter().map(|s| s.0.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The catalogue's decision for one operation: (fallback column, reason column).
fn fallback(refused: &[Rule], enabled: &[Rule], method: &str, path: &str) -> (String, String) {
    let Ok(Some((rule, _))) = match_rule(refused, method, path, None) else {
        return ("none".into(), "no catalogue rule".into());
    };
    if rule.name.starts_with(DEFAULT_RULE) {
        let accepted = scopes_accepted(rule).join("|");
        return (
            format!("{} {accepted}", rule.name),
            "outside every catalogue family: no Databricks source read here states its scope, \
             so it needs all-apis (all-apis:read for GET/HEAD)"
                .into(),
        );
    }
    if let Access::Refuse(_) = rule.access {
        let class = route_class(method, path).map_or("?", |c| c.name());
        let on = match_rule(enabled, method, path, None)
            .ok()
            .flatten()
            .map(|(r, _)| scopes_accepted(r).join("|"))
            .unwrap_or_default();
        return (
            format!("{} refused ({class}); enabled: {on}", rule.name),
            format!("route class {class}: refused unless enabled"),
        );
    }
    let accepted = scopes_accepted(rule);
    let family = rule
        .name
        .strip_prefix("databricks:")
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default();
    let source = scopes::source(family).unwrap_or_else(|| "no scope source".into());
    (
        format!("{} {}", rule.name, accepted.join("|")),
        format!("catalogue family {family} (scope source: {source})"),
    )
}

/// The file as the catalogue and the stated scopes make it now.
fn facts_file() -> String {
    let refused = rules(&[0], &[]);
    let enabled = rules(&[0], &RouteClass::ALL);
    let stated = stated();
    let mut out = String::from(HEADER);
    for op in sdk_operations() {
        let concrete = op.path.replace("{}", "x1");
        let (scope, source) = stated
            .get(&(op.method.clone(), op.path.clone()))
            .cloned()
            .unwrap_or_else(|| (UNDOCUMENTED.into(), "-".into()));
        let read = if matches!(op.method.as_str(), "GET" | "HEAD") {
            "read"
        } else {
            "no"
        };
        let (fallback, reason) = fallback(&refused, &enabled, &op.method, &concrete);
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{scope}\t{read}\t{source}\t{fallback}\t{reason}\n",
            op.method, op.path, op.service, op.operation
        ));
    }
    out
}

/// Every operation resolves in the catalogue to the scope the facts file states for it (and, for
/// a `read` operation, to its `:read` too); the file lists every SDK operation once and is current.
#[test]
fn route_coverage_facts_every_operation_resolves_to_its_stated_scope() {
    let current = facts_file();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(FACTS_PATH);
    if std::env::var_os("BRICKGATE_BLESS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let rules = rules(&[0], &RouteClass::ALL);
    let mut mismatches = Vec::new();
    let mut rows = 0;
    for line in committed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        rows += 1;
        let f: Vec<&str> = line.split('\t').collect();
        let (method, path, scope, read) = (f[0], f[1].replace("{}", "x1"), f[4], f[5]);
        if scope == UNDOCUMENTED {
            continue;
        }
        let (rule, _) = match_rule(&rules, method, &path, None).unwrap().unwrap();
        let accepted = scopes_accepted(rule);
        let mut wanted = vec![scope.to_string()];
        if read == "read" && !scope.contains(':') {
            wanted.push(format!("{scope}:read"));
        }
        for want in wanted {
            if !accepted.contains(&want) {
                mismatches.push(format!(
                    "{method} {path}: stated {want}, rule {}",
                    rule.name
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(rows, sdk_operations().len(), "one row per SDK operation");
    assert!(
        committed == current,
        "{FACTS_PATH} is stale: run make route-coverage"
    );
}

/// For docs/databricks-route-coverage.md: counts per scope source, and every operation outside a
/// catalogue family with its reason.
pub(super) fn facts_summary() -> String {
    let refused = rules(&[0], &[]);
    let enabled = rules(&[0], &RouteClass::ALL);
    let stated = stated();
    let (mut page, mut sdk, mut undocumented) = (0, 0, 0);
    let mut outside = String::new();
    for op in sdk_operations() {
        match stated.get(&(op.method.clone(), op.path.clone())) {
            Some((scope, _)) if scope == UNDOCUMENTED => undocumented += 1,
            Some((_, source)) if source.starts_with("http") => page += 1,
            Some(_) => sdk += 1,
            None => undocumented += 1,
        }
        let concrete = op.path.replace("{}", "x1");
        let (fallback, reason) = fallback(&refused, &enabled, &op.method, &concrete);
        if fallback.starts_with(DEFAULT_RULE) {
            outside.push_str(&format!(
                "| `{} {}` | {}.{} | {reason} |\n",
                op.method, op.path, op.service, op.operation
            ));
        }
    }
    format!(
        "\n## Facts file\n\n`core/src/databricks/catalogue/operations.tsv`: the scope each \
         operation's Databricks source states. Page-stated: {page}; SDK-stated: {sdk}; \
         undocumented (no source readable here): {undocumented}.\n\n\
         ## Operations outside every catalogue family\n\n| operation | SDK | reason |\n|---|---|---|\n{outside}"
    )
}
