use super::*;
use crate::config::{Config, configuration_warnings};
use crate::error::Reason;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn caller_scopes_are_narrowed_to_upstream_scopes_in_databricks_lattice() {
    // (caller scopes after grants, upstream.scopes) → requested
    let cases: &[(&[&str], &[&str], &[&str])] = &[
        // the issue's two cases: restrictions survive the swap
        (
            &["sql:restricted-query"],
            &["all-apis"],
            &["sql:restricted-query"],
        ),
        (&["clusters:read"], &["all-apis"], &["clusters:read"]),
        // a caller scope narrower than the upstream's is kept as the caller's
        (
            &["sql:restricted-query"],
            &["sql"],
            &["sql:restricted-query"],
        ),
        (&["jobs:read"], &["jobs"], &["jobs:read"]),
        (&["clusters:read"], &["all-apis:read"], &["clusters:read"]),
        // an upstream scope narrower than the caller's is kept as the upstream's
        (&["all-apis"], &["sql", "jobs:read"], &["jobs:read", "sql"]),
        (
            &["sql"],
            &["sql:read:restricted-query"],
            &["sql:read:restricted-query"],
        ),
        (&["all-apis"], &["all-apis:read"], &["all-apis:read"]),
        // incomparable: what both allow
        (
            &["sql:read:restricted-query"],
            &["all-apis:read"],
            &["sql:read"],
        ),
        (&["all-apis:read"], &["sql:restricted-query"], &[]),
        (&["sql:read"], &["sql:restricted-query"], &[]),
        // other services, and names that are not Databricks scopes, give nothing
        (&["clusters"], &["sql"], &[]),
        (
            &["openid", "user_impersonation", "gw.workspace-admin"],
            &["all-apis"],
            &[],
        ),
        (&["model-serving-inference"], &["model-serving"], &[]),
        (&["clusters:restricted-query"], &["all-apis"], &[]),
        // several caller scopes: each narrowed, covered ones folded into the larger
        (
            &["clusters:read", "clusters", "sql:restricted-query"],
            &["all-apis"],
            &["clusters", "sql:restricted-query"],
        ),
        (&["all-apis", "jobs"], &["all-apis"], &["all-apis"]),
        (&["jobs", "jobs"], &["all-apis"], &["jobs"]),
    ];
    for (caller, upstream, expected) in cases {
        assert_eq!(
            intersect(&strings(caller), &strings(upstream)),
            strings(expected),
            "{caller:?} ∧ {upstream:?}"
        );
    }
}

#[test]
fn one_spelling_per_scope_set() {
    let upstream = strings(&["all-apis"]);
    assert_eq!(
        intersect(
            &strings(&["sql:restricted-query", "clusters:read"]),
            &upstream
        ),
        intersect(
            &strings(&["clusters:read", "sql:restricted-query", "clusters:read"]),
            &upstream
        ),
    );
}

#[test]
fn callers_without_databricks_scopes_get_the_routes_narrowest_scope() {
    let route = strings(&["clusters:read", "clusters", "all-apis:read", "all-apis"]);
    // (upstream.scopes) → requested for a caller admitted by its groups alone
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["all-apis"], Some("clusters:read")),
        (&["clusters"], Some("clusters:read")),
        (&["all-apis:read"], Some("clusters:read")),
        (&["sql"], None),
    ];
    for (upstream, expected) in cases {
        let got = to_request(&strings(&["admins-only"]), &route, &strings(upstream));
        match expected {
            Some(scope) => assert_eq!(got.unwrap(), strings(&[scope]), "{upstream:?}"),
            None => {
                let error = got.unwrap_err();
                assert_eq!(error.reason, Reason::InsufficientScope);
                assert!(
                    error.detail.contains("holds no Databricks scope"),
                    "{}",
                    error.detail
                );
            }
        }
    }
    // brickgate's own `gw.` names are skipped for the route's Databricks alternative
    let admin = strings(&[
        "gw.workspace-admin:read",
        "gw.workspace-admin",
        "all-apis:read",
        "all-apis",
    ]);
    assert_eq!(
        to_request(&[], &admin, &strings(&["all-apis"])).unwrap(),
        strings(&["all-apis:read"])
    );
}

#[test]
fn callers_whose_scopes_upstream_cannot_honour_are_refused_with_the_reason() {
    let error = to_request(
        &strings(&["clusters", "openid"]),
        &strings(&["clusters"]),
        &strings(&["sql"]),
    )
    .unwrap_err();
    assert_eq!(error.reason, Reason::InsufficientScope);
    assert_eq!(error.to_response("r").status, 403);
    assert!(
        error.detail.contains("[clusters]") && error.detail.contains("upstream.scopes [sql]"),
        "{}",
        error.detail
    );
}

#[test]
fn the_catalogue_names_each_routes_scopes_least_privilege_first() {
    let cases = [
        ("GET", "/api/2.1/clusters/list", "clusters:read"),
        ("POST", "/api/2.0/sql/statements", "sql"),
        ("POST", "/api/2.0/unknown-service/thing", "all-apis"),
        ("GET", "/api/2.0/workspace-conf", "gw.workspace-admin:read"),
    ];
    for (method, path, first) in cases {
        let alternatives = catalogue_alternatives(method, path);
        assert_eq!(
            alternatives.first().map(String::as_str),
            Some(first),
            "{method} {path}"
        );
    }
    assert!(catalogue_alternatives("GET", "/not-databricks").is_empty());
}

#[test]
fn check_warns_where_a_configuration_cannot_honour_the_callers_scopes() {
    let config = |mode: &str, scopes: &[&str]| {
        let jwks: serde_json::Value =
            serde_json::from_str(include_str!("../../../../tests/keys/public-jwks.json")).unwrap();
        let mut upstream = serde_json::json!({"mode": mode, "cluster": "ws", "workspace_url": "https://ws.example", "scopes": scopes});
        if mode == "service_principal" {
            upstream["client_id"] = "sp".into();
            upstream["client_secret"] = "secret".into();
        }
        let raw = serde_json::json!({
            "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}, "upstream": upstream}},
            "rules": [], "databricks": {"route_catalogue": true}, "allow_inline_secrets": true
        });
        Config::from_json(raw.to_string().as_bytes()).unwrap()
    };
    // (mode, upstream.scopes) → a warning containing each text
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("exchange", &["all-apis"], &[]),
        (
            "exchange",
            &["sql", "openid"],
            &[
                "[openid] are not Databricks API scopes",
                " clusters clusters:read ",
                "refused (insufficient_scope)",
            ],
        ),
        (
            "service_principal",
            &["all-apis"],
            &["subset of its scopes"],
        ),
    ];
    for (mode, scopes, expected) in cases {
        let warnings = configuration_warnings(&config(mode, scopes));
        assert_eq!(
            warnings.is_empty(),
            expected.is_empty(),
            "{mode} {scopes:?}: {warnings:?}"
        );
        for text in *expected {
            assert!(
                warnings.iter().any(|w| w.contains(text)),
                "{mode} {scopes:?}: {text} not in {warnings:?}"
            );
        }
    }
}
