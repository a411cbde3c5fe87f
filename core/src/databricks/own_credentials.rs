//! Databricks' own credentials, recognised where brickgate expects a token from a configured
//! issuer: a client that sends its Databricks personal access token, or a Databricks-issued
//! OAuth token to a route that does not accept Databricks' issuer, is told what it sent and what
//! to send instead, rather than "token has 1 segments" or a bare issuer mismatch. The messages
//! never repeat the token.

use crate::error::{AuthError, Reason, echo};

/// Databricks personal access tokens begin with `dapi`: the Go SDK's own example
/// (databricks/databricks-sdk-go config/example_test.go @1ff3c785, `Token: "dapi0c2a3f4e..."`,
/// "env: DATABRICKS_TOKEN"). Other prefixes seen in the wild (`dkea`, `dose`) are not documented
/// by any Databricks source found, so they are not claimed here.
const PAT_PREFIX: &str = "dapi";

/// The DNS zones of Databricks hosts (databricks/databricks-sdk-go
/// common/environment/environments.go @1ff3c785: `.cloud.databricks.com`, `.cloud.databricks.us`,
/// `.azuredatabricks.net`, `.databricks.azure.us`, `.databricks.azure.cn`, `.gcp.databricks.com`),
/// widened to `.databricks.com` for the custom account hosts the SDK's own example issuer names
/// (`https://nike.databricks.com/oidc/accounts/xxx`, credentials/u2m/discovery_token_source.go).
const DATABRICKS_ZONES: [&str; 5] = [
    ".databricks.com",
    ".databricks.us",
    ".azuredatabricks.net",
    ".databricks.azure.us",
    ".databricks.azure.cn",
];

/// Whether `token` is a Databricks personal access token: the `dapi` prefix and no `.` (a JWS
/// has two; a JWT's header segment begins `eyJ`).
pub fn is_personal_access_token(token: &str) -> bool {
    token.starts_with(PAT_PREFIX) && !token.contains('.')
}

/// Whether `iss` is a Databricks OAuth issuer: `https://<Databricks host>/oidc` (workspace) or
/// `https://<Databricks host>/oidc/accounts/<account id>` (account). The forms are the Go SDK's
/// (credentials/u2m/discovery_token_source.go @1ff3c785: "https://adb-xxx.azuredatabricks.net/oidc",
/// "https://nike.databricks.com/oidc/accounts/xxx"; account_oauth_argument.go builds
/// `<accountHost>/oidc/accounts/<accountID>`). A path of `/oidc` alone does not make an issuer
/// Databricks' (the SDK's federation example uses `https://idp.mycompany.com/oidc`): the host must
/// be in a Databricks zone too.
pub fn is_databricks_issuer(iss: &str) -> bool {
    let Some(rest) = iss.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = host.to_ascii_lowercase();
    let in_zone = DATABRICKS_ZONES
        .iter()
        .any(|zone| host.ends_with(zone) && host.len() > zone.len());
    let oidc_path = match path.strip_prefix("/oidc") {
        Some("") | Some("/") => true,
        Some(account) => account
            .strip_prefix("/accounts/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        None => false,
    };
    in_zone && oidc_path
}

fn accepted(rule: &str, issuers: &[&str]) -> String {
    format!(
        "rule {rule} takes tokens issued by [{}]: send a token from one of those",
        issuers.join(", ")
    )
}

/// A Databricks personal access token where the rule expects JWTs from `issuers`.
pub fn personal_access_token_refused(rule: &str, issuers: &[&str]) -> AuthError {
    AuthError::new(
        Reason::DatabricksCredential,
        format!(
            "this is a Databricks personal access token; {} (brickgate verifies signed tokens \
             and does not forward personal access tokens)",
            accepted(rule, issuers)
        ),
    )
}

/// A Databricks-issued OAuth token (issuer `iss`) where the rule expects JWTs from `issuers`.
pub fn oauth_token_refused(iss: &str, rule: &str, issuers: &[&str]) -> AuthError {
    AuthError::new(
        Reason::DatabricksCredential,
        format!(
            "this is a Databricks-issued OAuth token (issuer {:?}); {} (brickgate takes a \
             Databricks token only on routes that accept a provider with its issuer, idp \"databricks\")",
            echo(iss),
            accepted(rule, issuers)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_access_tokens_are_told_from_jwts() {
        let cases = [
            ("dapi0123456789abcdef0123456789abcdef", true),
            ("dapi0123456789abcdef0123456789abcdef-2", true),
            ("dapi", true),
            ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", false),
            ("dapi.eyJ.c2ln", false),
            ("not-a-jwt", false),
            ("Dapi0123", false),
            ("dkea0123456789", false),
        ];
        for (token, expected) in cases {
            assert_eq!(is_personal_access_token(token), expected, "{token}");
        }
    }

    #[test]
    fn databricks_issuers_are_workspace_and_account_oidc_paths_on_databricks_hosts() {
        let cases = [
            ("https://dbc-1234abcd-5678.cloud.databricks.com/oidc", true),
            ("https://adb-123.4.azuredatabricks.net/oidc", true),
            ("https://1234.5.gcp.databricks.com/oidc", true),
            ("https://adb-1.2.databricks.azure.cn/oidc", true),
            ("https://dbc-1.cloud.databricks.us/oidc", true),
            ("https://accounts.cloud.databricks.com/oidc", true),
            (
                "https://accounts.cloud.databricks.com/oidc/accounts/0d26daa6-5e44-4c97-a497-ef015f91254a",
                true,
            ),
            ("https://nike.databricks.com/oidc/accounts/xxx", true),
            ("https://DBC-1.Cloud.Databricks.com/oidc", true),
            // Not Databricks: another host, another path, another scheme, a look-alike.
            ("https://idp.mycompany.com/oidc", false),
            ("https://dbc-1.cloud.databricks.com/oauth2/default", false),
            ("https://dbc-1.cloud.databricks.com/oidc/v1/token", false),
            ("https://dbc-1.cloud.databricks.com/oidc/accounts/", false),
            ("http://dbc-1.cloud.databricks.com/oidc", false),
            ("https://databricks.com.evil.test/oidc", false),
            ("https://evil-databricks.com/oidc", false),
            ("https://.databricks.com/oidc", false),
            (
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                false,
            ),
        ];
        for (iss, expected) in cases {
            assert_eq!(is_databricks_issuer(iss), expected, "{iss}");
        }
    }

    #[test]
    fn refusals_name_the_credential_and_the_issuers_to_use_instead() {
        let pat = personal_access_token_refused("databricks:clusters:read", &["https://idp"]);
        assert_eq!(pat.reason, Reason::DatabricksCredential);
        assert!(
            pat.detail
                .starts_with("this is a Databricks personal access token; rule databricks:clusters:read takes tokens issued by [https://idp]"),
            "{}",
            pat.detail
        );
        let oauth =
            oauth_token_refused("https://dbc-1.cloud.databricks.com/oidc", "r", &["a", "b"]);
        assert_eq!(oauth.reason, Reason::DatabricksCredential);
        assert!(oauth.detail.starts_with(
            "this is a Databricks-issued OAuth token (issuer \"https://dbc-1.cloud.databricks.com/oidc\"); rule r takes tokens issued by [a, b]"
        ));
    }
}
