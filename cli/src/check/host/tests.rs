use brickgate_core::config::Config;
use serde_json::{Value, json};

use super::*;

fn config(body_rules: &str, serving_rule: bool) -> Config {
    let mut rules =
        vec![json!({"name": "jobs", "match": {"prefix": "/api/"}, "providers": ["okta"]})];
    if serving_rule {
        rules.push(json!({"name": "serving", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"]}));
    }
    let config = json!({
        "body_rules": body_rules,
        "providers": {"okta": {"issuer": "https://okta.test", "allow_any_audience": true,
                               "jwks": {"remote": {"cluster": "idp", "uri": "https://okta.test/keys"}}}},
        "rules": Value::Array(rules),
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

fn envoy(stops_at_headers: bool, next: Option<(&str, Option<&str>)>) -> Host {
    Host::Envoy {
        stops_at_headers,
        next: next.map(|(name, type_url)| NextFilter::Filter {
            name: name.to_string(),
            type_url: type_url.map(str::to_string),
        }),
    }
}

#[test]
fn each_mode_is_checked_against_the_filter_the_file_shows() {
    let router = Some(("envoy.filters.http.router", None));
    let buffer_by_name = Some((BUFFER_NAME, None));
    let buffer_by_type = Some(("hold", Some(BUFFER_TYPE)));
    let last = Host::Envoy {
        stops_at_headers: false,
        next: Some(NextFilter::None),
    };
    // (mode, serving rule, host, what the one warning says) — None: no warning.
    #[rustfmt::skip]
    let cases: Vec<(&str, bool, Host, Option<&[&str]>)> = vec![
        ("buffer_filter", true, envoy(false, router), Some(&["the filter after it is envoy.filters.http.router", "reach the upstream"])),
        ("buffer_filter", true, last, Some(&["no filter follows it"])),
        ("buffer_filter", true, envoy(false, buffer_by_name), None),
        ("buffer_filter", true, envoy(false, buffer_by_type), None),
        // An ECDS file alone, a mesh object: the chain is not in the file.
        ("buffer_filter", true, envoy(false, None), None),
        ("buffer_filter", true, Host::ControlPlane("Istio's WasmPlugin"), None),
        ("hold_headers", true, envoy(false, router), Some(&["lacks allow_on_headers_stop_iteration", "body-form serving request", "503"])),
        ("hold_headers", false, envoy(false, router), Some(&["invocation without Content-Length", "body_rules: off"])),
        ("hold_headers", true, envoy(true, router), None),
        ("hold_headers", true, Host::ControlPlane("Envoy Gateway's EnvoyExtensionPolicy"), Some(&["Envoy Gateway's EnvoyExtensionPolicy cannot set", "buffer_filter"])),
        ("hold_headers", true, Host::Unknown, None),
        ("off", false, envoy(false, router), None),
        ("off", false, Host::ControlPlane("Istio's WasmPlugin"), None),
    ];
    for (mode, serving, host, says) in cases {
        let warnings = warnings(&config(mode, serving), &host);
        let what = format!("{mode} serving={serving} {host:?}");
        match says {
            None => assert!(warnings.is_empty(), "{what}: {warnings:?}"),
            Some(phrases) => {
                assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
                for phrase in phrases {
                    assert!(
                        warnings[0].contains(phrase),
                        "{what}: {phrase:?} in {}",
                        warnings[0]
                    );
                }
            }
        }
    }
}
