//! The second half of the catalogue's table (see `entries.rs`), matched after the first:
//! workspace objects, secrets and files, tokens, OAuth secrets and federation, permissions and
//! identity, Lakebase, managed MCP servers and workspace administration.

use super::{Class, Entry, Methods};
use crate::databricks::catalogue::RouteClass::{
    DatabaseCredentials, OauthSecretsAndFederation, PersonalAccessTokens, SecretValues,
};
use Class::{AnyScope, Full, Read, Sensitive};
use Methods::{Any, Change, Write};

pub(super) const ENTRIES: &[Entry] = &[
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
