//! The built-in catalogue of Databricks REST routes and the scopes they need, following
//! Databricks' own semantics: `all-apis` satisfies everything; a service scope `S` satisfies
//! its routes; `S:read` satisfies only GET and HEAD reads. Routes that mint credentials or run
//! arbitrary code are refused unless the configuration enables them; any other `/api/**`
//! route needs `all-apis`. Scope names prefixed `gw.` are brickgate's own, for services
//! Databricks publishes no scope for (see docs/DATABRICKS.md).

use crate::policy::{Access, PathPattern, Requirement, Rule, ScopeTemplate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Methods {
    /// GET and HEAD.
    Read,
    /// POST, PUT, PATCH and DELETE.
    Write,
    Post,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Satisfied by `S:read` too.
    Read,
    /// Reads, writes, executions: `S` or `all-apis`.
    Full,
    /// Mints credentials or runs arbitrary code: refused unless enabled, then `S` or `all-apis`.
    Sensitive,
    /// Any valid token (SCIM `Me`, which every Databricks scope includes).
    AnyScope,
    Anonymous,
}

use Class::{Anonymous, AnyScope, Full, Read, Sensitive};
use Methods::{Any, Post, Write};

/// (template, methods, scopes (first is the service scope; `|` adds alternatives), class).
/// Order matters: the first match wins, so specific routes come before their family.
const ENTRIES: &[(&str, Methods, &str, Class)] = &[
    ("/oidc/**", Any, "", Anonymous),
    (
        "/.well-known/databricks-config",
        Methods::Read,
        "",
        Anonymous,
    ),
    // Model serving and AI gateway
    (
        "/serving-endpoints/{name}/invocations",
        Post,
        "model-serving|serving.serving-endpoints",
        Full,
    ),
    (
        "/serving-endpoints/chat/completions",
        Post,
        "model-serving|serving.serving-endpoints",
        Full,
    ),
    (
        "/serving-endpoints/completions",
        Post,
        "model-serving|serving.serving-endpoints",
        Full,
    ),
    (
        "/serving-endpoints/embeddings",
        Post,
        "model-serving|serving.serving-endpoints",
        Full,
    ),
    (
        "/serving-endpoints/responses",
        Post,
        "model-serving|serving.serving-endpoints",
        Full,
    ),
    ("/ai-gateway/**", Post, "ai-gateway", Full),
    (
        "/api/2.0/serving-endpoints/**",
        Methods::Read,
        "model-serving",
        Read,
    ),
    (
        "/api/2.0/serving-endpoints/**",
        Write,
        "model-serving",
        Full,
    ),
    // Vector search, AI search, Genie, dashboards, apps
    (
        "/api/2.0/vector-search/**",
        Methods::Read,
        "vector-search",
        Read,
    ),
    ("/api/2.0/vector-search/**", Write, "vector-search", Full),
    ("/api/2.0/ai-search/**", Methods::Read, "ai-search", Read),
    ("/api/2.0/ai-search/**", Write, "ai-search", Full),
    (
        "/api/2.0/genie/**",
        Methods::Read,
        "genie|dashboards.genie",
        Read,
    ),
    ("/api/2.0/genie/**", Write, "genie|dashboards.genie", Full),
    ("/api/2.0/lakeview/**", Methods::Read, "dashboards", Read),
    ("/api/2.0/lakeview/**", Write, "dashboards", Full),
    ("/api/2.0/apps/**", Methods::Read, "apps", Read),
    ("/api/2.0/apps/**", Write, "apps", Full),
    ("/api/2.0/apps-settings/**", Methods::Read, "apps", Read),
    ("/api/2.0/apps-settings/**", Write, "apps", Full),
    // SQL
    (
        "/api/2.0/sql/statements",
        Post,
        "sql|sql:restricted-query",
        Full,
    ),
    (
        "/api/2.0/sql/statements/{id}/cancel",
        Post,
        "sql|sql:restricted-query",
        Full,
    ),
    (
        "/api/2.0/sql/statements/**",
        Methods::Read,
        "sql|sql:restricted-query",
        Read,
    ),
    ("/api/2.0/sql/alerts/**", Methods::Read, "alerts", Read),
    ("/api/2.0/sql/alerts/**", Write, "alerts", Full),
    (
        "/api/2.0/preview/sql/alerts/**",
        Methods::Read,
        "alerts",
        Read,
    ),
    ("/api/2.0/preview/sql/alerts/**", Write, "alerts", Full),
    ("/api/2.0/sql/**", Methods::Read, "sql", Read),
    ("/api/2.0/sql/**", Write, "sql", Full),
    ("/api/2.0/preview/sql/**", Any, "sql", Full),
    ("/api/warehouses/v1/**", Methods::Read, "sql", Read),
    ("/api/warehouses/v1/**", Write, "sql", Full),
    // Unity Catalog and Delta Sharing
    (
        "/api/2.[01]/unity-catalog/**",
        Methods::Read,
        "unity-catalog",
        Read,
    ),
    ("/api/2.[01]/unity-catalog/**", Write, "unity-catalog", Full),
    (
        "/api/2.[01]/data-sharing/**",
        Methods::Read,
        "unity-catalog",
        Read,
    ),
    ("/api/2.[01]/data-sharing/**", Write, "unity-catalog", Full),
    // Jobs, pipelines, compute
    ("/api/2.[012]/jobs/**", Methods::Read, "jobs", Read),
    ("/api/2.[012]/jobs/**", Write, "jobs", Full),
    ("/api/2.0/pipelines/**", Methods::Read, "pipelines", Read),
    ("/api/2.0/pipelines/**", Write, "pipelines", Full),
    ("/api/2.[01]/clusters/**", Methods::Read, "clusters", Read),
    ("/api/2.[01]/clusters/**", Write, "clusters", Full),
    ("/api/2.0/libraries/**", Methods::Read, "clusters", Read),
    ("/api/2.0/libraries/**", Write, "clusters", Full),
    (
        "/api/2.0/instance-pools/**",
        Methods::Read,
        "gw.compute-admin",
        Read,
    ),
    (
        "/api/2.0/instance-pools/**",
        Write,
        "gw.compute-admin",
        Full,
    ),
    (
        "/api/2.0/policies/**",
        Methods::Read,
        "gw.compute-admin",
        Read,
    ),
    ("/api/2.0/policies/**", Write, "gw.compute-admin", Full),
    (
        "/api/2.0/policy-families/**",
        Methods::Read,
        "gw.compute-admin",
        Read,
    ),
    (
        "/api/2.0/instance-profiles/**",
        Methods::Read,
        "gw.compute-admin",
        Read,
    ),
    (
        "/api/2.0/instance-profiles/**",
        Write,
        "gw.compute-admin",
        Full,
    ),
    (
        "/api/2.0/global-init-scripts/**",
        Any,
        "gw.workspace-admin",
        Sensitive,
    ),
    (
        "/api/1.2/contexts/**",
        Any,
        "gw.command-execution",
        Sensitive,
    ),
    (
        "/api/1.2/commands/**",
        Any,
        "gw.command-execution",
        Sensitive,
    ),
    // MLflow
    ("/api/[23].0/mlflow/**", Methods::Read, "mlflow", Read),
    ("/api/[23].0/mlflow/**", Write, "mlflow", Full),
    ("/api/2.0/feature-store/**", Any, "gw.feature-store", Full),
    (
        "/api/2.0/feature-engineering/**",
        Any,
        "gw.feature-store",
        Full,
    ),
    // Workspace objects, repos, secrets, files
    (
        "/api/2.0/workspace/**",
        Methods::Read,
        "workspace.workspace",
        Read,
    ),
    ("/api/2.0/workspace/**", Write, "workspace.workspace", Full),
    ("/api/2.0/repos/**", Methods::Read, "gw.repos", Read),
    ("/api/2.0/repos/**", Write, "gw.repos", Full),
    ("/api/2.0/git-credentials/**", Any, "gw.repos", Full),
    // A secret's value is never a `:read`.
    ("/api/2.0/secrets/get", Methods::Read, "gw.secrets", Full),
    ("/api/2.0/secrets/**", Methods::Read, "gw.secrets", Read),
    ("/api/2.0/secrets/**", Write, "gw.secrets", Full),
    ("/api/2.0/fs/**", Methods::Read, "files|files.files", Read),
    ("/api/2.0/fs/**", Write, "files|files.files", Full),
    ("/api/2.0/dbfs/**", Methods::Read, "gw.dbfs", Read),
    ("/api/2.0/dbfs/**", Write, "gw.dbfs", Full),
    // Tokens: minting credentials that bypass the gateway
    ("/api/2.0/token/list", Methods::Read, "authentication", Read),
    ("/api/2.0/token/**", Any, "authentication", Sensitive),
    (
        "/api/2.0/token-management/**",
        Any,
        "authentication",
        Sensitive,
    ),
    // Permissions and identity
    (
        "/api/2.0/permissions/**",
        Methods::Read,
        "access-management",
        Read,
    ),
    ("/api/2.0/permissions/**", Write, "access-management", Full),
    ("/api/2.0/preview/scim/v2/Me", Methods::Read, "", AnyScope),
    ("/api/2.0/preview/scim/v2/**", Methods::Read, "scim", Read),
    ("/api/2.0/preview/scim/v2/**", Write, "scim", Full),
    ("/api/2.0/identity/**", Methods::Read, "scim", Read),
    ("/api/2.0/identity/**", Write, "scim", Full),
    // Lakebase
    ("/api/2.0/postgres/**", Methods::Read, "postgres", Read),
    ("/api/2.0/postgres/**", Write, "postgres", Full),
    ("/api/2.0/database/**", Methods::Read, "postgres", Read),
    ("/api/2.0/database/**", Write, "postgres", Full),
    // Managed MCP servers
    ("/api/2.0/mcp/genie/**", Any, "genie", Full),
    ("/api/2.0/mcp/sql/**", Any, "sql", Full),
    ("/api/2.0/mcp/functions/**", Any, "unity-catalog", Full),
    ("/api/2.0/mcp/ai-search/**", Any, "ai-search", Full),
    ("/api/2.0/mcp/vector-search/**", Any, "vector-search", Full),
    // Workspace administration
    (
        "/api/2.0/workspace-conf",
        Methods::Read,
        "gw.workspace-admin",
        Read,
    ),
    ("/api/2.0/workspace-conf", Write, "gw.workspace-admin", Full),
    (
        "/api/2.[01]/settings/**",
        Methods::Read,
        "gw.workspace-admin",
        Read,
    ),
    ("/api/2.[01]/settings/**", Write, "gw.workspace-admin", Full),
    (
        "/api/2.0/ip-access-lists/**",
        Methods::Read,
        "gw.workspace-admin",
        Read,
    ),
    (
        "/api/2.0/ip-access-lists/**",
        Write,
        "gw.workspace-admin",
        Full,
    ),
    (
        "/api/2.0/notification-destinations/**",
        Methods::Read,
        "gw.workspace-admin",
        Read,
    ),
    (
        "/api/2.0/notification-destinations/**",
        Write,
        "gw.workspace-admin",
        Full,
    ),
    (
        "/api/2.0/credentials-manager/**",
        Any,
        "gw.workspace-admin",
        Full,
    ),
];

/// The rule every unknown `/api/**` route falls to.
pub const DEFAULT_RULE: &str = "databricks:default";

fn methods(group: Methods) -> Option<Vec<String>> {
    let names: &[&str] = match group {
        Methods::Read => &["GET", "HEAD"],
        Methods::Write => &["POST", "PUT", "PATCH", "DELETE"],
        Methods::Post => &["POST"],
        Methods::Any => return None,
    };
    Some(names.iter().map(|m| m.to_string()).collect())
}

fn scopes(names: &[&str]) -> Vec<ScopeTemplate> {
    names.iter().map(|s| ScopeTemplate(s.to_string())).collect()
}

/// The catalogue as rules accepting `providers`, to be appended after the user's own rules.
pub fn rules(providers: &[usize], allow_sensitive: bool) -> Vec<Rule> {
    let token = |scopes_any: Vec<ScopeTemplate>| Access::Token {
        providers: providers.to_vec(),
        require: Requirement {
            scopes_any,
            ..Requirement::default()
        },
    };
    let mut rules: Vec<Rule> = ENTRIES
        .iter()
        .filter_map(|(template, group, scope_list, class)| {
            let alternatives: Vec<&str> = scope_list.split('|').filter(|s| !s.is_empty()).collect();
            let service = alternatives.first().copied().unwrap_or(match class {
                Anonymous => "oauth",
                _ => "current-user",
            });
            // Least privilege first: a 403's `scope=` names the first alternative.
            let mut any: Vec<&str> = alternatives.clone();
            any.push("all-apis");
            let read_scope = format!("{service}:read");
            let (label, access) = match class {
                Anonymous => ("anonymous", Access::Anonymous),
                AnyScope => ("any-scope", token(Vec::new())),
                Read => {
                    let mut with_read: Vec<&str> = vec![&read_scope];
                    with_read.extend(&any);
                    ("read", token(scopes(&with_read)))
                }
                Full => ("full", token(scopes(&any))),
                Sensitive if allow_sensitive => ("sensitive", token(scopes(&any))),
                Sensitive => (
                    "sensitive",
                    Access::Refuse(format!(
                        "{template} mints credentials or runs arbitrary code; it is disabled by \
                         brickgate's configuration (databricks.allow_sensitive_routes)"
                    )),
                ),
            };
            let pattern = PathPattern::template(template).ok()?;
            Some(Rule {
                name: format!("databricks:{service}:{label}"),
                pattern,
                methods: methods(*group),
                access,
            })
        })
        .collect();
    if let Ok(pattern) = PathPattern::template("/api/**") {
        rules.push(Rule {
            name: DEFAULT_RULE.to_string(),
            pattern,
            methods: None,
            access: token(scopes(&["all-apis"])),
        });
    }
    rules
}

#[cfg(test)]
mod tests;
