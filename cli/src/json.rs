//! The `--json` documents: stable field names, one document per run, for scripts and CI.
//! A field is added, never renamed or removed; `schema` names the document's shape.

use brickgate_core::config::Config;
use brickgate_core::databricks::exchange::UpstreamMode;
use brickgate_core::policy::Rule;
use serde_json::{Value, json};

use crate::describe;

/// `check`: the configuration did not load.
pub fn invalid(problem: &str) -> Value {
    json!({"schema": "brickgate.check/v1", "valid": false, "error": problem})
}

/// `check`: the compiled configuration.
pub fn check(config: &Config, warnings: &[String]) -> Value {
    let providers: Vec<Value> = (0..config.providers.len())
        .filter_map(|index| {
            let p = config.providers.get(index)?;
            Some(json!({
                "name": p.name,
                "issuer": p.issuer,
                "audiences": p.audiences,
                "algorithms": p.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
                "upstream": match &p.upstream {
                    UpstreamMode::PassThrough => "pass_through",
                    UpstreamMode::Exchange { .. } => "exchange",
                    UpstreamMode::ServicePrincipal(_) => "service_principal",
                },
                "dry_run": config.dry_run.everything || config.dry_run.providers.contains(&p.name),
                "summary": describe::provider(config, index),
            }))
        })
        .collect();
    let rules: Vec<Value> = config
        .rules
        .iter()
        .enumerate()
        .map(|(index, r)| rule(config, index, r))
        .collect();
    json!({
        "schema": "brickgate.check/v1",
        "valid": true,
        "mode": if config.dry_run.everything { "dry_run" } else { "enforce" },
        "realm": config.realm,
        "route_catalogue": config.databricks.as_ref().is_some_and(|d| d.route_catalogue),
        "providers": providers,
        "rules": rules,
        "warnings": warnings,
    })
}

pub fn rule(config: &Config, index: usize, rule: &Rule) -> Value {
    json!({
        "index": index,
        "name": rule.name,
        "methods": rule.methods,
        "pattern": describe::pattern(&rule.pattern),
        "access": describe::access(config, rule),
        "dry_run": config.dry_run.everything || config.dry_run.rules.contains(&rule.name),
    })
}

/// Every string (keys included) of `value` passed through `clean`: how `explain` keeps the
/// token out of its document, whatever field carries it and however JSON would escape it.
pub fn cleaned(value: Value, clean: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(text) => Value::String(clean(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| cleaned(v, clean)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (clean(&k), cleaned(v, clean)))
                .collect(),
        ),
        other => other,
    }
}
