//! brickgate filters in the mesh's own objects, rendered as each control plane renders them
//! (sources in the parent module's documentation).

use std::collections::BTreeMap;

use serde_json::Value;

use super::envoy::strings;
use super::{Candidate, Host, Loaded, VmEnv};

/// An Istio `WasmPlugin`: `spec.pluginConfig` rendered as JSON; the filter is named
/// `<namespace>.<name>`.
pub(super) fn istio(document: &Value) -> Vec<Candidate> {
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let name = match document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{namespace}.{name}"),
        None => name.to_string(),
    };
    let found = match document.pointer("/spec/pluginConfig") {
        Some(Value::Object(config)) if !config.is_empty() => {
            let mut values = BTreeMap::new();
            let mut host_keys = Vec::new();
            let env = document
                .pointer("/spec/vmConfig/env")
                .and_then(Value::as_array);
            for variable in env.into_iter().flatten() {
                let Some(key) = variable.get("name").and_then(Value::as_str) else {
                    continue;
                };
                // INLINE is the enum's zero value, the default.
                match variable.get("valueFrom").and_then(Value::as_str) {
                    Some("HOST") => host_keys.push(key.to_string()),
                    _ => {
                        let value = variable.get("value").and_then(Value::as_str);
                        values.insert(key.to_string(), value.unwrap_or_default().to_string());
                    }
                }
            }
            Ok(Loaded {
                plugin_config: Value::Object(config.clone()).to_string().into_bytes(),
                origin: format!("Istio WasmPlugin {name}"),
                env: VmEnv::Declared { values, host_keys },
                host: Host::ControlPlane("Istio's WasmPlugin"),
            })
        }
        Some(Value::Object(_)) | None => Err(
            "spec.pluginConfig is missing or empty: Istio then gives the plugin no configuration"
                .to_string(),
        ),
        Some(_) => Err("spec.pluginConfig is not an object".to_string()),
    };
    vec![Candidate { name, found }]
}

/// An Envoy Gateway `EnvoyExtensionPolicy`: each `spec.wasm[]` entry's `config` as JSON, named
/// by its `name` (or its position).
pub(super) fn envoy_gateway(document: &Value) -> Vec<Candidate> {
    let entries = document.pointer("/spec/wasm").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, wasm)| {
            let name = wasm
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("wasm/{index}"), str::to_string);
            let found = match wasm.get("config") {
                Some(config) if !config.is_null() => Ok(Loaded {
                    plugin_config: config.to_string().into_bytes(),
                    origin: format!("Envoy Gateway EnvoyExtensionPolicy wasm {name}"),
                    env: VmEnv::Declared {
                        values: BTreeMap::new(),
                        host_keys: strings(wasm.pointer("/env/hostKeys")),
                    },
                    host: Host::ControlPlane("Envoy Gateway's EnvoyExtensionPolicy"),
                }),
                _ => Err(
                    "config is missing: Envoy Gateway then gives the plugin an empty string"
                        .to_string(),
                ),
            };
            Candidate { name, found }
        })
        .collect()
}
