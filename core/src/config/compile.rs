//! Raw DTOs → validated domain types. Every check names the field it concerns.

use super::dry_run::{DryRun, parse_mode};
use super::raw::{RawConfig, RawIdentity};
use super::{AuditOutputs, BodyRules, Config, ConfigError, IdentityConfig, Performance, Provider};
use crate::databricks::{catalogue, upstream_tokens};
use crate::identity::PUBLISHED_FIELDS;
use crate::policy::PathPattern;

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

mod provider;
mod rule;
mod secrets;
mod upstream;

pub use secrets::EnvLookup;
use secrets::Secrets;

use provider::{compile_provider, is_header_name};
use rule::compile_rule;
use upstream::compile_databricks;

type Result<T> = std::result::Result<T, ConfigError>;

pub fn compile(bytes: &[u8], env: EnvLookup<'_>) -> Result<Config> {
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
    let secrets = Secrets {
        env,
        allow_inline: raw.allow_inline_secrets,
    };
    let mut providers = Vec::new();
    for (name, provider) in &raw.providers {
        let field = format!("providers.{name}");
        let compiled = compile_provider(&field, name, provider, secrets)?;
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
            &databricks.enabled_route_classes,
        ));
    }
    let body_rules = compile_body_rules(raw.body_rules.as_deref())?;
    super::body_mode::refuse_body_rules(body_rules, &rules)?;
    let dry_run = compile_dry_run(&raw)?;
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
        bypass_cors_preflight: raw.bypass_cors_preflight,
        dry_run,
        audit: AuditOutputs {
            log_line: raw.audit.log_line.unwrap_or(false),
            // On unless turned off explicitly: a gateway installed from the README snippet must
            // leave a record of each decision. It costs Envoy a few µs per request
            // (docs/BENCHMARKS.md), and nothing is written unless an access log reads it.
            filter_state: raw.audit.filter_state.unwrap_or(true),
        },
        body_rules,
    })
}

fn compile_body_rules(value: Option<&str>) -> Result<BodyRules> {
    match value {
        None | Some("hold_headers") => Ok(BodyRules::HoldHeaders),
        Some("buffer_filter") => Ok(BodyRules::BufferFilter),
        Some("off") => Ok(BodyRules::Off),
        Some(other) => Err(ConfigError::new(
            "body_rules",
            format!(
                "{:?} is not one of \"hold_headers\", \"buffer_filter\", \"off\"",
                crate::error::echo_at_most(other, 32)
            ),
        )),
    }
}

/// The `mode` fields: which rules and providers (or everything) only report refusals.
fn compile_dry_run(raw: &RawConfig) -> Result<DryRun> {
    let mode = |field: String, value: Option<&String>| {
        parse_mode(value.map(String::as_str)).map_err(|problem| ConfigError::new(field, problem))
    };
    let mut dry_run = DryRun {
        everything: mode("mode".to_string(), raw.mode.as_ref())?,
        ..DryRun::default()
    };
    for (name, provider) in &raw.providers {
        if mode(format!("providers.{name}.mode"), provider.mode.as_ref())? {
            dry_run.providers.push(name.clone());
        }
    }
    for (index, rule) in raw.rules.iter().enumerate() {
        if mode(format!("rules[{index}].mode"), rule.mode.as_ref())? {
            let name = rule.name.clone().unwrap_or_else(|| format!("rule-{index}"));
            dry_run.rules.push(name);
        }
    }
    Ok(dry_run)
}

pub(super) fn in_range(
    field: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64> {
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
    let built_in = match &raw.headers {
        None => BUILT_IN_HEADER_SUFFIXES.to_vec(),
        Some(names) => choose("identity.headers", names, &BUILT_IN_HEADER_SUFFIXES)?,
    };
    let publish = match &raw.publish {
        None => Vec::new(),
        Some(names) => choose("identity.publish", names, &PUBLISHED_FIELDS)?,
    };
    let rule_header = built_in.contains(&"rule").then(|| format!("{prefix}rule"));
    Ok(IdentityConfig {
        built_in,
        rule_header,
        header_prefix: prefix,
        forward_authorization: raw.forward_authorization.unwrap_or(true),
        claim_headers,
        publish,
    })
}

/// Names chosen from a fixed list, each at most once; an unknown or repeated one is named by
/// its position (`identity.headers[2]`).
fn choose(field: &str, names: &[String], known: &[&'static str]) -> Result<Vec<&'static str>> {
    let mut chosen: Vec<&'static str> = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let field = format!("{field}[{index}]");
        let found = known
            .iter()
            .find(|known| **known == name.as_str())
            .ok_or_else(|| {
                ConfigError::new(
                    field.clone(),
                    format!(
                        "{:?} is not one of {}",
                        crate::error::echo(name),
                        known.join(", ")
                    ),
                )
            })?;
        if chosen.contains(found) {
            return Err(ConfigError::new(
                field,
                format!("{found:?} is listed twice"),
            ));
        }
        chosen.push(found);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests;
