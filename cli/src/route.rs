//! `brickgate route [--config CONFIG] METHOD PATH`: which rule a request falls under and what
//! it needs, by the plugin's own path canonicalisation and rule choice. Without a
//! configuration, the Databricks route catalogue alone answers.

use brickgate_core::config::Config;
use brickgate_core::databricks::serving;
use brickgate_core::policy::{Access, match_rule, normalize_path};

use crate::args::{Args, load_config, read_file};
use crate::{Outcome, describe};

/// The catalogue with one provider standing for "any configured provider".
const CATALOGUE_ONLY: &str = r#"{
  "providers": {"any": {"issuer": "https://any-provider.invalid", "allow_any_audience": true,
                        "jwks": {"remote": {"cluster": "idp", "uri": "https://any-provider.invalid/keys"}}}},
  "databricks": {"route_catalogue": true}
}"#;

pub fn run(args: &Args) -> Result<Outcome, String> {
    let [method, path] = args.positionals(&["METHOD", "PATH"])? else {
        return Err("expected METHOD PATH".to_string());
    };
    let config = match args.flag("config") {
        Some(file) => load_config(file)?,
        None => Config::from_json(CATALOGUE_ONLY.as_bytes())
            .map_err(|e| format!("built-in catalogue: {e}"))?,
    };
    let body = args
        .flag("body")
        .map(|f| read_file(f, "body"))
        .transpose()?;
    let method = method.to_ascii_uppercase();
    let normalized = match normalize_path(path) {
        Ok(normalized) => normalized,
        Err(problem) => {
            println!("refused (bad_path): {problem}");
            return Ok(Outcome::Refused);
        }
    };
    println!("canonical path: {}", normalized.path);
    let limit = config
        .databricks
        .as_ref()
        .map_or(1 << 20, |d| d.max_body_bytes);
    let model = match &body {
        Some(body) if serving::endpoint_in_body(&method, &normalized.path) => {
            Some(serving::model_from_body(body, limit).map_err(|e| e.detail)?)
        }
        _ => None,
    };
    let endpoint = serving::endpoint(&method, &normalized.path, model.as_deref());
    if let Some(endpoint) = endpoint {
        println!("serving endpoint: {endpoint}");
    }
    let chosen = match match_rule(&config.rules, &method, &normalized.path, endpoint) {
        Ok(chosen) => chosen,
        Err(conflict) => {
            let error = conflict.into_error(model.is_some());
            println!("refused ({}): {}", error.reason.as_str(), error.detail);
            return Ok(Outcome::Refused);
        }
    };
    let Some((rule, bindings)) = chosen else {
        println!(
            "no rule matches {method} {}: refused (no_matching_rule)",
            normalized.path
        );
        return Ok(Outcome::Refused);
    };
    println!(
        "rule: {} ({} {})",
        rule.name,
        describe::methods(rule),
        describe::pattern(&rule.pattern)
    );
    for (name, value) in &bindings {
        println!("  binds {{{name}}} = {value}");
    }
    match &rule.access {
        Access::Anonymous => {
            println!("needs: nothing (anonymous)");
            Ok(Outcome::Allowed)
        }
        Access::Refuse(why) => {
            println!("refused (route_disabled): {why}");
            Ok(Outcome::Refused)
        }
        Access::Token { providers, require } => {
            let render = |list: &[brickgate_core::policy::ScopeTemplate]| {
                list.iter()
                    .map(|s| s.render(&bindings))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "needs: a token from [{}]",
                describe::provider_names(&config, providers).join(", ")
            );
            if !require.scopes_all.is_empty() {
                println!("  with all of scopes: {}", render(&require.scopes_all));
            }
            if !require.scopes_any.is_empty() {
                println!("  with any of scopes: {}", render(&require.scopes_any));
            }
            if !require.groups_any.is_empty() {
                println!("  in any of groups: {}", require.groups_any.join(" "));
            }
            Ok(Outcome::Allowed)
        }
    }
}
