//! The configuration as written by hand: serde DTOs that refuse unknown fields.
//! `compile.rs` turns them into validated domain types.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub identity: RawIdentity,
    pub realm: Option<String>,
    pub max_token_bytes: Option<u64>,
    #[serde(default)]
    pub performance: RawPerformance,
    pub databricks: Option<RawDatabricks>,
    /// CORS preflights (OPTIONS with Origin and Access-Control-Request-Method) pass without a
    /// token, like Envoy jwt_authn's `bypass_cors_preflight`.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// `enforce` (default) or `dry_run`: report refusals instead of sending them.
    pub mode: Option<String>,
    /// Development only: accept secrets written into the configuration itself.
    #[serde(default)]
    pub allow_inline_secrets: bool,
    #[serde(default)]
    pub audit: RawAudit,
    /// How rules that depend on the body get it: `hold_headers` (default) or `buffer_filter`.
    pub body_rules: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub log_line: Option<bool>,
    pub filter_state: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabricks {
    #[serde(default)]
    pub route_catalogue: bool,
    /// Replaced by `enable_route_classes`; kept only to name the replacement.
    pub allow_sensitive_routes: Option<serde_json::Value>,
    pub enable_route_classes: Option<Vec<String>>,
    pub catalogue_providers: Option<Vec<String>>,
    pub max_body_bytes: Option<u64>,
    pub serving_body_limits: Option<Vec<RawServingBodyLimit>>,
    pub first_body_wait_ms: Option<u64>,
    pub body_deadline_ms: Option<u64>,
    pub max_held_body_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServingBodyLimit {
    pub endpoint_prefix: String,
    pub max_body_bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub mode: String,
    pub cluster: Option<String>,
    pub workspace_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// The environment variable (handed to the VM) that holds the client secret.
    pub client_secret_env: Option<String>,
    pub timeout_ms: Option<u64>,
    pub subject_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPerformance {
    pub host_signatures: Option<bool>,
    pub token_cache_entries: Option<u64>,
    pub token_cache_bytes: Option<u64>,
    pub upstream_token_slots: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub issuer: String,
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub allow_any_audience: bool,
    pub jwks: RawJwks,
    pub algorithms: Option<Vec<String>>,
    pub clock_skew_s: Option<u64>,
    pub max_lifetime_s: Option<u64>,
    #[serde(default)]
    pub require_typ: bool,
    pub idp: Option<String>,
    pub token_sources: Option<Vec<RawTokenSource>>,
    #[serde(default)]
    pub claims: RawClaims,
    pub upstream: Option<RawUpstream>,
    /// `"group:<name>" | "role:<name>" | "scope:<name>"` → the scopes it earns.
    pub grants: Option<BTreeMap<String, Vec<String>>>,
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJwks {
    pub inline: Option<serde_json::Value>,
    /// The environment variable (handed to the VM) holding an inline JWKS with secret keys.
    pub inline_env: Option<String>,
    pub remote: Option<RawRemoteJwks>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoteJwks {
    pub cluster: String,
    pub uri: Option<String>,
    pub refresh_interval_s: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_stale_s: Option<u64>,
    pub refetch_min_interval_s: Option<u64>,
    pub wait_for_keys_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    pub header: Option<String>,
    pub prefix: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    pub scopes: Option<Vec<String>>,
    pub subject: Option<String>,
    pub groups: Option<String>,
    pub roles: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub allow_anonymous: bool,
    pub providers: Option<Vec<String>>,
    pub require: Option<RawRequire>,
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub template: Option<String>,
    pub serving_endpoint: Option<String>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    #[serde(default)]
    pub scopes_all: Vec<String>,
    #[serde(default)]
    pub scopes_any: Vec<String>,
    #[serde(default)]
    pub groups_any: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub header_prefix: Option<String>,
    pub headers: Option<Vec<String>>,
    pub forward_authorization: Option<bool>,
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    pub publish: Option<Vec<String>>,
}
