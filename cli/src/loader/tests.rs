//! The loader on each format (tiny inline fixtures, written to temporary files) and on the
//! files the repository ships.

use base64::Engine;

use super::*;

const PLUGIN: &str = r#"{"providers": {"p": {"issuer": "https://idp.example", "allow_any_audience": true,
  "jwks": {"remote": {"cluster": "idp", "uri": "https://idp.example/keys"}}}},
  "rules": [{"name": "all", "match": {"prefix": "/"}, "providers": ["p"]}]}"#;

/// `text` in a file of its own (named by the test) under the target directory.
fn file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("brickgate-loader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn plugin_value() -> Value {
    serde_json::from_str(PLUGIN).unwrap()
}

fn loaded_value(loaded: &Loaded) -> Value {
    serde_json::from_slice(&loaded.plugin_config).unwrap()
}

fn wasm_filter_yaml(name: &str, env: &str) -> String {
    let value = serde_json::to_string(PLUGIN).unwrap();
    format!(
        r#"
- name: {name}
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      root_id: brickgate
      vm_config: {{ runtime: envoy.wasm.runtime.v8, {env} }}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: {value}
"#
    )
}

fn bootstrap(filters: &[&str]) -> String {
    let filters: String = filters
        .iter()
        .map(|f| wasm_filter_yaml(f, "environment_variables: { host_env_keys: [SECRET] }"))
        .collect::<String>()
        .lines()
        .map(|l| format!("                  {l}\n"))
        .collect();
    format!(
        r#"static_resources:
  listeners:
    - name: main
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                http_filters:
{filters}
                  - name: envoy.filters.http.router
"#
    )
}

#[test]
fn every_format_yields_the_plugin_configuration() {
    let value = serde_json::to_string(PLUGIN).unwrap();
    let typed_extension = format!(
        r#""@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
name: brickgate
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    configuration:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: {value}
"#
    );
    let xds_resources = format!(
        "version_info: \"1\"\nresources:\n  - {}",
        typed_extension.replace('\n', "\n    ")
    );
    let plugin_yaml = format!("# a comment\n{PLUGIN}");
    let struct_config = r#"{"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"configuration": {"@type": "type.googleapis.com/google.protobuf.Struct", "value": PLUGIN}}}"#
        .replace("PLUGIN", PLUGIN);
    let bytes_config = format!(
        r#"{{"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {{"configuration": {{"@type": "type.googleapis.com/google.protobuf.BytesValue", "value": "{}"}}}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(PLUGIN)
    );
    let plugin_object: String = serde_json::to_string(&plugin_value()).unwrap();
    let wasm_plugin = format!(
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: bg, namespace: ns}}\n\
         spec:\n  url: oci://r/b:1\n  vmConfig:\n    env:\n      - {{name: FIXED, value: v}}\n      \
         - {{name: SECRET, valueFrom: HOST}}\n  pluginConfig: {plugin_object}\n"
    );
    let policy = format!(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\nmetadata: {{name: bg}}\n\
         spec:\n  wasm:\n    - name: brickgate\n      env: {{hostKeys: [SECRET]}}\n      config: {plugin_object}\n\
         ---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {{name: idp}}\n"
    );
    #[rustfmt::skip]
    let cases: [(&str, String, &str); 9] = [
        ("plugin.json", PLUGIN.to_string(), "plugin configuration"),
        ("plugin.yaml", plugin_yaml, "plugin configuration"),
        ("ecds.yaml", typed_extension, "Envoy Wasm filter brickgate"),
        ("xds.yaml", xds_resources, "Envoy Wasm filter brickgate"),
        ("struct.json", struct_config, "Envoy Wasm filter (unnamed)"),
        ("bytes.json", bytes_config, "Envoy Wasm filter (unnamed)"),
        ("bootstrap.yaml", bootstrap(&["brickgate"]), "Envoy Wasm filter brickgate"),
        ("wasmplugin.yaml", wasm_plugin, "Istio WasmPlugin ns.bg"),
        ("policy.yaml", policy, "Envoy Gateway EnvoyExtensionPolicy wasm brickgate"),
    ];
    for (name, text, origin) in cases {
        let loaded = load(&file(name, &text), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.origin, origin, "{name}");
        assert_eq!(loaded_value(&loaded), plugin_value(), "{name}");
    }
}

#[test]
fn the_vm_sees_only_the_variables_the_filter_declares() {
    let wasm_plugin = load(
        &file(
            "env.yaml",
            "kind: WasmPlugin\nmetadata: {name: bg}\nspec:\n  vmConfig:\n    env:\n      \
             - {name: FIXED, value: v}\n      - {name: PATH, valueFrom: HOST}\n  pluginConfig: {realm: r}\n",
        ),
        None,
    )
    .unwrap();
    assert_eq!(wasm_plugin.env.lookup("FIXED").as_deref(), Some("v"));
    assert_eq!(wasm_plugin.env.lookup("PATH"), std::env::var("PATH").ok());
    assert_eq!(wasm_plugin.env.lookup("HOME"), None, "not declared");
    let raw = load(&file("raw.json", PLUGIN), None).unwrap();
    assert_eq!(raw.env, VmEnv::Process);
}

#[test]
fn several_filters_need_a_choice_and_bad_files_are_named() {
    let two = file("two.yaml", &bootstrap(&["brickgate-a", "brickgate-b"]));
    let error = load(&two, None).unwrap_err();
    assert!(
        error.contains("2 Wasm filters [brickgate-a, brickgate-b]") && error.contains("--filter"),
        "{error}"
    );
    let chosen = load(&two, Some("brickgate-b")).unwrap();
    assert_eq!(chosen.origin, "Envoy Wasm filter brickgate-b");
    let missing = load(&two, Some("other")).unwrap_err();
    assert!(
        missing.contains("no brickgate filter named \"other\""),
        "{missing}"
    );
    #[rustfmt::skip]
    let cases: [(&str, &str, &str); 6] = [
        ("bad.json", "{\"realm\": ", "not valid JSON"),
        ("bad.yaml", "a: [b\n", "not valid YAML"),
        ("none.yaml", "kind: Service\nmetadata: {name: x}\n", "holds no plugin configuration"),
        ("empty-plugin.yaml", "kind: WasmPlugin\nmetadata: {name: x}\nspec: {url: oci://r/b}\n", "spec.pluginConfig is missing"),
        ("xds-only.yaml", "name: bg\nconfig_discovery:\n  config_source: {ads: {}}\n", "management server"),
        ("not-string.json", r#"{"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": {"configuration": {"@type": "type.googleapis.com/google.protobuf.Int32Value", "value": 1}}}"#, "StringValue, BytesValue or Struct"),
    ];
    for (name, text, problem) in cases {
        let error = load(&file(name, text), None).unwrap_err();
        assert!(error.contains(problem), "{name}: {error}");
    }
    assert!(
        load("/nonexistent/brickgate.yaml", None)
            .unwrap_err()
            .contains("cannot read")
    );
}

#[test]
fn a_file_over_the_limit_is_refused_before_parsing() {
    let big = file("big.json", &" ".repeat(MAX_FILE_BYTES + 1));
    assert!(load(&big, None).unwrap_err().contains("larger than"));
}

/// The repository's own files, as an operator has them (paths from the workspace root).
#[test]
fn the_shipped_files_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    #[rustfmt::skip]
    let cases = [
        ("envoy/ecds/brickgate.yaml", "Envoy Wasm filter brickgate"),
        ("envoy/envoy.yaml", "Envoy Wasm filter brickgate"),
        ("deploy/istio/wasmplugin.yaml", "Istio WasmPlugin databricks-gateway.brickgate"),
        ("deploy/envoy-gateway/extension-policy.yaml", "Envoy Gateway EnvoyExtensionPolicy wasm brickgate"),
    ];
    for (path, origin) in cases {
        let loaded =
            load(&format!("{root}/{path}"), None).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(loaded.origin, origin, "{path}");
        let config: Value = serde_json::from_slice(&loaded.plugin_config).unwrap();
        assert!(config.get("providers").is_some(), "{path}: {config}");
    }
}

/// What `check` learns of the filter around brickgate: its flag, and in a bootstrap the HTTP
/// filter after it (an xDS resources list is no chain).
#[test]
fn the_host_is_read_from_the_filter_and_its_chain() {
    let flagged = wasm_filter_yaml("brickgate", "").replace(
        "      root_id: brickgate\n",
        "      root_id: brickgate\n      allow_on_headers_stop_iteration: true\n",
    );
    let buffer = "\n- name: buffer\n  typed_config:\n    \"@type\": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer\n    max_request_bytes: 17825792\n";
    let chain = |filters: &str| {
        let filters: String = filters
            .lines()
            .map(|l| format!("                  {l}\n"))
            .collect();
        bootstrap(&[]).replace(
            "                  - name: envoy.filters.http.router",
            &format!("{filters}                  - name: envoy.filters.http.router"),
        )
    };
    let router = || NextFilter::Filter {
        name: "envoy.filters.http.router".to_string(),
        type_url: None,
    };
    let wasm_plugin = "kind: WasmPlugin\nmetadata: {name: bg}\nspec:\n  pluginConfig: {realm: r}\n";
    let ecds = "resources:\n  - \"@type\": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig\n    name: brickgate\n    typed_config:\n      \"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n      config:\n        configuration: {\"@type\": type.googleapis.com/google.protobuf.StringValue, value: '{}'}\n  - name: other\n    typed_config: {\"@type\": x}\n".to_string();
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Host)> = vec![
        ("flag-router.yaml", chain(&flagged),
         Host::Envoy { stops_at_headers: true, next: Some(router()) }),
        ("buffer.yaml", chain(&format!("{}{buffer}", wasm_filter_yaml("brickgate", ""))),
         Host::Envoy { stops_at_headers: false, next: Some(NextFilter::Filter {
             name: "buffer".to_string(),
             type_url: Some("type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer".to_string()),
         }) }),
        ("ecds-list.yaml", ecds, Host::Envoy { stops_at_headers: false, next: None }),
        ("plugin.json", PLUGIN.to_string(), Host::Unknown),
        ("istio.yaml", wasm_plugin.to_string(), Host::ControlPlane("Istio's WasmPlugin")),
    ];
    for (name, text, host) in cases {
        let loaded = load(&file(name, &text), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.host, host, "{name}");
    }
    // The shipped ECDS-backed bootstrap: the flag from the watched file, the router after it.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let shipped = load(&format!("{root}/envoy/envoy.yaml"), None).unwrap();
    assert!(
        matches!(
            shipped.host,
            Host::Envoy {
                stops_at_headers: true,
                next: Some(_)
            }
        ),
        "{:?}",
        shipped.host
    );
}
