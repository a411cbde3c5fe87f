//! The catalogue's scope semantics, and its coverage of every route in the Databricks Go SDK.

use std::collections::BTreeMap;

use super::RouteClass::{
    CloudCredentials, CodeExecution, DatabaseCredentials, OauthSecretsAndFederation,
    PersonalAccessTokens, SecretValues, SharingTokens,
};
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
    let rules = rules(&[0], &[]);
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
        ("GET", "/api/2.0/secrets/list", &["secrets:read"], true),
        ("GET", "/api/2.0/secrets/list", &["gw.secrets:read"], false),
        ("GET", "/api/2.0/secrets/get", &["secrets:read"], false),
        // all-apis:read: any GET/HEAD, never a write
        ("GET", "/api/2.1/clusters/get", &["all-apis:read"], true),
        (
            "GET",
            "/api/2.0/some-future-api/x",
            &["all-apis:read"],
            true,
        ),
        (
            "HEAD",
            "/api/2.0/fs/files/Volumes/c/s/v/f",
            &["all-apis:read"],
            true,
        ),
        (
            "POST",
            "/api/2.1/clusters/create",
            &["all-apis:read"],
            false,
        ),
        (
            "POST",
            "/api/2.0/some-future-api/x",
            &["all-apis:read"],
            false,
        ),
        (
            "GET",
            "/api/2.0/preview/scim/v2/Users",
            &["all-apis:read"],
            true,
        ),
        // sql:restricted-query: statements and the drivers' Thrift endpoints only
        (
            "POST",
            "/sql/1.0/warehouses/abc",
            &["sql:restricted-query"],
            true,
        ),
        (
            "POST",
            "/sql/protocolv1/o/123/0101-abc",
            &["sql:restricted-query"],
            true,
        ),
        (
            "GET",
            "/api/2.0/sql/statements/s1",
            &["sql:restricted-query"],
            true,
        ),
        (
            "GET",
            "/api/2.0/sql/warehouses",
            &["sql:restricted-query"],
            false,
        ),
        (
            "GET",
            "/api/2.0/sql/warehouses",
            &["sql:read:restricted-query"],
            true,
        ),
        (
            "POST",
            "/api/2.0/sql/statements",
            &["sql:read:restricted-query"],
            true,
        ),
        (
            "POST",
            "/api/2.0/sql/warehouses/w1/start",
            &["sql:read:restricted-query"],
            false,
        ),
        ("POST", "/sql/1.0/warehouses/abc", &["sql"], true),
        ("POST", "/sql/1.0/warehouses/abc", &["clusters"], false),
        // served models and the AI gateway
        (
            "POST",
            "/serving-endpoints/fraud/served-models/v2/invocations",
            &["model-serving"],
            true,
        ),
        (
            "POST",
            "/serving-endpoints/fraud/served-models/v2/invocations",
            &["sql"],
            false,
        ),
        (
            "GET",
            "/ai-gateway/mlflow/v1/models",
            &["ai-gateway:read"],
            true,
        ),
        (
            "POST",
            "/ai-gateway/mlflow/v1/chat/completions",
            &["ai-gateway"],
            true,
        ),
        (
            "POST",
            "/ai-gateway/mlflow/v1/chat/completions",
            &["ai-gateway:read"],
            false,
        ),
        // authentication: OAuth secret and federation-policy reads
        (
            "GET",
            "/api/2.0/accounts/servicePrincipals/7/credentials/secrets",
            &["authentication:read"],
            true,
        ),
        (
            "GET",
            "/api/2.0/accounts/a1/federationPolicies",
            &["authentication"],
            true,
        ),
        (
            "DELETE",
            "/api/2.0/accounts/a1/federationPolicies/p1",
            &["authentication"],
            true,
        ),
        (
            "DELETE",
            "/api/2.0/accounts/a1/federationPolicies/p1",
            &["clusters"],
            false,
        ),
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
fn credential_minting_and_code_execution_are_refused_unless_their_class_is_enabled() {
    let cases: &[(&str, &str, RouteClass)] = &[
        ("POST", "/api/2.0/token/create", PersonalAccessTokens),
        (
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            PersonalAccessTokens,
        ),
        ("POST", "/api/1.2/commands/execute", CodeExecution),
        ("POST", "/api/2.0/global-init-scripts", CodeExecution),
        (
            "POST",
            "/spark.connect.SparkConnectService/ExecutePlan",
            CodeExecution,
        ),
        (
            "POST",
            "/api/2.0/accounts/servicePrincipals/7/credentials/secrets",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/accounts/a1/servicePrincipals/7/credentials/secrets",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/accounts/a1/federationPolicies",
            OauthSecretsAndFederation,
        ),
        (
            "PATCH",
            "/api/2.0/accounts/a1/federationPolicies/p1",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/accounts/a1/servicePrincipals/7/federationPolicies",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/data-sharing/recipients/r1/federation-policies",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/credentials-manager/exchange-tokens/token",
            OauthSecretsAndFederation,
        ),
        (
            "POST",
            "/api/2.0/unity-catalog/temporary-table-credentials",
            CloudCredentials,
        ),
        (
            "POST",
            "/api/2.0/unity-catalog/temporary-volume-credentials",
            CloudCredentials,
        ),
        (
            "POST",
            "/api/2.0/unity-catalog/temporary-path-credentials",
            CloudCredentials,
        ),
        (
            "POST",
            "/api/2.1/unity-catalog/temporary-service-credentials",
            CloudCredentials,
        ),
        ("POST", "/api/2.0/database/credentials", DatabaseCredentials),
        ("POST", "/api/2.0/postgres/credentials", DatabaseCredentials),
        ("GET", "/api/2.0/secrets/get", SecretValues),
        ("GET", "/api/2.1/unity-catalog/secrets/s1", SecretValues),
        (
            "POST",
            "/api/2.1/unity-catalog/recipients/r1/rotate-token",
            SharingTokens,
        ),
        (
            "GET",
            "/api/2.1/unity-catalog/public/data_sharing_activation/x",
            SharingTokens,
        ),
    ];
    for (method, path, class) in cases {
        let refused = decide(&rules(&[0], &[]), method, path, &["all-apis"]).unwrap_err();
        let setting = format!(
            "databricks.enable_route_classes includes \"{}\"",
            class.name()
        );
        assert!(refused.contains(&setting), "{path}: {refused}");
        assert_eq!(route_class(method, path), Some(*class), "{path}");
        let others: Vec<RouteClass> = RouteClass::ALL.into_iter().filter(|c| c != class).collect();
        assert!(
            decide(&rules(&[0], &others), method, path, &["all-apis"]).is_err(),
            "{path}"
        );
        assert!(
            decide(&rules(&[0], &[*class]), method, path, &["all-apis"]).is_ok(),
            "{path}"
        );
        // never with a `:read` scope, even when enabled
        assert!(
            decide(&rules(&[0], &[*class]), method, path, &["all-apis:read"]).is_err(),
            "{path}"
        );
    }
    assert!(
        decide(
            &rules(&[0], &[]),
            "GET",
            "/api/2.0/token/list",
            &["authentication:read"]
        )
        .is_ok()
    );
}

/// Routes whose name says they mint a credential, a token or a secret, or execute commands,
/// but which brickgate reviewed and does not refuse by default, with the reason.
const REVIEWED_NOT_MINTING: &[(&str, &str, &str)] = &[
    (
        "GET",
        "",
        "reads metadata or lists; no secret value is returned",
    ),
    ("DELETE", "", "revokes or deletes; mints nothing"),
    ("POST", "/api/2.0/token/delete", "revokes a token"),
    (
        "POST",
        "/api/2.0/secrets/",
        "writes or deletes secrets and ACLs; never returns a value",
    ),
    (
        "POST",
        "/api/2.0/sql/statements",
        "SQL under the caller's own grants (`sql` scope)",
    ),
    (
        "POST",
        "/api/2.0/genie/",
        "Genie runs SQL under the caller's own grants (`genie` scope)",
    ),
    (
        "POST",
        "/api/1.2/commands/cancel",
        "code execution family (refused)",
    ),
    (
        "POST",
        "/api/2.0/git-credentials",
        "stores a Git token for the caller; mints nothing",
    ),
    (
        "PATCH",
        "/api/2.0/git-credentials/",
        "updates a stored Git token; mints nothing",
    ),
    (
        "POST",
        "/api/2.1/unity-catalog/credentials",
        "registers a cloud identity; returns no secret",
    ),
    (
        "PATCH",
        "/api/2.1/unity-catalog/credentials/",
        "updates a registered cloud identity",
    ),
    (
        "POST",
        "/api/2.1/unity-catalog/storage-credentials",
        "registers a cloud identity",
    ),
    (
        "PATCH",
        "/api/2.1/unity-catalog/storage-credentials/",
        "updates a registered cloud identity",
    ),
    (
        "POST",
        "/api/2.1/unity-catalog/validate-",
        "validates a registered credential",
    ),
    (
        "POST",
        "/api/2.1/unity-catalog/secrets",
        "stores a secret; returns no value",
    ),
    (
        "PATCH",
        "/api/2.1/unity-catalog/secrets/",
        "updates a secret; returns no value",
    ),
    (
        "POST",
        "/api/2.0/accounts/x1/credentials",
        "account cloud credential configuration (all-apis)",
    ),
    (
        "POST",
        "/api/2.0/accounts/x1/metastores/x1/storage-credentials",
        "registers a cloud identity",
    ),
    (
        "PUT",
        "/api/2.0/accounts/x1/metastores/x1/storage-credentials/",
        "updates a cloud identity",
    ),
    (
        "PATCH",
        "/api/2.0/token/",
        "changes a token's comment or lifetime only",
    ),
    (
        "PATCH",
        "/api/2.0/token-management/",
        "PAT admin family (refused)",
    ),
    (
        "PUT",
        "/api/2.0/permissions/authorization/tokens",
        "who may create tokens (access-management)",
    ),
    (
        "PATCH",
        "/api/2.0/permissions/authorization/tokens",
        "who may create tokens (access-management)",
    ),
];

/// Walks every route of the Go SDK whose SDK method or path says it mints a credential, a
/// token or a secret, or executes commands: each is either in a refused-by-default class or
/// reviewed above. A new SDK route of that kind fails here until someone decides.
#[test]
fn every_sdk_route_that_sounds_like_minting_is_classified() {
    let words = ["credential", "token", "secret", "execute", "command"];
    let mut unclassified = Vec::new();
    let mut walked = 0;
    for (_, method, path, sdk_method) in sdk_routes() {
        let name = format!("{path} {sdk_method}").to_ascii_lowercase();
        if !words.iter().any(|w| name.contains(w)) {
            continue;
        }
        walked += 1;
        if route_class(&method, &path).is_some() {
            continue;
        }
        let reviewed = REVIEWED_NOT_MINTING
            .iter()
            .any(|(m, prefix, _)| *m == method && path.starts_with(prefix));
        if !reviewed {
            unclassified.push(format!("{method} {path} ({sdk_method})"));
        }
    }
    assert!(walked >= 70, "the SDK route list shrank: {walked}");
    assert!(
        unclassified.is_empty(),
        "classify these routes: {unclassified:#?}"
    );
}

#[test]
fn every_scope_in_the_catalogue_cites_its_source() {
    let missing: Vec<String> = scope_names()
        .into_iter()
        .filter(|s| scopes::source(s).is_none())
        .collect();
    assert!(missing.is_empty(), "scopes without a source: {missing:?}");
    for (name, _) in scopes::SCOPES {
        let ours = name.starts_with("gw.");
        assert_eq!(
            ours,
            scopes::source(name).unwrap() == scopes::GW_OWN,
            "{name}"
        );
    }
}

const SDK_ROUTES: &str =
    include_str!("../../../../tests/data/databricks-rest-routes-from-sdk-go.tsv");
const REPORT: &str = "docs/databricks-route-coverage.md";

/// (scope column, method, path with `{}` replaced, SDK method).
fn sdk_routes() -> Vec<(String, String, String, String)> {
    SDK_ROUTES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("scope\t"))
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                f.get(2)?.replace("{}", "x1"),
                f.get(5).copied().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The scopes a rule accepts, for the report.
fn accepted(rule: &Rule) -> String {
    match &rule.access {
        Access::Anonymous => "none (anonymous)".into(),
        Access::Refuse(_) => "refused by default".into(),
        Access::Token { require, .. } if require.scopes_any.is_empty() => "any valid token".into(),
        Access::Token { require, .. } => require
            .scopes_any
            .iter()
            .map(|s| format!("`{}`", s.0))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Walks every route of the Databricks Go SDK through the catalogue and writes, per SDK route
/// family (service), the rule and scopes that decide it. The committed report must be current:
/// refresh it with `make route-coverage` (`BRICKGATE_BLESS=1 cargo test -p brickgate-core
/// route_coverage`).
#[test]
fn route_coverage_of_the_go_sdk() {
    let refused = rules(&[0], &[]);
    let enabled = rules(&[0], &RouteClass::ALL);
    let mut families: BTreeMap<(String, String), BTreeMap<(String, String), usize>> =
        BTreeMap::new();
    let (mut total, mut covered) = (0, 0);
    for line in SDK_ROUTES
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("scope\t"))
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (Some(host), Some(method), Some(path), Some(package), Some(service)) =
            (f.first(), f.get(1), f.get(2), f.get(3), f.get(4))
        else {
            continue;
        };
        let path = path.replace("{}", "x1");
        total += 1;
        let (rule, _) = match_rule(&refused, method, &path, None)
            .unwrap()
            .expect("every /api route has a rule");
        if !rule.name.starts_with(DEFAULT_RULE) {
            covered += 1;
        }
        let scopes = match &rule.access {
            Access::Refuse(_) => {
                let (on, _) = match_rule(&enabled, method, &path, None).unwrap().unwrap();
                format!("refused by default; when enabled: {}", accepted(on))
            }
            _ => accepted(rule),
        };
        *families
            .entry((format!("{host} {package}.{service}"), String::new()))
            .or_default()
            .entry((rule.name.clone(), scopes))
            .or_default() += 1;
    }
    let mut report =
        String::from("# Databricks route catalogue: coverage of the Go SDK's routes\n\n");
    report.push_str("Generated by `make route-coverage` (`BRICKGATE_BLESS=1 cargo test -p brickgate-core route_coverage`) from `tests/data/databricks-rest-routes-from-sdk-go.tsv`; `cargo test` fails when it is stale.\n\n");
    report.push_str(&format!("{covered} of {total} SDK routes match a catalogue family; the other {} fall to the default rules (`all-apis`, or `all-apis:read` for GET/HEAD).\n\n", total - covered));
    report.push_str("Per SDK route family (host, SDK package.service): the rule that decides its routes, the scopes that rule accepts, and how many routes.\n\n");
    report.push_str("| family | rule | scopes accepted | routes |\n|---|---|---|---:|\n");
    for ((family, _), by_rule) in &families {
        for ((rule, scopes), count) in by_rule {
            report.push_str(&format!("| {family} | `{rule}` | {scopes} | {count} |\n"));
        }
    }
    report.push_str("\n## Scope names and their sources\n\n| scope | source |\n|---|---|\n");
    for scope in scope_names() {
        report.push_str(&format!(
            "| `{scope}` | {} |\n",
            scopes::source(&scope).unwrap_or_default()
        ));
    }
    report
        .push_str("\n## Route classes refused by default\n\n| class | what it does |\n|---|---|\n");
    for class in RouteClass::ALL {
        report.push_str(&format!("| `{}` | {} |\n", class.name(), class.what()));
    }
    report.push_str(&super::walk_tests::walk_summary());
    report.push_str(&super::operations_tests::facts_summary());
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
        "{REPORT} is stale: run make route-coverage"
    );
}
