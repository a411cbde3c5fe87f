//! Every scope name the catalogue uses, with where Databricks defines it. Names Databricks
//! does not define carry brickgate's `gw.` prefix; their source is this project's own docs.
//! A test checks that every scope in the catalogue appears here.

/// Databricks' scope reference pages (the per-API scope lists).
pub const WORKSPACE_SCOPES: &str = "https://docs.databricks.com/api/workspace/scopes";
pub const ACCOUNT_SCOPES: &str = "https://docs.databricks.com/api/account/scopes";
/// `:read` (GET and HEAD), `:restricted-query` (sql only), and `sql:read:restricted-query`.
pub const SCOPE_MODIFIERS: &str =
    "https://docs.databricks.com/aws/en/dev-tools/auth/scope-modifiers";
pub const APPS_AUTH: &str = "https://docs.databricks.com/aws/en/dev-tools/databricks-apps/auth";
pub const MANAGED_MCP: &str = "https://docs.databricks.com/aws/en/generative-ai/mcp/managed-mcp";
/// The Go SDK's scoped-profile test data names `jobs`, `pipelines`, `mlflow`, `iam:read`,
/// `files:read`, `model-serving`, `clusters` as scopes a profile may request.
pub const SDK_GO_SCOPES_TESTDATA: &str =
    "databricks/databricks-sdk-go config/testdata/scopes/.databrickscfg";
/// `CreateCustomAppIntegration.Scopes`: "all-apis, sql, offline_access, openid, profile, email".
pub const SDK_GO_OAUTH2_MODEL: &str = "databricks/databricks-sdk-go service/oauth2/model.go";
/// Databricks' per-operation REST reference pages, each naming its "API scopes".
pub const API_REF_CLUSTERS: &str = "https://docs.databricks.com/api/clusters/v2/get-cluster";
pub const API_REF_MLFLOW: &str = "https://docs.databricks.com/api/experiments/v1/create-experiment";
pub const API_REF_UNITY_CATALOG: &str =
    "https://docs.databricks.com/api/uc-catalogs/v1/get-catalog";
pub const API_REF_VECTOR_SEARCH: &str =
    "https://docs.databricks.com/api/vector-search/v1/query-vector-index";
pub const API_REF_WORKSPACE: &str =
    "https://docs.databricks.com/api/workspace-objects/v1/get-status";
/// `POST /serving-endpoints/{name}/invocations`: "API scopes: model-serving, model-serving-inference".
pub const API_REF_SERVING_QUERY: &str =
    "https://docs.databricks.com/api/model-serving-query/v1/query";
pub const API_REF_PIPELINES: &str = "https://docs.databricks.com/api/pipelines/v2/list";
/// Secrets: list-secrets and list-scopes name `secrets`.
pub const API_REF_SECRETS: &str = "https://docs.databricks.com/api/secrets/v1/list-secrets";
pub const API_REF_INSTANCE_POOLS: &str =
    "https://docs.databricks.com/api/instance-pools/v2/get-instance-pool";
/// `POST /api/2.0/token/create`: "API scopes: authentication".
pub const API_REF_TOKEN_CREATE: &str = "https://docs.databricks.com/api/tokens/v1/create-token";
/// DBFS (`/api/2.0/dbfs/get-status`): "API scopes: files".
pub const API_REF_DBFS: &str = "https://docs.databricks.com/api/files/v2/get-status";
/// Git folders (`GET /api/2.0/repos/{id}`): "API scopes: workspace".
pub const API_REF_REPOS: &str = "https://docs.databricks.com/api/repos/v1/get-repo";
pub const API_REF_GLOBAL_INIT_SCRIPTS: &str =
    "https://docs.databricks.com/api/global-init-scripts/v2/get-global-init-script";
/// Cluster policies (`GET /api/2.0/policies/clusters/get`): "API scopes: clusters".
pub const API_REF_CLUSTER_POLICIES: &str =
    "https://docs.databricks.com/api/cluster-policies/v2/get-policy";
/// Git credentials (`GET /api/2.0/git-credentials/{id}`): "API scopes: workspace".
pub const API_REF_GIT_CREDENTIALS: &str =
    "https://docs.databricks.com/api/git-credentials/v1/get-credentials";
/// `POST /api/2.2/jobs/run-now`: "API scopes: jobs".
pub const API_REF_JOBS: &str = "https://docs.databricks.com/api/jobs/v2/run-now";
pub const API_REF_INSTANCE_PROFILES: &str =
    "https://docs.databricks.com/api/instance-profiles/v2/list-instance-profiles";
/// `/api/1.2` (execution contexts and commands): "API scopes: command-execution".
pub const API_REF_COMMAND_EXECUTION: &str =
    "https://docs.databricks.com/api/command-execution/v2/execute";
/// Account workspaces (`GET /api/2.0/accounts/{account_id}/workspaces/{workspace_id}`):
/// "API scopes: provisioning".
pub const API_REF_PROVISIONING: &str =
    "https://docs.databricks.com/api/workspaces/v1/get-workspace-public";
pub const GW_OWN: &str = "brickgate docs/DATABRICKS.md (no Databricks scope published)";

/// (scope, source). Modifiers (`:read`, `:restricted-query`) are derived from the base scope and
/// cited to [`SCOPE_MODIFIERS`]; `all-apis:read` is the `:read` modifier on `all-apis`.
pub const SCOPES: &[(&str, &str)] = &[
    ("all-apis", SDK_GO_OAUTH2_MODEL),
    ("sql", SDK_GO_OAUTH2_MODEL),
    ("sql:restricted-query", SCOPE_MODIFIERS),
    ("sql:read:restricted-query", SCOPE_MODIFIERS),
    ("clusters", API_REF_CLUSTERS),
    ("dashboards", WORKSPACE_SCOPES),
    ("access-management", WORKSPACE_SCOPES),
    ("alerts", WORKSPACE_SCOPES),
    ("apps", WORKSPACE_SCOPES),
    ("authentication", ACCOUNT_SCOPES),
    ("genie", MANAGED_MCP),
    ("unity-catalog", API_REF_UNITY_CATALOG),
    ("ai-search", MANAGED_MCP),
    ("vector-search", API_REF_VECTOR_SEARCH),
    ("model-serving", API_REF_SERVING_QUERY),
    ("model-serving-inference", API_REF_SERVING_QUERY),
    ("workspace", API_REF_WORKSPACE),
    ("files", API_REF_DBFS),
    ("postgres", APPS_AUTH),
    ("ai-gateway", APPS_AUTH),
    ("scim", APPS_AUTH),
    ("workspace.workspace", APPS_AUTH),
    ("serving.serving-endpoints", APPS_AUTH),
    ("dashboards.genie", APPS_AUTH),
    ("files.files", APPS_AUTH),
    ("jobs", API_REF_JOBS),
    ("instance-profiles", API_REF_INSTANCE_PROFILES),
    ("command-execution", API_REF_COMMAND_EXECUTION),
    ("pipelines", API_REF_PIPELINES),
    ("secrets", API_REF_SECRETS),
    ("instance-pools", API_REF_INSTANCE_POOLS),
    ("mlflow", API_REF_MLFLOW),
    ("provisioning", API_REF_PROVISIONING),
    ("gw.workspace-admin", GW_OWN),
    ("gw.command-execution", GW_OWN),
    ("gw.feature-store", GW_OWN),
    ("gw.marketplace", GW_OWN),
    ("global-init-scripts", API_REF_GLOBAL_INIT_SCRIPTS),
];

/// The source of a scope name, modifiers included (`clusters:read` → the `clusters` source and
/// the modifiers page).
pub fn source(scope: &str) -> Option<String> {
    if let Some((_, source)) = SCOPES.iter().find(|(name, _)| *name == scope) {
        return Some(source.to_string());
    }
    let base = scope.strip_suffix(":read")?;
    let (_, base_source) = SCOPES.iter().find(|(name, _)| *name == base)?;
    if *base_source == SCOPE_MODIFIERS {
        return Some(SCOPE_MODIFIERS.to_string());
    }
    Some(format!("{base_source}; {SCOPE_MODIFIERS}"))
}
