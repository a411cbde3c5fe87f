use serde_json::{Value, json};

use crate::config::{Config, body_mode_warnings};

const PUBLIC_JWKS: &str = include_str!("../../../../tests/keys/public-jwks.json");

fn config(body_rules: &str, rules: Value, catalogue: bool) -> Result<Config, String> {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).map_err(|e| e.to_string())?;
    let config = json!({
        "body_rules": body_rules,
        "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"],
                               "jwks": {"inline": jwks}}},
        "rules": rules,
        "databricks": {"route_catalogue": catalogue}
    });
    Config::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn token_rule(name: &str, endpoint: &str) -> Value {
    json!({"name": name, "match": {"serving_endpoint": endpoint}, "providers": ["okta"]})
}

fn anonymous_rule(name: &str, endpoint: &str) -> Value {
    json!({"name": name, "match": {"serving_endpoint": endpoint}, "allow_anonymous": true})
}

fn path_rule(name: &str, prefix: &str) -> Value {
    json!({"name": name, "match": {"prefix": prefix}, "providers": ["okta"]})
}

#[test]
fn off_refuses_the_first_rule_the_body_would_choose_naming_it() {
    // (rules, catalogue, the field the error names) — None: valid.
    let cases: Vec<(Value, bool, Option<&str>)> = vec![
        (
            json!([
                path_rule("a", "/api/"),
                path_rule("b", "/x/"),
                path_rule("c", "/y/"),
                token_rule("d", "{name}")
            ]),
            false,
            Some("rules[3].match.serving_endpoint"),
        ),
        (
            json!([anonymous_rule("open", "public"), token_rule("d", "{name}")]),
            false,
            Some("rules[0].match.serving_endpoint"),
        ),
        // Path rules (serving routes included) and the catalogue are decided at the headers.
        (
            json!([path_rule("serving", "/serving-endpoints/")]),
            false,
            None,
        ),
        (json!([]), true, None),
    ];
    for (rules, catalogue, field) in cases {
        let result = config("off", rules.clone(), catalogue);
        match field {
            None => assert!(result.is_ok(), "{rules}: {result:?}"),
            Some(field) => {
                let error = result.err().unwrap_or_default();
                assert!(error.starts_with(field), "{rules}: {error}");
                for why in [
                    "body_rules: off",
                    "cannot give brickgate the body",
                    "buffer_filter",
                    "hold_headers",
                ] {
                    assert!(error.contains(why), "{rules}: says not {why:?}: {error}");
                }
            }
        }
        // The same rules are valid in the modes that read bodies.
        for mode in ["hold_headers", "buffer_filter"] {
            assert!(
                config(mode, rules.clone(), catalogue).is_ok(),
                "{mode} {rules}"
            );
        }
    }
}

#[test]
fn an_unknown_mode_lists_off() {
    let error = config("never", json!([path_rule("a", "/")]), false)
        .err()
        .unwrap_or_default();
    assert!(error.starts_with("body_rules"), "{error}");
    assert!(error.contains("\"off\""), "{error}");
}

#[test]
fn buffer_filter_warns_of_an_anonymous_endpoint_rule_before_token_ones() {
    // (rules, mode, the rules the warnings name) — each warning names the token rule.
    let cases: Vec<(Value, &str, Vec<&str>)> = vec![
        (
            json!([
                anonymous_rule("open", "public"),
                token_rule("team", "fraud"),
                path_rule("p", "/api/"),
                token_rule("any", "{name}")
            ]),
            "buffer_filter",
            vec!["rules[1] (team)", "rules[3] (any)"],
        ),
        // Token rules first: the anonymous rule admits only what the body gives it.
        (
            json!([
                token_rule("team", "fraud"),
                anonymous_rule("open", "{name}")
            ]),
            "buffer_filter",
            vec![],
        ),
        // An anonymous rule for GET only is no candidate for a body-form POST.
        (
            json!([{"name": "get", "match": {"serving_endpoint": "x", "methods": ["GET"]},
                    "allow_anonymous": true}, token_rule("team", "fraud")]),
            "buffer_filter",
            vec![],
        ),
        // Holding the headers, the rule the body selects makes its own header changes.
        (
            json!([
                anonymous_rule("open", "public"),
                token_rule("team", "fraud")
            ]),
            "hold_headers",
            vec![],
        ),
    ];
    for (rules, mode, named) in cases {
        let config = config(mode, rules.clone(), false).unwrap();
        let warnings = body_mode_warnings(&config);
        assert_eq!(warnings.len(), named.len(), "{rules}: {warnings:?}");
        for (warning, name) in warnings.iter().zip(named) {
            assert!(warning.starts_with(name), "{warning}");
            for why in [
                "rules[0] (open)",
                "503 internal_error",
                "put the token rules first",
            ] {
                assert!(warning.contains(why), "{warning}");
            }
        }
    }
}
