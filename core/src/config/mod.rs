//! Configuration: parsed once, fully, when the plugin starts. Unknown fields are refused and
//! every value is validated; errors name the field.

mod body_mode;
mod compile;
mod dry_run;
pub mod held_bodies;
mod raw;
mod warnings;

use std::fmt;

use crate::alg::Alg;
use crate::databricks::DatabricksConfig;
use crate::databricks::exchange::UpstreamMode;
pub use crate::identity::IdpKind;
pub use crate::jwks::{JwksLocation, JwksSource, RemoteJwks};
use crate::jwks::{KeySources, ProviderKeys};
use crate::policy::Rule;
pub use crate::token::TokenSource;
use crate::verify::ProviderChecks;

pub use body_mode::body_mode_warnings;
pub use compile::{BUILT_IN_HEADER_SUFFIXES, EnvLookup};
pub use dry_run::DryRun;
pub use warnings::configuration_warnings;

#[derive(Debug, Clone)]
pub struct Config {
    pub realm: String,
    pub max_token_bytes: usize,
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub identity: IdentityConfig,
    pub performance: Performance,
    pub databricks: Option<DatabricksConfig>,
    /// Some rule names a serving endpoint, so OpenAI-style serving requests need their body.
    pub reads_model_from_body: bool,
    /// Forward CORS preflights without a token (engine::cors).
    pub bypass_cors_preflight: bool,
    /// Refusals reported (`would_deny`) instead of sent.
    pub dry_run: DryRun,
    pub audit: AuditOutputs,
    pub body_rules: BodyRules,
}

/// How a request whose verdict depends on its body gets that body (docs/LIFECYCLE.md, "Rules
/// that depend on the body").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyRules {
    /// Hold the request at its headers until the body verdict: needs the Wasm filter's
    /// `allow_on_headers_stop_iteration: true` (plain Envoy, ECDS).
    #[default]
    HoldHeaders,
    /// For meshes, whose control planes cannot set that flag: settle every header change at
    /// the headers and let them go on; only the allow or refuse waits for the end of the body.
    /// Needs `envoy.filters.http.buffer` right after brickgate, which holds the whole request
    /// from the upstream until brickgate's verdict.
    BufferFilter,
    /// The host cannot give brickgate the body at all: rules that need it are refused at
    /// config time (`body_mode::refuse_body_rules`), and a body whose size is undeclared is
    /// refused at its headers (411).
    Off,
}

/// Where each decision's audit record goes (docs/OPERATIONS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOutputs {
    /// The `brickgate audit {json}` line in Envoy's application log (off by default: the
    /// access log carries the record).
    pub log_line: bool,
    /// The filter-state object `wasm.brickgate` that access logs read (on by default).
    pub filter_state: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Performance {
    /// Use the host's native `verify_signature` when it passes the start-up self-test.
    pub host_signatures: bool,
    /// Verified-token cache bounds, per worker; 0 entries disables the cache.
    pub token_cache_entries: usize,
    pub token_cache_bytes: usize,
    /// Databricks tokens kept in shared data (a fixed set of slots), and per worker.
    pub upstream_token_slots: usize,
}

impl Config {
    /// Parses and validates the plugin configuration, without an environment: a secret named
    /// by an environment variable is reported missing.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        compile::compile(bytes, &|_| None)
    }

    /// Parses and validates the plugin configuration; secrets named by environment variables
    /// (`client_secret_env`) are read with `env`, as the plugin reads the VM's environment.
    pub fn from_json_with_env(bytes: &[u8], env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        compile::compile(bytes, env)
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    /// `None` when the provider explicitly waives the audience check.
    pub audiences: Option<Vec<String>>,
    pub jwks: JwksSource,
    pub algorithms: Vec<Alg>,
    pub clock_skew_s: u64,
    pub max_lifetime_s: u64,
    pub require_typ: bool,
    pub idp: IdpKind,
    pub token_sources: Vec<TokenSource>,
    pub scope_claims: Vec<String>,
    pub subject_claim: String,
    pub groups_claim: String,
    pub roles_claim: String,
    /// Scopes earned by groups, roles or IdP scopes (identity::grants).
    pub grants: Vec<crate::identity::grants::Grant>,
    pub upstream: UpstreamMode,
}

impl<'a> From<&'a Provider> for ProviderChecks<'a> {
    fn from(provider: &'a Provider) -> Self {
        ProviderChecks {
            name: &provider.name,
            require_typ: provider.require_typ,
            algorithms: &provider.algorithms,
            clock_skew_s: provider.clock_skew_s,
            max_lifetime_s: provider.max_lifetime_s,
            audiences: provider.audiences.as_deref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    pub header_prefix: String,
    /// The built-in identity headers sent (`identity.headers`; by their suffix, all of
    /// `BUILT_IN_HEADER_SUFFIXES` by default). Every header with the prefix is stripped whatever
    /// this says.
    pub built_in: Vec<&'static str>,
    /// `x-brickgate-rule` (with the configured prefix), when it is sent: named once, not per
    /// request.
    pub rule_header: Option<String>,
    pub forward_authorization: bool,
    /// (claim path, full header name).
    pub claim_headers: Vec<(String, String)>,
    /// The principal's fields published to the filters after brickgate (`identity.publish`,
    /// names from `identity::PUBLISHED_FIELDS`, in the order given); none by default.
    pub publish: Vec<&'static str>,
}

/// A configuration problem, naming the field (`providers.okta.jwks.remote.uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

impl KeySources for Config {
    fn key_sources(&self) -> Vec<ProviderKeys<'_>> {
        self.providers
            .iter()
            .map(|provider| ProviderKeys {
                name: &provider.name,
                issuer: &provider.issuer,
                source: &provider.jwks,
            })
            .collect()
    }
}
