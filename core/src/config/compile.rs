//! Raw DTOs → validated domain types. Every check names the field it concerns.

use serde_json::Value;

use super::raw::{
    RawConfig, RawDatabricks, RawIdentity, RawJwks, RawProvider, RawRemoteJwks, RawRule,
    RawTokenSource, RawUpstream,
};
use super::{
    Config, ConfigError, IdentityConfig, IdpKind, JwksLocation, JwksSource, Performance, Provider,
    RemoteJwks, TokenSource,
};
use crate::alg::{Alg, KeyFamily};
use crate::databricks::exchange::{TokenEndpoint, UpstreamMode};
use crate::databricks::{DatabricksConfig, catalogue, upstream_tokens};
use crate::jwks::{FetchLocation, KeyOrigin, parse_jwks};
use crate::policy::{Access, PathPattern, Requirement, Rule, ScopeTemplate, Segment};

/// Identity headers brickgate always owns, after the prefix.
pub const BUILT_IN_HEADER_SUFFIXES: [&str; 9] = [
    "subject",
    "issuer",
    "provider",
    "client-id",
    "scopes",
    "groups",
    "principal-kind",
    "token-id",
    "rule",
];

const MAX_CONFIG_BYTES: usize = 1 << 20;

type Result<T> = std::result::Result<T, ConfigError>;

pub fn compile(bytes: &[u8]) -> Result<Config> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            "",
            format!("configuration exceeds {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        ConfigError::new(
            if field == "." { String::new() } else { field },
            e.inner().to_string(),
        )
    })?;

    if raw.providers.is_empty() {
        return Err(ConfigError::new(
            "providers",
            "at least one provider is required",
        ));
    }
    let mut providers = Vec::new();
    for (name, provider) in &raw.providers {
        let field = format!("providers.{name}");
        let compiled = compile_provider(&field, name, provider)?;
        if let Some(other) = providers
            .iter()
            .find(|p: &&Provider| p.issuer == compiled.issuer)
        {
            return Err(ConfigError::new(
                format!("{field}.issuer"),
                format!("same issuer as provider {}", other.name),
            ));
        }
        providers.push(compiled);
    }
    let databricks = compile_databricks(raw.databricks.as_ref(), &providers)?;
    let catalogue_on = databricks.as_ref().is_some_and(|d| d.route_catalogue);
    if raw.rules.is_empty() && !catalogue_on {
        return Err(ConfigError::new(
            "rules",
            "at least one rule is required (or enable databricks.route_catalogue)",
        ));
    }
    let mut rules = raw
        .rules
        .iter()
        .enumerate()
        .map(|(index, rule)| compile_rule(index, rule, &providers))
        .collect::<Result<Vec<_>>>()?;
    // The user's rules come first, so they add to and override the catalogue.
    if let Some(databricks) = databricks.as_ref().filter(|d| d.route_catalogue) {
        rules.extend(catalogue::rules(
            &databricks.catalogue_providers,
            databricks.allow_sensitive_routes,
        ));
    }
    let reads_model_from_body = rules
        .iter()
        .any(|rule| matches!(rule.pattern, PathPattern::ServingEndpoint(_)));
    let realm = raw.realm.clone().unwrap_or_else(|| "brickgate".to_string());
    let realm_ok = !realm.is_empty()
        && realm.len() <= 128
        && realm
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\');
    if !realm_ok {
        return Err(ConfigError::new(
            "realm",
            "1 to 128 printable ASCII characters, without \" or \\",
        ));
    }
    Ok(Config {
        realm,
        max_token_bytes: in_range("max_token_bytes", raw.max_token_bytes, 8192, 256, 65536)?
            as usize,
        providers,
        rules,
        identity: compile_identity(&raw.identity)?,
        performance: Performance {
            host_signatures: raw.performance.host_signatures.unwrap_or(true),
            token_cache_entries: in_range(
                "performance.token_cache_entries",
                raw.performance.token_cache_entries,
                1024,
                0,
                1_000_000,
            )? as usize,
            token_cache_bytes: in_range(
                "performance.token_cache_bytes",
                raw.performance.token_cache_bytes,
                8 << 20,
                4096,
                1 << 30,
            )? as usize,
            upstream_token_slots: in_range(
                "performance.upstream_token_slots",
                raw.performance.upstream_token_slots,
                upstream_tokens::DEFAULT_SLOTS as u64,
                16,
                65_536,
            )? as usize,
        },
        databricks,
        reads_model_from_body,
    })
}

fn in_range(field: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64> {
    let value = value.unwrap_or(default);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("{value} is outside {min}..={max}"),
        ))
    }
}

fn compile_provider(field: &str, name: &str, raw: &RawProvider) -> Result<Provider> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        return Err(ConfigError::new(
            field,
            "provider names are 1 to 64 of [a-z0-9_-]",
        ));
    }
    if raw.issuer.is_empty() || raw.issuer.len() > 1024 {
        return Err(ConfigError::new(
            format!("{field}.issuer"),
            "must be 1 to 1024 bytes",
        ));
    }
    let audiences = match (&raw.audiences, raw.allow_any_audience) {
        (Some(_), true) => {
            return Err(ConfigError::new(
                format!("{field}.allow_any_audience"),
                "cannot be combined with audiences",
            ));
        }
        (None, false) => {
            return Err(ConfigError::new(
                format!("{field}.audiences"),
                "required (or waive the check explicitly with \"allow_any_audience\": true)",
            ));
        }
        (None, true) => None,
        (Some(list), false) => {
            if list.is_empty() || list.iter().any(String::is_empty) {
                return Err(ConfigError::new(
                    format!("{field}.audiences"),
                    "must be a non-empty list of non-empty strings",
                ));
            }
            Some(list.clone())
        }
    };
    let jwks = compile_jwks(&format!("{field}.jwks"), &raw.issuer, &raw.jwks)?;
    let algorithms = compile_algorithms(
        &format!("{field}.algorithms"),
        raw.algorithms.as_deref(),
        &jwks,
    )?;
    let idp = match raw.idp.as_deref().unwrap_or("generic") {
        "generic" => IdpKind::Generic,
        "okta" => IdpKind::Okta,
        "entra" => IdpKind::Entra,
        "auth0" => IdpKind::Auth0,
        "databricks" => IdpKind::Databricks,
        other => {
            return Err(ConfigError::new(
                format!("{field}.idp"),
                format!("{other:?} is not one of generic, okta, entra, auth0, databricks"),
            ));
        }
    };
    let token_sources = match &raw.token_sources {
        None => vec![TokenSource::Header {
            name: "authorization".to_string(),
            prefix: Some("Bearer ".to_string()),
        }],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                format!("{field}.token_sources"),
                "must not be empty",
            ));
        }
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, source)| compile_token_source(&format!("{field}.token_sources[{i}]"), source))
            .collect::<Result<Vec<_>>>()?,
    };
    let claim_name = |sub: &str, value: Option<&String>, default: &str| -> Result<String> {
        let value = value.cloned().unwrap_or_else(|| default.to_string());
        if value.is_empty() {
            return Err(ConfigError::new(
                format!("{field}.claims.{sub}"),
                "must not be empty",
            ));
        }
        Ok(value)
    };
    let scope_claims = raw
        .claims
        .scopes
        .clone()
        .unwrap_or_else(|| vec!["scope".to_string(), "scp".to_string()]);
    if scope_claims.is_empty() || scope_claims.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}.claims.scopes"),
            "must be a non-empty list of claim names",
        ));
    }
    Ok(Provider {
        name: name.to_string(),
        issuer: raw.issuer.clone(),
        audiences,
        jwks,
        algorithms,
        clock_skew_s: in_range(
            &format!("{field}.clock_skew_s"),
            raw.clock_skew_s,
            60,
            0,
            600,
        )?,
        max_lifetime_s: in_range(
            &format!("{field}.max_lifetime_s"),
            raw.max_lifetime_s,
            86_400,
            60,
            31_536_000,
        )?,
        require_typ: raw.require_typ,
        idp,
        token_sources,
        scope_claims,
        subject_claim: claim_name("subject", raw.claims.subject.as_ref(), "sub")?,
        groups_claim: claim_name("groups", raw.claims.groups.as_ref(), "groups")?,
        upstream: compile_upstream(&format!("{field}.upstream"), raw.upstream.as_ref())?,
    })
}

fn compile_upstream(field: &str, raw: Option<&RawUpstream>) -> Result<UpstreamMode> {
    let Some(raw) = raw else {
        return Ok(UpstreamMode::PassThrough);
    };
    let endpoint = || -> Result<TokenEndpoint> {
        let cluster = raw
            .cluster
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.cluster"),
                    "required: the Envoy cluster of the workspace",
                )
            })?;
        let workspace = raw.workspace_url.as_deref().ok_or_else(|| {
            ConfigError::new(
                format!("{field}.workspace_url"),
                "required, e.g. https://adb-123.4.azuredatabricks.net",
            )
        })?;
        let location = FetchLocation::parse(workspace)
            .map_err(|problem| ConfigError::new(format!("{field}.workspace_url"), problem))?;
        let scopes = raw
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["all-apis".to_string()]);
        if scopes.is_empty() || scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
            return Err(ConfigError::new(
                format!("{field}.scopes"),
                "a non-empty list of scopes without spaces",
            ));
        }
        Ok(TokenEndpoint {
            cluster,
            location: FetchLocation {
                authority: location.authority,
                path: "/oidc/v1/token".to_string(),
            },
            scopes,
            client_id: raw.client_id.clone().filter(|c| !c.is_empty()),
            client_secret: raw.client_secret.clone().filter(|c| !c.is_empty()),
            timeout_ms: in_range(
                &format!("{field}.timeout_ms"),
                raw.timeout_ms,
                5000,
                100,
                60_000,
            )?,
        })
    };
    if raw.subject_claim.is_some() && raw.mode != "exchange" {
        return Err(ConfigError::new(
            format!("{field}.subject_claim"),
            "only for mode exchange (the claim the federation policy maps)",
        ));
    }
    match raw.mode.as_str() {
        "pass_through" => Ok(UpstreamMode::PassThrough),
        "exchange" => {
            if raw.client_secret.is_some() {
                return Err(ConfigError::new(
                    format!("{field}.client_secret"),
                    "token exchange sends no secret; client_id alone selects a service-principal federation policy",
                ));
            }
            let subject_claim = raw
                .subject_claim
                .clone()
                .unwrap_or_else(|| "sub".to_string());
            if subject_claim.is_empty() || subject_claim.len() > 256 {
                return Err(ConfigError::new(
                    format!("{field}.subject_claim"),
                    "a claim name of 1 to 256 characters, as the federation policy's subject_claim",
                ));
            }
            Ok(UpstreamMode::Exchange {
                endpoint: endpoint()?,
                subject_claim,
            })
        }
        "service_principal" => {
            let endpoint = endpoint()?;
            if endpoint.client_id.is_none() || endpoint.client_secret.is_none() {
                return Err(ConfigError::new(
                    field,
                    "service_principal needs client_id and client_secret",
                ));
            }
            Ok(UpstreamMode::ServicePrincipal(endpoint))
        }
        other => Err(ConfigError::new(
            format!("{field}.mode"),
            format!("{other:?} is not one of pass_through, exchange, service_principal"),
        )),
    }
}

fn compile_databricks(
    raw: Option<&RawDatabricks>,
    providers: &[Provider],
) -> Result<Option<DatabricksConfig>> {
    let Some(raw) = raw else { return Ok(None) };
    let catalogue_providers = match &raw.catalogue_providers {
        None => (0..providers.len()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                providers
                    .iter()
                    .position(|p| &p.name == name)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "databricks.catalogue_providers",
                            format!("unknown provider {name:?}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    if catalogue_providers.is_empty() {
        return Err(ConfigError::new(
            "databricks.catalogue_providers",
            "must name at least one provider",
        ));
    }
    Ok(Some(DatabricksConfig {
        route_catalogue: raw.route_catalogue,
        allow_sensitive_routes: raw.allow_sensitive_routes,
        catalogue_providers,
        max_body_bytes: in_range(
            "databricks.max_body_bytes",
            raw.max_body_bytes,
            1 << 20,
            1024,
            16 << 20,
        )? as usize,
        first_body_wait_ms: in_range(
            "databricks.first_body_wait_ms",
            raw.first_body_wait_ms,
            crate::stream::FIRST_BODY_WAIT_MS,
            100,
            60_000,
        )?,
    }))
}

fn compile_jwks(field: &str, issuer: &str, raw: &RawJwks) -> Result<JwksSource> {
    match (&raw.inline, &raw.remote) {
        (Some(inline), None) => {
            let field = format!("{field}.inline");
            let document = match inline {
                Value::String(text) => serde_json::from_str(text)
                    .map_err(|e| ConfigError::new(&field, format!("not JSON: {e}")))?,
                other => other.clone(),
            };
            let keys = parse_jwks(&document, KeyOrigin::Inline)
                .map_err(|problem| ConfigError::new(&field, problem))?;
            if let Some(skipped) = keys.skipped.first() {
                // An unusable key in hand-written config is a mistake, not IdP noise.
                return Err(ConfigError::new(
                    format!("{field}.keys[{}]", skipped.kid.as_deref().unwrap_or("?")),
                    skipped.why.clone(),
                ));
            }
            if keys.keys.is_empty() {
                return Err(ConfigError::new(field, "holds no keys"));
            }
            Ok(JwksSource::Inline(keys))
        }
        (None, Some(remote)) => Ok(JwksSource::Remote(compile_remote(
            &format!("{field}.remote"),
            issuer,
            remote,
        )?)),
        _ => Err(ConfigError::new(
            field,
            "exactly one of \"inline\" or \"remote\" is required",
        )),
    }
}

fn compile_remote(field: &str, issuer: &str, raw: &RawRemoteJwks) -> Result<RemoteJwks> {
    if raw.cluster.is_empty() {
        return Err(ConfigError::new(
            format!("{field}.cluster"),
            "must name an Envoy cluster",
        ));
    }
    let location = match &raw.uri {
        Some(uri) => JwksLocation::Fixed(
            FetchLocation::parse(uri)
                .map_err(|problem| ConfigError::new(format!("{field}.uri"), problem))?,
        ),
        None => JwksLocation::Discover {
            issuer: FetchLocation::parse(issuer).map_err(|problem| {
                ConfigError::new(
                    format!("{field}.uri"),
                    format!(
                        "absent, so keys are discovered from the issuer, but the issuer {problem}"
                    ),
                )
            })?,
        },
    };
    let range = |name: &str, value: Option<u64>, default: u64, min: u64, max: u64| {
        in_range(&format!("{field}.{name}"), value, default, min, max)
    };
    Ok(RemoteJwks {
        cluster: raw.cluster.clone(),
        location,
        refresh_interval_s: range("refresh_interval_s", raw.refresh_interval_s, 600, 1, 86_400)?,
        timeout_ms: range("timeout_ms", raw.timeout_ms, 5000, 100, 60_000)?,
        max_bytes: range("max_bytes", raw.max_bytes, 262_144, 1024, 4_194_304)?,
        max_stale_s: range("max_stale_s", raw.max_stale_s, 3600, 0, 604_800)?,
        refetch_min_interval_s: range(
            "refetch_min_interval_s",
            raw.refetch_min_interval_s,
            30,
            1,
            3600,
        )?,
        wait_for_keys_ms: range("wait_for_keys_ms", raw.wait_for_keys_ms, 5000, 0, 60_000)?,
    })
}

fn compile_algorithms(field: &str, raw: Option<&[String]>, jwks: &JwksSource) -> Result<Vec<Alg>> {
    let names: Vec<String> = match raw {
        None => vec!["RS256".to_string(), "ES256".to_string()],
        Some(names) => names.to_vec(),
    };
    if names.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    let mut algorithms = Vec::new();
    for name in &names {
        if name.eq_ignore_ascii_case("none") {
            return Err(ConfigError::new(field, "\"none\" is never accepted"));
        }
        let alg = Alg::parse(name)
            .ok_or_else(|| ConfigError::new(field, format!("unknown algorithm {name:?}")))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.iter().any(|alg| alg.is_hmac()) {
        let has_secret = matches!(jwks, JwksSource::Inline(keys)
            if keys.keys.iter().any(|k| k.family == KeyFamily::Hmac));
        if !has_secret {
            return Err(ConfigError::new(
                field,
                "HS* algorithms need a symmetric (kty \"oct\") key in jwks.inline",
            ));
        }
    }
    Ok(algorithms)
}

fn compile_token_source(field: &str, raw: &RawTokenSource) -> Result<TokenSource> {
    match (&raw.header, &raw.query) {
        (Some(header), None) => {
            if !is_header_name(header) {
                return Err(ConfigError::new(
                    format!("{field}.header"),
                    "must be a lower-case header name",
                ));
            }
            if raw.prefix.as_deref() == Some("") {
                return Err(ConfigError::new(
                    format!("{field}.prefix"),
                    "must not be empty",
                ));
            }
            Ok(TokenSource::Header {
                name: header.clone(),
                prefix: raw.prefix.clone(),
            })
        }
        (None, Some(param)) if raw.prefix.is_none() => {
            if param.is_empty()
                || !param
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ConfigError::new(
                    format!("{field}.query"),
                    "must be a plain parameter name",
                ));
            }
            Ok(TokenSource::Query {
                param: param.clone(),
            })
        }
        (None, Some(_)) => Err(ConfigError::new(
            format!("{field}.prefix"),
            "only applies to headers",
        )),
        _ => Err(ConfigError::new(
            field,
            "exactly one of \"header\" or \"query\" is required",
        )),
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn compile_rule(index: usize, raw: &RawRule, providers: &[Provider]) -> Result<Rule> {
    let field = format!("rules[{index}]");
    let name = raw.name.clone().unwrap_or_else(|| format!("rule-{index}"));
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            format!("{field}.name"),
            "1 to 128 printable ASCII characters, no spaces",
        ));
    }
    let matcher = &raw.matcher;
    let given = [
        &matcher.path,
        &matcher.prefix,
        &matcher.template,
        &matcher.serving_endpoint,
    ]
    .iter()
    .filter(|m| m.is_some())
    .count();
    if given != 1 {
        return Err(ConfigError::new(
            format!("{field}.match"),
            "exactly one of \"path\", \"prefix\", \"template\" or \"serving_endpoint\" is required",
        ));
    }
    let pattern = if let Some(path) = &matcher.path {
        if !path.starts_with('/') {
            return Err(ConfigError::new(
                format!("{field}.match.path"),
                "paths start with /",
            ));
        }
        PathPattern::Exact(path.clone())
    } else if let Some(prefix) = &matcher.prefix {
        if !prefix.starts_with('/') {
            return Err(ConfigError::new(
                format!("{field}.match.prefix"),
                "prefixes start with /",
            ));
        }
        PathPattern::Prefix(prefix.clone())
    } else if let Some(template) = &matcher.template {
        PathPattern::template(template)
            .map_err(|problem| ConfigError::new(format!("{field}.match.template"), problem))?
    } else {
        let endpoint = matcher.serving_endpoint.as_deref().unwrap_or_default();
        let variable = endpoint.strip_prefix('{').and_then(|e| e.strip_suffix('}'));
        let valid_name = |name: &str| {
            !name.is_empty()
                && name.len() <= 256
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match variable {
            Some(var) if valid_name(var) => {
                PathPattern::ServingEndpoint(Segment::Variable(var.to_string()))
            }
            None if valid_name(endpoint) => {
                PathPattern::ServingEndpoint(Segment::Literal(endpoint.to_string()))
            }
            _ => {
                return Err(ConfigError::new(
                    format!("{field}.match.serving_endpoint"),
                    "an endpoint name ([A-Za-z0-9._-]) or {variable}",
                ));
            }
        }
    };
    let methods = match &matcher.methods {
        None => None,
        Some(list) => {
            let valid = !list.is_empty()
                && list
                    .iter()
                    .all(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase()));
            if !valid {
                return Err(ConfigError::new(
                    format!("{field}.match.methods"),
                    "must be a non-empty list of upper-case methods",
                ));
            }
            Some(list.clone())
        }
    };
    let access = if raw.allow_anonymous {
        if raw.providers.is_some() || raw.require.is_some() {
            return Err(ConfigError::new(
                format!("{field}.allow_anonymous"),
                "cannot be combined with providers or require",
            ));
        }
        Access::Anonymous
    } else {
        let names = raw
            .providers
            .as_ref()
            .filter(|list| !list.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    format!("{field}.providers"),
                    "required (or set \"allow_anonymous\": true)",
                )
            })?;
        let mut indices = Vec::new();
        for name in names {
            let index = providers
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| {
                    ConfigError::new(
                        format!("{field}.providers"),
                        format!("unknown provider {name:?}"),
                    )
                })?;
            indices.push(index);
        }
        let require = raw
            .require
            .as_ref()
            .map(|r| compile_require(&field, r, &pattern))
            .transpose()?;
        Access::Token {
            providers: indices,
            require: require.unwrap_or_default(),
        }
    };
    Ok(Rule {
        name,
        pattern,
        methods,
        access,
    })
}

fn compile_require(
    field: &str,
    raw: &super::raw::RawRequire,
    pattern: &PathPattern,
) -> Result<Requirement> {
    let variables = pattern.variables();
    let scopes = |sub: &str, list: &[String]| -> Result<Vec<ScopeTemplate>> {
        list.iter()
            .map(|scope| {
                let field = format!("{field}.require.{sub}");
                if scope.is_empty() || scope.contains(' ') {
                    return Err(ConfigError::new(
                        field,
                        "scopes are non-empty and contain no spaces",
                    ));
                }
                let template = ScopeTemplate(scope.clone());
                if let Some(unbound) = template
                    .variables()
                    .into_iter()
                    .find(|v| !variables.contains(v))
                {
                    return Err(ConfigError::new(
                        field,
                        format!(
                            "{scope:?} uses {{{unbound}}}, which the rule's template does not bind"
                        ),
                    ));
                }
                Ok(template)
            })
            .collect()
    };
    if raw.groups_any.iter().any(String::is_empty) {
        return Err(ConfigError::new(
            format!("{field}.require.groups_any"),
            "group names are non-empty",
        ));
    }
    Ok(Requirement {
        scopes_all: scopes("scopes_all", &raw.scopes_all)?,
        scopes_any: scopes("scopes_any", &raw.scopes_any)?,
        groups_any: raw.groups_any.clone(),
    })
}

fn compile_identity(raw: &RawIdentity) -> Result<IdentityConfig> {
    let prefix = raw
        .header_prefix
        .clone()
        .unwrap_or_else(|| "x-brickgate-".to_string());
    let prefix_ok = prefix.len() >= 3
        && prefix.ends_with('-')
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !prefix_ok {
        return Err(ConfigError::new(
            "identity.header_prefix",
            "lower-case [a-z0-9-], at least 3 characters, ending in -",
        ));
    }
    let mut claim_headers = Vec::new();
    for (claim, suffix) in &raw.claim_headers {
        let field = format!("identity.claim_headers.{claim}");
        if claim.is_empty() || claim.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                field,
                "claim names are non-empty, dot-separated",
            ));
        }
        if suffix.is_empty() || !is_header_name(suffix) || suffix.contains('_') {
            return Err(ConfigError::new(
                field,
                "header suffixes are lower-case [a-z0-9-]",
            ));
        }
        if BUILT_IN_HEADER_SUFFIXES.contains(&suffix.as_str()) {
            return Err(ConfigError::new(
                field,
                format!("{suffix:?} is a built-in identity header"),
            ));
        }
        claim_headers.push((claim.clone(), format!("{prefix}{suffix}")));
    }
    Ok(IdentityConfig {
        header_prefix: prefix,
        forward_authorization: raw.forward_authorization.unwrap_or(true),
        claim_headers,
    })
}

#[cfg(test)]
mod tests;
