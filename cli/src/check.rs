//! `brickgate check CONFIG`: the plugin's own validation, then the compiled table.

use brickgate_core::config::Config;

use crate::args::{Args, load_config_and_host};
use crate::loader::Host;
use crate::{Outcome, describe, json, outln, output};

mod host;

pub fn run(args: &Args) -> Result<Outcome, String> {
    let [path] = args.positionals(&["CONFIG"])? else {
        return Err("expected CONFIG".to_string());
    };
    let (config, host) = load_config_and_host(args, path).inspect_err(|problem| {
        if args.json {
            output::document(&json::invalid(problem));
        }
    })?;
    let warnings = warnings(&config, &host);
    if args.json {
        output::document(&json::check(&config, &warnings));
        return Ok(Outcome::Allowed);
    }
    outln!("configuration {path} is valid");
    let top = if config.dry_run.everything {
        "dry_run"
    } else {
        "enforce"
    };
    outln!("mode: {top}, realm {:?}", config.realm);
    outln!("providers:");
    for index in 0..config.providers.len() {
        outln!("  {}", describe::provider(&config, index));
    }
    let catalogue = config
        .databricks
        .as_ref()
        .is_some_and(|d| d.route_catalogue);
    outln!(
        "rules, first match wins ({} rules{}):",
        config.rules.len(),
        if catalogue {
            ", Databricks route catalogue included"
        } else {
            ""
        }
    );
    for (index, rule) in config.rules.iter().enumerate() {
        outln!("{}", describe::rule(&config, index, rule));
    }
    outln!("anything else: refused (no_matching_rule)");
    if !warnings.is_empty() {
        outln!("warnings:");
        for warning in &warnings {
            outln!("  warning: {warning}");
        }
    }
    Ok(Outcome::Allowed)
}

/// What is valid but likely not meant: printed after the table, listed by `--json`. Scope
/// notes (Databricks tokens carry each caller's own scopes, docs/DATABRICKS.md), rule orders
/// the `body_rules` mode cannot carry out, and what the file shows of the filter around
/// brickgate.
pub fn warnings(config: &Config, host: &Host) -> Vec<String> {
    let mut warnings = brickgate_core::config::configuration_warnings(config);
    warnings.extend(brickgate_core::config::body_mode_warnings(config));
    warnings.extend(host::warnings(config, host));
    warnings
}
