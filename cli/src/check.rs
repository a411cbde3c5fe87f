//! `brickgate check CONFIG`: the plugin's own validation, then the compiled table.

use crate::args::{Args, load_config};
use crate::{Outcome, describe};

pub fn run(args: &Args) -> Result<Outcome, String> {
    let [path] = args.positionals(&["CONFIG"])? else {
        return Err("expected CONFIG".to_string());
    };
    let config = load_config(path)?;
    println!("configuration {path} is valid");
    let top = if config.dry_run.everything {
        "dry_run"
    } else {
        "enforce"
    };
    println!("mode: {top}, realm {:?}", config.realm);
    println!("providers:");
    for index in 0..config.providers.len() {
        println!("  {}", describe::provider(&config, index));
    }
    let catalogue = config
        .databricks
        .as_ref()
        .is_some_and(|d| d.route_catalogue);
    println!(
        "rules, first match wins ({} rules{}):",
        config.rules.len(),
        if catalogue {
            ", Databricks route catalogue included"
        } else {
            ""
        }
    );
    for (index, rule) in config.rules.iter().enumerate() {
        println!("{}", describe::rule(&config, index, rule));
    }
    println!("anything else: refused (no_matching_rule)");
    let warnings = brickgate_core::databricks::token_scopes::configuration_warnings(&config);
    if !warnings.is_empty() {
        println!(
            "warnings (Databricks tokens carry each caller's own scopes, docs/DATABRICKS.md):"
        );
        for warning in warnings {
            println!("  warning: {warning}");
        }
    }
    Ok(Outcome::Allowed)
}
