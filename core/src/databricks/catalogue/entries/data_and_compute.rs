//! The first half of the catalogue's table (see `entries.rs`): anonymous routes, code
//! execution, model serving and AI, SQL, Unity Catalog and Delta Sharing, Marketplace, jobs,
//! pipelines, compute and MLflow.

use super::{Class, Entry, Methods};
use crate::databricks::catalogue::RouteClass::{
    CloudCredentials, CodeExecution, MarketplaceInstallations, OauthSecretsAndFederation,
    PresignedUrls, SecretValues, SharingTokens,
};
use Class::{Anonymous, Full, Read, Sensitive};
use Methods::{Any, Change, NotDelete, Post, Write};

/// Invocations: the Query API's page lists `model-serving` and `model-serving-inference`;
/// `serving.serving-endpoints` is the Apps name.
const SERVING: &str = "model-serving|model-serving-inference|serving.serving-endpoints";
/// Statement execution and the Thrift endpoints: read-only queries are allowed with
/// `sql:restricted-query` (Databricks' scope-modifiers page).
const SQL_QUERY: &str = "sql|sql:restricted-query|sql:read:restricted-query";
/// Other SQL reads: `sql:read:restricted-query` includes the `sql` scope's reads.
const SQL_READ: &str = "sql|sql:read:restricted-query";

pub(super) const ENTRIES: &[Entry] = &[
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
    // Open Responses, Anthropic Messages and Gemini shapes of the same endpoints (pages in
    // `databricks::serving`): the same scopes as the Query API.
    ("/serving-endpoints/open-responses", Post, SERVING, Full),
    (
        "/serving-endpoints/anthropic/v1/messages",
        Post,
        SERVING,
        Full,
    ),
    (
        "/serving-endpoints/gemini/v1beta/models/{model_method}",
        Post,
        SERVING,
        Full,
    ),
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
];
