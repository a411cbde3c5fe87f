//! The built-in catalogue of Databricks REST routes and the scopes they need, following
//! Databricks' own semantics: `all-apis` satisfies everything and `all-apis:read` every GET and
//! HEAD; a service scope `S` satisfies its routes; `S:read` satisfies only GET and HEAD reads;
//! `sql:restricted-query` only statement execution and the SQL drivers' Thrift endpoints.
//! Routes that mint credentials or run arbitrary code belong to a [`RouteClass`] and are
//! refused unless the configuration enables that class; any other `/api/**` route needs
//! `all-apis` (`all-apis:read` for reads). Every scope's source is in [`scopes::SCOPES`];
//! names prefixed `gw.` are brickgate's own, for services Databricks publishes no scope for.

pub mod classes;
pub mod scopes;
mod spellings;

pub use spellings::check_api_spelling;

pub use classes::RouteClass;

use crate::policy::{Access, PathPattern, Requirement, Rule, ScopeTemplate};
use RouteClass::{
    CloudCredentials, CodeExecution, DatabaseCredentials, MarketplaceInstallations,
    OauthSecretsAndFederation, PersonalAccessTokens, PresignedUrls, SecretValues, SharingTokens,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Methods {
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
enum Class {
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

use Class::{Anonymous, AnyScope, Full, Read, Sensitive};
use Methods::{Any, Change, NotDelete, Post, Write};

/// Invocations: the Query API's page lists `model-serving` and `model-serving-inference`;
/// `serving.serving-endpoints` is the Apps name.
const SERVING: &str = "model-serving|model-serving-inference|serving.serving-endpoints";
/// Statement execution and the Thrift endpoints: read-only queries are allowed with
/// `sql:restricted-query` (Databricks' scope-modifiers page).
const SQL_QUERY: &str = "sql|sql:restricted-query|sql:read:restricted-query";
/// Other SQL reads: `sql:read:restricted-query` includes the `sql` scope's reads.
const SQL_READ: &str = "sql|sql:read:restricted-query";

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
    // Every `/api/1.2` route runs code; it comes before the families, whose version
    // segment matches any version (see `spellings`).
    (
        "/api/1.2/**",
        Any,
        "command-execution",
        Sensitive(CodeExecution),
    ),
    // The same command-execution API under any other version.
    (
        "/api/2.0/commands/**",
        Any,
        "command-execution",
        Sensitive(CodeExecution),
    ),
    (
        "/api/2.0/contexts/**",
        Any,
        "command-execution",
        Sensitive(CodeExecution),
    ),
    // Model serving and AI gateway
    ("/serving-endpoints/{name}/invocations", Post, SERVING, Full),
    (
        "/serving-endpoints/{name}/served-models/{model}/invocations",
        Post,
        SERVING,
        Full,
    ),
    ("/serving-endpoints/chat/completions", Post, SERVING, Full),
    ("/serving-endpoints/completions", Post, SERVING, Full),
    ("/serving-endpoints/embeddings", Post, SERVING, Full),
    ("/serving-endpoints/responses", Post, SERVING, Full),
    ("/ai-gateway/**", Methods::Read, "ai-gateway", Read),
    ("/ai-gateway/**", Write, "ai-gateway", Full),
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
    // SQL: statements and the Thrift endpoints of the SQL drivers (JDBC, ODBC, Python, dbt)
    // also take `:restricted-query` (read-only queries); other SQL APIs do not.
    ("/api/2.0/sql/statements", Post, SQL_QUERY, Full),
    ("/api/2.0/sql/statements/{id}/cancel", Post, SQL_QUERY, Full),
    ("/api/2.0/sql/statements/**", Methods::Read, SQL_QUERY, Read),
    ("/sql/1.0/warehouses/{id}", Any, SQL_QUERY, Full),
    ("/sql/1.0/endpoints/{id}", Any, SQL_QUERY, Full),
    ("/sql/protocolv1/o/{org}/{cluster}", Any, SQL_QUERY, Full),
    ("/api/2.0/sql/alerts/**", Methods::Read, "alerts", Read),
    ("/api/2.0/sql/alerts/**", Write, "alerts", Full),
    (
        "/api/2.0/preview/sql/alerts/**",
        Methods::Read,
        "alerts",
        Read,
    ),
    ("/api/2.0/preview/sql/alerts/**", Write, "alerts", Full),
    // Alerts v2: the workspace scope page's `alerts` operations (List, Create, Update, Get,
    // Trash Alert) are this API's.
    ("/api/2.0/alerts/**", Methods::Read, "alerts", Read),
    ("/api/2.0/alerts/**", Write, "alerts", Full),
    ("/api/2.0/sql/**", Methods::Read, SQL_READ, Read),
    ("/api/2.0/sql/**", Write, "sql", Full),
    ("/api/2.0/preview/sql/**", Methods::Read, SQL_READ, Read),
    ("/api/2.0/preview/sql/**", Write, "sql", Full),
    ("/api/warehouses/v1/**", Methods::Read, SQL_READ, Read),
    ("/api/warehouses/v1/**", Write, "sql", Full),
    // Unity Catalog and Delta Sharing: credential vending first.
    (
        "/api/2.[01]/unity-catalog/temporary-table-credentials/**",
        Any,
        "unity-catalog",
        Sensitive(CloudCredentials),
    ),
    (
        "/api/2.[01]/unity-catalog/temporary-volume-credentials/**",
        Any,
        "unity-catalog",
        Sensitive(CloudCredentials),
    ),
    (
        "/api/2.[01]/unity-catalog/temporary-path-credentials/**",
        Any,
        "unity-catalog",
        Sensitive(CloudCredentials),
    ),
    (
        "/api/2.[01]/unity-catalog/temporary-service-credentials/**",
        Any,
        "unity-catalog",
        Sensitive(CloudCredentials),
    ),
    (
        "/api/2.1/unity-catalog/secrets/{id}/**",
        Methods::Read,
        "unity-catalog",
        Sensitive(SecretValues),
    ),
    // A recipient's reads, creation and updates return its activation link (the SDK's
    // `RecipientInfo.activation_url`, credential_operations.tsv).
    (
        "/api/2.1/unity-catalog/recipients",
        NotDelete,
        "unity-catalog",
        Sensitive(SharingTokens),
    ),
    // Its share permissions carry no token (credential_operations.tsv); anything else under
    // a recipient is in the class, as below every credential route: brickgate cannot know that
    // Databricks refuses extra segments after an operation's path rather than serving it.
    (
        "/api/2.1/unity-catalog/recipients/{name}/share-permissions",
        Methods::Read,
        "unity-catalog",
        Read,
    ),
    (
        "/api/2.1/unity-catalog/recipients/{name}/**",
        NotDelete,
        "unity-catalog",
        Sensitive(SharingTokens),
    ),
    (
        "/api/2.1/unity-catalog/recipients/{name}/rotate-token/**",
        Change,
        "unity-catalog",
        Sensitive(SharingTokens),
    ),
    (
        "/api/2.1/unity-catalog/public/data_sharing_activation/**",
        Any,
        "unity-catalog",
        Sensitive(SharingTokens),
    ),
    (
        "/api/2.[01]/unity-catalog/**",
        Methods::Read,
        "unity-catalog",
        Read,
    ),
    ("/api/2.[01]/unity-catalog/**", Write, "unity-catalog", Full),
    (
        "/api/2.0/data-sharing/recipients/{name}/federation-policies/**",
        Change,
        "unity-catalog",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.[01]/data-sharing/**",
        Methods::Read,
        "unity-catalog",
        Read,
    ),
    ("/api/2.[01]/data-sharing/**", Write, "unity-catalog", Full),
    // Marketplace: a consumer installation returns its Delta Sharing bearer token, a provider
    // file's creation a pre-signed upload URL (credential_operations.tsv).
    (
        "/api/2.1/marketplace-consumer/installations/**",
        Methods::Read,
        "gw.marketplace",
        Sensitive(MarketplaceInstallations),
    ),
    (
        "/api/2.1/marketplace-consumer/listings/{id}/installations",
        NotDelete,
        "gw.marketplace",
        Sensitive(MarketplaceInstallations),
    ),
    (
        "/api/2.1/marketplace-consumer/listings/{id}/installations/{installation}/**",
        NotDelete,
        "gw.marketplace",
        Sensitive(MarketplaceInstallations),
    ),
    (
        "/api/2.0/marketplace-provider/files",
        Change,
        "gw.marketplace",
        Sensitive(PresignedUrls),
    ),
    (
        "/api/2.[01]/marketplace-consumer/**",
        Methods::Read,
        "gw.marketplace",
        Read,
    ),
    (
        "/api/2.[01]/marketplace-consumer/**",
        Write,
        "gw.marketplace",
        Full,
    ),
    (
        "/api/2.0/marketplace-provider/**",
        Methods::Read,
        "gw.marketplace",
        Read,
    ),
    (
        "/api/2.0/marketplace-provider/**",
        Write,
        "gw.marketplace",
        Full,
    ),
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
        "instance-pools",
        Read,
    ),
    ("/api/2.0/instance-pools/**", Write, "instance-pools", Full),
    ("/api/2.0/policies/**", Methods::Read, "clusters", Read),
    // Cluster policies: their API pages name the `clusters` scope.
    ("/api/2.0/policies/**", Write, "clusters", Full),
    (
        "/api/2.0/policy-families/**",
        Methods::Read,
        "clusters",
        Read,
    ),
    (
        "/api/2.0/instance-profiles/**",
        Methods::Read,
        "instance-profiles",
        Read,
    ),
    (
        "/api/2.0/instance-profiles/**",
        Write,
        "instance-profiles",
        Full,
    ),
    (
        "/api/2.0/global-init-scripts/**",
        Any,
        "global-init-scripts",
        Sensitive(CodeExecution),
    ),
    // Spark Connect (Databricks Connect) is gRPC over HTTP/2: it runs the client's plans and
    // UDFs on a cluster, so it is code execution.
    (
        "/spark.connect.SparkConnectService/**",
        Any,
        "gw.command-execution",
        Sensitive(CodeExecution),
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
        "workspace|workspace.workspace",
        Read,
    ),
    (
        "/api/2.0/workspace/**",
        Write,
        "workspace|workspace.workspace",
        Full,
    ),
    // Git folders: their API pages name the `workspace` scope.
    ("/api/2.0/repos/**", Methods::Read, "workspace", Read),
    ("/api/2.0/repos/**", Write, "workspace", Full),
    ("/api/2.0/git-credentials/**", Any, "workspace", Full),
    // A secret's value is never a `:read`, and is refused unless enabled.
    (
        "/api/2.0/secrets/get/**",
        Any,
        "secrets",
        Sensitive(SecretValues),
    ),
    ("/api/2.0/secrets/**", Methods::Read, "secrets", Read),
    ("/api/2.0/secrets/**", Write, "secrets", Full),
    ("/api/2.0/fs/**", Methods::Read, "files|files.files", Read),
    ("/api/2.0/fs/**", Write, "files|files.files", Full),
    // DBFS: its API pages name the `files` scope.
    ("/api/2.0/dbfs/**", Methods::Read, "files|files.files", Read),
    ("/api/2.0/dbfs/**", Write, "files|files.files", Full),
    // Tokens: minting credentials that bypass the gateway
    ("/api/2.0/token/list", Methods::Read, "authentication", Read),
    (
        "/api/2.0/token/**",
        Any,
        "authentication",
        Sensitive(PersonalAccessTokens),
    ),
    (
        "/api/2.0/token-management/**",
        Any,
        "authentication",
        Sensitive(PersonalAccessTokens),
    ),
    // OAuth secrets and federation policies (Databricks' `authentication` scope); the
    // workspace host serves the service-principal secret API too. A route that mints with POST
    // is refused for PUT and PATCH too (`Change`): brickgate cannot know that Databricks does
    // not serve them alike.
    (
        "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets",
        Change,
        "authentication",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets/**",
        Methods::Read,
        "authentication",
        Read,
    ),
    (
        "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets/**",
        Write,
        "authentication",
        Full,
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/credentials/secrets",
        Change,
        "authentication",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/credentials/secrets/**",
        Methods::Read,
        "authentication",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/credentials/secrets/**",
        Write,
        "authentication",
        Full,
    ),
    // A custom OAuth app's creation returns its client secret.
    (
        "/api/2.0/accounts/{account}/oauth2/custom-app-integrations",
        Change,
        "authentication",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.0/accounts/{account}/federationPolicies/**",
        Change,
        "authentication",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.0/accounts/{account}/federationPolicies/**",
        Methods::Read,
        "authentication",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/federationPolicies/**",
        Write,
        "authentication",
        Full,
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/federationPolicies/**",
        Change,
        "authentication",
        Sensitive(OauthSecretsAndFederation),
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/federationPolicies/**",
        Methods::Read,
        "authentication",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/servicePrincipals/{id}/federationPolicies/**",
        Write,
        "authentication",
        Full,
    ),
    (
        "/api/2.0/credentials-manager/exchange-tokens/token/**",
        Any,
        "gw.workspace-admin",
        Sensitive(OauthSecretsAndFederation),
    ),
    // Permissions and identity
    (
        "/api/2.0/permissions/**",
        Methods::Read,
        "access-management",
        Read,
    ),
    ("/api/2.0/permissions/**", Write, "access-management", Full),
    // Account workspaces (Provisioning): its API pages name the `provisioning` scope.
    (
        "/api/2.0/accounts/{account}/workspaces",
        Methods::Read,
        "provisioning",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/workspaces",
        Write,
        "provisioning",
        Full,
    ),
    (
        "/api/2.0/accounts/{account}/workspaces/{id}",
        Methods::Read,
        "provisioning",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/workspaces/{id}",
        Write,
        "provisioning",
        Full,
    ),
    // The account scope page lists workspace permission assignments and rule sets (and their
    // workspace-host proxies) under `access-management`.
    (
        "/api/2.0/accounts/{account}/workspaces/{id}/permissionassignments/**",
        Methods::Read,
        "access-management",
        Read,
    ),
    (
        "/api/2.0/accounts/{account}/workspaces/{id}/permissionassignments/**",
        Write,
        "access-management",
        Full,
    ),
    (
        "/api/2.0/preview/accounts/access-control/**",
        Methods::Read,
        "access-management",
        Read,
    ),
    (
        "/api/2.0/preview/accounts/access-control/**",
        Write,
        "access-management",
        Full,
    ),
    (
        "/api/2.0/preview/accounts/{account}/access-control/**",
        Methods::Read,
        "access-management",
        Read,
    ),
    (
        "/api/2.0/preview/accounts/{account}/access-control/**",
        Write,
        "access-management",
        Full,
    ),
    ("/api/2.0/preview/scim/v2/Me", Methods::Read, "", AnyScope),
    ("/api/2.0/preview/scim/v2/**", Methods::Read, "scim", Read),
    ("/api/2.0/preview/scim/v2/**", Write, "scim", Full),
    ("/api/2.0/identity/**", Methods::Read, "scim", Read),
    ("/api/2.0/identity/**", Write, "scim", Full),
    // Lakebase: login tokens first
    (
        "/api/2.0/database/credentials/**",
        Any,
        "postgres",
        Sensitive(DatabaseCredentials),
    ),
    (
        "/api/2.0/postgres/credentials/**",
        Any,
        "postgres",
        Sensitive(DatabaseCredentials),
    ),
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

/// The rule every unknown `/api/**` route falls to (reads: [`DEFAULT_READ_RULE`]).
pub const DEFAULT_RULE: &str = "databricks:default";
pub const DEFAULT_READ_RULE: &str = "databricks:default:read";

fn methods(group: Methods) -> Option<Vec<String>> {
    let names: &[&str] = match group {
        Methods::Read => &["GET", "HEAD"],
        Methods::Write => &["POST", "PUT", "PATCH", "DELETE"],
        Methods::Change => &["POST", "PUT", "PATCH"],
        Methods::NotDelete => &["GET", "HEAD", "POST", "PUT", "PATCH"],
        Methods::Post => &["POST"],
        Methods::Any => return None,
    };
    Some(names.iter().map(|m| m.to_string()).collect())
}

fn scopes(names: &[&str]) -> Vec<ScopeTemplate> {
    names.iter().map(|s| ScopeTemplate(s.to_string())).collect()
}

/// Every scope name the catalogue's rules can ask for (for the source check and the docs).
pub fn scope_names() -> Vec<String> {
    let mut names: Vec<String> = vec!["all-apis".into(), "all-apis:read".into()];
    for (_, _, list, class) in ENTRIES {
        for scope in list.split('|').filter(|s| !s.is_empty()) {
            names.push(scope.to_string());
            if *class == Read && !scope.contains(':') && list.split('|').next() == Some(scope) {
                names.push(format!("{scope}:read"));
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The route class of the catalogue entry that decides `method path`, if it is one of the
/// classes refused by default.
pub fn route_class(method: &str, path: &str) -> Option<RouteClass> {
    let rules = rules(&[0], &[]);
    let (rule, _) = crate::policy::match_rule(&rules, method, path, None).ok()??;
    RouteClass::ALL
        .into_iter()
        .find(|class| rule.name.ends_with(&format!(":{}", class.name())))
}

/// The catalogue as rules accepting `providers`, to be appended after the user's own rules.
/// Routes of a class not in `enabled` are refused, naming the class and the setting.
pub fn rules(providers: &[usize], enabled: &[RouteClass]) -> Vec<Rule> {
    let token = |scopes_any: Vec<ScopeTemplate>| Access::Token {
        providers: providers.to_vec(),
        require: Requirement {
            scopes_any,
            ..Requirement::default()
        },
    };
    let mut rules: Vec<Rule> = ENTRIES
        .iter()
        .flat_map(|(template, group, scope_list, class)| {
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
                    let mut with_read: Vec<&str> = Vec::new();
                    if !service.contains(':') {
                        with_read.push(&read_scope);
                    }
                    with_read.extend(&alternatives);
                    with_read.extend(["all-apis:read", "all-apis"]);
                    ("read", token(scopes(&with_read)))
                }
                Full => ("full", token(scopes(&any))),
                Sensitive(class) if enabled.contains(class) => (class.name(), token(scopes(&any))),
                Sensitive(class) => (
                    class.name(),
                    Access::Refuse(format!(
                        "{template} is in route class {} (it {}); brickgate refuses it unless \
                         databricks.enable_route_classes includes \"{}\"",
                        class.name(),
                        class.what(),
                        class.name()
                    )),
                ),
            };
            let name = format!("databricks:{service}:{label}");
            spellings::spellings(template)
                .into_iter()
                .filter_map(|spelling| PathPattern::template(&spelling).ok())
                .map(|pattern| Rule {
                    name: name.clone(),
                    pattern,
                    methods: methods(*group),
                    access: access.clone(),
                })
                .collect::<Vec<Rule>>()
        })
        .collect();
    if let Ok(pattern) = PathPattern::template("/api/**") {
        rules.push(Rule {
            name: DEFAULT_READ_RULE.to_string(),
            pattern: pattern.clone(),
            methods: methods(Methods::Read),
            access: token(scopes(&["all-apis:read", "all-apis"])),
        });
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
#[cfg(test)]
mod walk_tests;
