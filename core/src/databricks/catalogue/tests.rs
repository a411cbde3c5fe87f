//! The catalogue's scope semantics, and its coverage of every route in the Databricks Go SDK.

use std::collections::BTreeMap;

use super::*;
use crate::policy::match_rule;

fn decide(rules: &[Rule], method: &str, path: &str, scopes: &[&str]) -> Result<String, String> {
    let (rule, bindings) = match_rule(rules, method, path, None)
        .map_err(|conflict| format!("{conflict:?}"))?
        .ok_or("no rule")?;
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    match &rule.access {
        Access::Anonymous => Ok(rule.name.clone()),
        Access::Refuse(why) => Err(format!("refused: {why}")),
        Access::Token { require, .. } => require
            .check(&rule.name, &bindings, &scopes, &[])
            .map(|()| rule.name.clone())
            .map_err(|e| e.detail),
    }
}

#[test]
fn scope_matrix_follows_databricks_semantics() {
    let rules = rules(&[0], false);
    let cases: &[(&str, &str, &[&str], bool)] = &[
        // all-apis satisfies everything
        ("POST", "/api/2.1/clusters/create", &["all-apis"], true),
        ("GET", "/api/2.0/some-future-api/x", &["all-apis"], true),
        // a service scope satisfies its routes, reads and writes
        ("POST", "/api/2.1/clusters/create", &["clusters"], true),
        ("GET", "/api/2.1/clusters/list", &["clusters"], true),
        ("POST", "/api/2.1/clusters/create", &["jobs"], false),
        // S:read satisfies GET/HEAD reads only
        ("GET", "/api/2.1/clusters/get", &["clusters:read"], true),
        (
            "HEAD",
            "/api/2.0/fs/files/Volumes/c/s/v/f.csv",
            &["files:read"],
            true,
        ),
        (
            "POST",
            "/api/2.1/clusters/create",
            &["clusters:read"],
            false,
        ),
        // POST reads are not `:read` (Databricks refuses them too)
        (
            "POST",
            "/api/2.1/clusters/events",
            &["clusters:read"],
            false,
        ),
        (
            "POST",
            "/api/2.0/mlflow/runs/search",
            &["mlflow:read"],
            false,
        ),
        ("POST", "/api/2.0/mlflow/runs/search", &["mlflow"], true),
        (
            "GET",
            "/api/2.0/mlflow/experiments/get",
            &["mlflow:read"],
            true,
        ),
        // version wildcards
        ("GET", "/api/2.0/jobs/list", &["jobs:read"], true),
        ("GET", "/api/2.2/jobs/runs/get", &["jobs:read"], true),
        ("POST", "/api/2.2/jobs/run-now", &["jobs"], true),
        ("POST", "/api/2.2/jobs/run-now", &["jobs:read"], false),
        // serving
        (
            "POST",
            "/serving-endpoints/fraud/invocations",
            &["model-serving"],
            true,
        ),
        (
            "POST",
            "/serving-endpoints/chat/completions",
            &["serving.serving-endpoints"],
            true,
        ),
        (
            "POST",
            "/serving-endpoints/fraud/invocations",
            &["model-serving:read"],
            false,
        ),
        (
            "GET",
            "/api/2.0/serving-endpoints/fraud",
            &["model-serving:read"],
            true,
        ),
        // SQL and Unity Catalog
        (
            "POST",
            "/api/2.0/sql/statements",
            &["sql:restricted-query"],
            true,
        ),
        ("GET", "/api/2.0/sql/warehouses", &["sql:read"], true),
        (
            "POST",
            "/api/2.0/sql/warehouses/w1/start",
            &["sql:read"],
            false,
        ),
        (
            "GET",
            "/api/2.1/unity-catalog/catalogs",
            &["unity-catalog:read"],
            true,
        ),
        (
            "PATCH",
            "/api/2.1/unity-catalog/permissions/table/x",
            &["unity-catalog:read"],
            false,
        ),
        // a secret's value is never a read
        ("GET", "/api/2.0/secrets/list", &["gw.secrets:read"], true),
        ("GET", "/api/2.0/secrets/get", &["gw.secrets:read"], false),
        // SCIM Me: any valid token
        ("GET", "/api/2.0/preview/scim/v2/Me", &["sql"], true),
        ("GET", "/api/2.0/preview/scim/v2/Users", &["sql"], false),
        // unknown /api/** needs all-apis
        ("GET", "/api/2.0/some-future-api/x", &["clusters"], false),
        // OAuth endpoints pass without a token
        ("POST", "/oidc/v1/token", &[], true),
        ("GET", "/.well-known/databricks-config", &[], true),
    ];
    for (method, path, scopes, allowed) in cases {
        let got = decide(&rules, method, path, scopes);
        assert_eq!(
            got.is_ok(),
            *allowed,
            "{method} {path} with {scopes:?}: {got:?}"
        );
    }
}

#[test]
fn credential_minting_and_code_execution_are_refused_unless_enabled() {
    let sensitive = [
        ("POST", "/api/2.0/token/create"),
        ("POST", "/api/2.0/token-management/on-behalf-of/tokens"),
        ("POST", "/api/1.2/commands/execute"),
        ("POST", "/api/2.0/global-init-scripts"),
    ];
    for (method, path) in sensitive {
        let refused = decide(&rules(&[0], false), method, path, &["all-apis"]).unwrap_err();
        assert!(
            refused.contains("allow_sensitive_routes"),
            "{path}: {refused}"
        );
        assert!(
            decide(&rules(&[0], true), method, path, &["all-apis"]).is_ok(),
            "{path}"
        );
    }
    assert!(
        decide(
            &rules(&[0], false),
            "GET",
            "/api/2.0/token/list",
            &["authentication:read"]
        )
        .is_ok()
    );
}

const SDK_ROUTES: &str =
    include_str!("../../../../tests/data/databricks-rest-routes-from-sdk-go.tsv");
const REPORT: &str = "docs/databricks-route-coverage.md";

/// Walks every route of the Databricks Go SDK through the catalogue and writes which family
/// covers it and which fall to the `all-apis` default. The committed report must be current:
/// refresh it with `BRICKGATE_BLESS=1 cargo test route_coverage`.
#[test]
fn route_coverage_of_the_go_sdk() {
    let rules = rules(&[0], false);
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut defaults: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut total, mut covered) = (0, 0);
    for line in SDK_ROUTES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("scope\t"))
    {
        let fields: Vec<&str> = line.split('\t').collect();
        let (Some(method), Some(path)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let path = path.replace("{}", "x1");
        total += 1;
        let (rule, _) = match_rule(&rules, method, &path, None)
            .unwrap()
            .expect("every /api route has a rule");
        *by_rule.entry(rule.name.clone()).or_default() += 1;
        if rule.name == DEFAULT_RULE {
            let family: String = path.split('/').take(4).collect::<Vec<_>>().join("/");
            defaults
                .entry(family)
                .or_default()
                .push(format!("{method} {path}"));
        } else {
            covered += 1;
        }
    }
    let mut report =
        String::from("# Databricks route catalogue: coverage of the Go SDK's routes\n\n");
    report.push_str("Generated by `cargo test route_coverage` from `tests/data/databricks-rest-routes-from-sdk-go.tsv`.\n\n");
    report.push_str(&format!("{covered} of {total} SDK routes match a catalogue family; the other {} need `all-apis` (the default rule).\n\n", total - covered));
    report.push_str("| rule | routes |\n|---|---:|\n");
    for (rule, count) in &by_rule {
        report.push_str(&format!("| `{rule}` | {count} |\n"));
    }
    report.push_str("\n## Routes that fall to the default (`all-apis`), by family\n\n| family | routes |\n|---|---:|\n");
    for (family, routes) in &defaults {
        report.push_str(&format!("| `{family}` | {} |\n", routes.len()));
    }
    assert!(
        covered * 100 / total >= 60,
        "catalogue covers only {covered} of {total}"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(REPORT);
    if std::env::var_os("BRICKGATE_BLESS").is_some() {
        std::fs::write(&path, &report).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == report,
        "{REPORT} is stale: run BRICKGATE_BLESS=1 cargo test route_coverage"
    );
}
