//! Review R1: an `/api/` path that stacks API versions or `preview/` segments before its family
//! (`/api/2.0/preview/preview/token/create`) is no spelling Databricks serves, and no catalogue
//! family matches it; it is refused `bad_path` rather than falling to the `all-apis` default.
//! So is the serving data plane under `/api/`, where no endpoint rule would see it.

use super::*;

/// (method, path) → reason, for an `all-apis` caller with no route class enabled.
#[test]
fn stacked_versions_and_previews_are_refused_not_defaulted() {
    let engine = engine(json!({"mode": "pass_through"}));
    let admin = format!("Bearer {}", token(json!({"scope": "all-apis"})));
    let cases: &[(&str, &str, Option<&str>)] = &[
        // The canonical spellings: the class decides.
        ("POST", "/api/2.0/token/create", Some("route_disabled")),
        (
            "POST",
            "/api/2.0/preview/token/create",
            Some("route_disabled"),
        ),
        ("POST", "/api/2.1/token/create", Some("route_disabled")),
        ("POST", "/api/v2.0/token/create", Some("route_disabled")),
        // Stacked versions and previews: no Databricks spelling.
        (
            "POST",
            "/api/2.0/preview/preview/token/create",
            Some("bad_path"),
        ),
        ("POST", "/api/2.0/2.1/token/create", Some("bad_path")),
        (
            "POST",
            "/api/2.0/preview/2.1/token/create",
            Some("bad_path"),
        ),
        ("POST", "/api/preview/2.0/token/create", Some("bad_path")),
        ("POST", "/api/preview/token/create", Some("bad_path")),
        ("POST", "/api/Preview/2.0/token/create", Some("bad_path")),
        (
            "POST",
            "/api/2.0/Preview/preview/token/create",
            Some("bad_path"),
        ),
        ("POST", "/api/2.0/v2.1/token/create", Some("bad_path")),
        ("POST", "/api/2.0/2/token/create", Some("bad_path")),
        ("POST", "/api/foo/2.0/token/create", Some("bad_path")),
        ("POST", "/api/foo/preview/token/create", Some("bad_path")),
        (
            "POST",
            "/api/warehouses/v1/2.0/token/create",
            Some("bad_path"),
        ),
        (
            "GET",
            "/api/2.0/preview/preview/secrets/get",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.1/2.1/unity-catalog/temporary-table-credentials",
            Some("bad_path"),
        ),
        // No version at all.
        ("POST", "/api/token/create", Some("bad_path")),
        ("GET", "/api/secrets/get", Some("bad_path")),
        ("POST", "/api/2.0token/create", Some("bad_path")),
        // Escaped and dot-segment forms of the same stack normalise to it first.
        (
            "POST",
            "/api/2.0/pr%65view/preview/token/create",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.0/preview/x/../preview/token/create",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.0//preview/preview/token/create",
            Some("bad_path"),
        ),
        // The serving data plane spelled under /api/ would escape the endpoint's own rules.
        (
            "POST",
            "/api/2.0/serving-endpoints/fraud/invocations",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.1/preview/serving-endpoints/fraud/served-models/m/invocations",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.0/serving-endpoints/fraud/Invocations",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.0/serving-endpoints/chat/completions",
            Some("bad_path"),
        ),
        (
            "POST",
            "/api/2.0/ai-gateway/mlflow/v1/chat/completions",
            Some("bad_path"),
        ),
        ("PUT", "/api/2.0/serving-endpoints/fraud/config", None),
        ("PUT", "/api/2.0/serving-endpoints/fraud/ai-gateway", None),
        // Legitimate shapes are untouched.
        ("GET", "/api/2.0/preview/scim/v2/Me", None),
        ("GET", "/api/warehouses/v1/warehouses", None),
        ("GET", "/api/2.0/clusters/list", None),
        (
            "PUT",
            "/api/2.0/fs/files/Volumes/main/default/vol/preview/2.0/v1.csv",
            None,
        ),
        ("GET", "/api/2.0", None),
        ("GET", "/api/2.0/preview", None),
    ];
    for (method, path, reason) in cases {
        let decision = decide(
            &engine,
            method,
            path,
            &[("authorization", &admin)],
            Some(b""),
        );
        assert_eq!(decision.audit().reason, *reason, "{method} {path}");
    }
}
