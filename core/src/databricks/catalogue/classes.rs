//! The classes of Databricks routes that mint a credential or run code. Each is refused unless
//! `databricks.enable_route_classes` names it: the credential it mints works without brickgate
//! in the path (or the code it runs does whatever it likes), so allowing it is a deliberate act.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteClass {
    /// Personal access tokens and on-behalf-of tokens (`/api/2.0/token/**`, token management).
    PersonalAccessTokens,
    /// Code execution: `/api/1.2` command execution, global init scripts, Spark Connect.
    CodeExecution,
    /// Cloud credentials vended by Unity Catalog (`temporary-*-credentials`).
    CloudCredentials,
    /// Lakebase database login tokens (`database/credentials`, `postgres/credentials`).
    DatabaseCredentials,
    /// Service principal OAuth secrets, federation policies, IdP token exchange.
    OauthSecretsAndFederation,
    /// Secret values (`/api/2.0/secrets/get`, Unity Catalog secrets).
    SecretValues,
    /// Delta Sharing recipient tokens and activation links (recipient creation, reads,
    /// updates, rotation, activation).
    SharingTokens,
    /// Marketplace consumer installations: their responses carry the installation's Delta
    /// Sharing bearer token and activation link.
    MarketplaceInstallations,
    /// Pre-signed cloud storage URLs (Marketplace provider file uploads).
    PresignedUrls,
}

impl RouteClass {
    pub const ALL: [RouteClass; 9] = [
        RouteClass::PersonalAccessTokens,
        RouteClass::CodeExecution,
        RouteClass::CloudCredentials,
        RouteClass::DatabaseCredentials,
        RouteClass::OauthSecretsAndFederation,
        RouteClass::SecretValues,
        RouteClass::SharingTokens,
        RouteClass::MarketplaceInstallations,
        RouteClass::PresignedUrls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouteClass::PersonalAccessTokens => "personal_access_tokens",
            RouteClass::CodeExecution => "code_execution",
            RouteClass::CloudCredentials => "cloud_credentials",
            RouteClass::DatabaseCredentials => "database_credentials",
            RouteClass::OauthSecretsAndFederation => "oauth_secrets_and_federation",
            RouteClass::SecretValues => "secret_values",
            RouteClass::SharingTokens => "sharing_tokens",
            RouteClass::MarketplaceInstallations => "marketplace_installations",
            RouteClass::PresignedUrls => "presigned_urls",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            RouteClass::PersonalAccessTokens => "mints personal access tokens",
            RouteClass::CodeExecution => "runs arbitrary code",
            RouteClass::CloudCredentials => "vends cloud storage credentials",
            RouteClass::DatabaseCredentials => "mints database login tokens",
            RouteClass::OauthSecretsAndFederation => {
                "creates OAuth secrets, federation policies or IdP tokens"
            }
            RouteClass::SecretValues => "returns secret values",
            RouteClass::SharingTokens => {
                "mints or returns Delta Sharing recipient tokens and activation links"
            }
            RouteClass::MarketplaceInstallations => {
                "returns Marketplace installations' Delta Sharing bearer tokens"
            }
            RouteClass::PresignedUrls => "returns pre-signed cloud storage URLs",
        }
    }

    pub fn from_name(name: &str) -> Option<RouteClass> {
        RouteClass::ALL.into_iter().find(|c| c.name() == name)
    }
}
