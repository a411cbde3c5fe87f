//! `brickgate route [--config CONFIG] METHOD PATH`: which rule a request falls under and what
//! it needs, by the plugin's own path canonicalisation and rule choice. Without a
//! configuration, the Databricks route catalogue alone answers.

use brickgate_core::config::Config;
use brickgate_core::databricks::serving;
use brickgate_core::policy::{Access, match_rule, normalize_path};
use brickgate_core::request_hygiene;

use brickgate_core::databricks::catalogue::{check_api_spelling, route_class};
use serde_json::{Value, json};

use crate::args::{Args, load_config, read_file};
use crate::{Outcome, describe, output};

/// The catalogue with one provider standing for "any configured provider".
const CATALOGUE_ONLY: &str = r#"{
  "providers": {"any": {"issuer": "https://any-provider.invalid", "allow_any_audience": true,
                        "jwks": {"remote": {"cluster": "idp", "uri": "https://any-provider.invalid/keys"}}}},
  "databricks": {"route_catalogue": true}
}"#;

pub fn run(args: &Args) -> Result<Outcome, String> {
    let mut report = Report {
        lines: Vec::new(),
        document: json!({"schema": "brickgate.route/v1"}),
    };
    let outcome = answer(args, &mut report)?;
    report.set(
        "outcome",
        json!(if outcome == Outcome::Allowed {
            "allowed"
        } else {
            "refused"
        }),
    );
    if args.json {
        output::document(&report.document);
    } else {
        for line in &report.lines {
            output::line(line);
        }
    }
    Ok(outcome)
}

/// The answer both ways: lines for people, fields for `--json`.
struct Report {
    lines: Vec<String>,
    document: Value,
}

impl Report {
    fn line(&mut self, text: String) {
        self.lines.push(text);
    }

    fn set(&mut self, field: &str, value: Value) {
        if let Some(object) = self.document.as_object_mut() {
            object.insert(field.to_string(), value);
        }
    }

    fn refused(&mut self, reason: &str, detail: String) -> Outcome {
        self.set("reason", json!(reason));
        self.set("detail", json!(detail));
        Outcome::Refused
    }
}

fn answer(args: &Args, report: &mut Report) -> Result<Outcome, String> {
    let [method, path] = args.positionals(&["METHOD", "PATH"])? else {
        return Err("expected METHOD PATH".to_string());
    };
    let config = match args.flag("config") {
        Some(file) => load_config(args, file)?,
        None => Config::from_json(CATALOGUE_ONLY.as_bytes())
            .map_err(|e| format!("built-in catalogue: {e}"))?,
    };
    let body = args
        .flag("body")
        .map(|f| read_file(f, "body"))
        .transpose()?;
    // As the plugin: the method as sent, refused unless spelled exactly (`Post` is not `POST`).
    if let Err(error) = request_hygiene::check_method(method) {
        report.line(format!("refused (bad_method): {}", error.detail));
        return Ok(report.refused("bad_method", error.detail));
    }
    let method = method.to_string();
    let normalized = match normalize_path(path) {
        Ok(normalized) => normalized,
        Err(problem) => {
            report.line(format!("refused (bad_path): {problem}"));
            return Ok(report.refused("bad_path", problem.to_string()));
        }
    };
    let catalogue_on = config
        .databricks
        .as_ref()
        .is_some_and(|d| d.route_catalogue);
    if catalogue_on && let Err(problem) = check_api_spelling(&normalized.path) {
        report.line(format!("refused (bad_path): {problem}"));
        return Ok(report.refused("bad_path", problem));
    }
    report.line(format!("canonical path: {}", normalized.path));
    report.set("method", json!(method));
    report.set("path", json!(normalized.path));
    report.set(
        "class",
        json!(route_class(&method, &normalized.path).map(|c| c.name())),
    );
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
        report.line(format!("serving endpoint: {endpoint}"));
        report.set("serving_endpoint", json!(endpoint));
    }
    let chosen = match match_rule(&config.rules, &method, &normalized.path, endpoint) {
        Ok(chosen) => chosen,
        Err(conflict) => {
            let error = conflict.into_error(model.is_some());
            report.line(format!(
                "refused ({}): {}",
                error.reason.as_str(),
                error.detail
            ));
            return Ok(report.refused(error.reason.as_str(), error.detail));
        }
    };
    let Some((rule, bindings)) = chosen else {
        let detail = format!("no rule matches {method} {}", normalized.path);
        report.line(format!("{detail}: refused (no_matching_rule)"));
        return Ok(report.refused("no_matching_rule", detail));
    };
    report.line(format!(
        "rule: {} ({} {})",
        rule.name,
        describe::methods(rule),
        describe::pattern(&rule.pattern)
    ));
    report.set(
        "rule",
        json!({"name": rule.name, "methods": rule.methods, "pattern": describe::pattern(&rule.pattern)}),
    );
    for (name, value) in &bindings {
        report.line(format!("  binds {{{name}}} = {value}"));
    }
    report.set(
        "bindings",
        Value::Object(
            bindings
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect(),
        ),
    );
    match &rule.access {
        Access::Anonymous => {
            report.line("needs: nothing (anonymous)".to_string());
            report.set("needs", json!("anonymous"));
            Ok(Outcome::Allowed)
        }
        Access::Refuse(why) => {
            report.line(format!("refused (route_disabled): {why}"));
            Ok(report.refused("route_disabled", why.to_string()))
        }
        Access::Token { providers, require } => {
            let render = |list: &[brickgate_core::policy::ScopeTemplate]| {
                list.iter().map(|s| s.render(&bindings)).collect::<Vec<_>>()
            };
            let names = describe::provider_names(&config, providers);
            report.line(format!("needs: a token from [{}]", names.join(", ")));
            if !require.scopes_all.is_empty() {
                let scopes = render(&require.scopes_all).join(" ");
                report.line(format!("  with all of scopes: {scopes}"));
            }
            if !require.scopes_any.is_empty() {
                let scopes = render(&require.scopes_any).join(" ");
                report.line(format!("  with any of scopes: {scopes}"));
            }
            if !require.groups_any.is_empty() {
                report.line(format!(
                    "  in any of groups: {}",
                    require.groups_any.join(" ")
                ));
            }
            report.set(
                "needs",
                json!({
                    "providers": names,
                    "scopes_all": render(&require.scopes_all),
                    "scopes_any": render(&require.scopes_any),
                    "groups_any": require.groups_any,
                }),
            );
            Ok(Outcome::Allowed)
        }
    }
}
