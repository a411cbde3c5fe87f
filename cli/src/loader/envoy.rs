//! brickgate filters in Envoy's own documents: a bootstrap (the HTTP connection managers'
//! `http_filters`, wherever the listeners nest them), a `TypedExtensionConfig`, an xDS
//! `resources:` list, or a bare `Wasm` typed config.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use super::{Candidate, Host, Loaded, NextFilter, VmEnv, parse_documents, read_bounded};

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const BYTES_VALUE: &str = "type.googleapis.com/google.protobuf.BytesValue";
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// The filters in `document`, read from the file `path`.
pub(super) fn candidates(document: &Value, path: &str) -> Vec<Candidate> {
    let mut found = Vec::new();
    walk(document, path, "(unnamed)", &mut found);
    found
}

/// Every Wasm HTTP filter config under `value`, named by the nearest enclosing `name`.
fn walk(value: &Value, path: &str, name: &str, found: &mut Vec<Candidate>) {
    match value {
        Value::Object(object) => {
            let name = object.get("name").and_then(Value::as_str).unwrap_or(name);
            if object.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                found.push(Candidate {
                    name: name.to_string(),
                    found: from_wasm_filter(value, name),
                });
                return;
            }
            if let Some(discovery) = object.get("config_discovery") {
                found.push(Candidate {
                    name: name.to_string(),
                    found: discovered(discovery, path, name),
                });
                return;
            }
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("http_filters", Value::Array(chain)) => walk_chain(chain, path, name, found),
                    _ => walk(child, path, name, found),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, path, name, found);
            }
        }
        _ => {}
    }
}

/// An HTTP connection manager's `http_filters`: each brickgate filter learns the one after it.
fn walk_chain(chain: &[Value], path: &str, name: &str, found: &mut Vec<Candidate>) {
    for (index, filter) in chain.iter().enumerate() {
        let before = found.len();
        walk(filter, path, name, found);
        let next = next_filter(chain.get(index + 1));
        for candidate in found.iter_mut().skip(before) {
            if let Ok(Loaded {
                host: Host::Envoy { next: slot, .. },
                ..
            }) = &mut candidate.found
            {
                *slot = Some(next.clone());
            }
        }
    }
}

fn next_filter(item: Option<&Value>) -> NextFilter {
    match item {
        Some(item) => NextFilter::Filter {
            name: item
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)")
                .to_string(),
            type_url: item
                .pointer("/typed_config/@type")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        None => NextFilter::None,
    }
}

/// A filter configured by extension config discovery: from the watched file, or its
/// `default_config` when it comes from a management server this tool cannot ask.
fn discovered(discovery: &Value, bootstrap: &str, name: &str) -> Result<Loaded, String> {
    let file = discovery
        .pointer("/config_source/path_config_source/path")
        .or_else(|| discovery.pointer("/config_source/path"))
        .and_then(Value::as_str);
    if let Some(file) = file {
        let file = resolve(file, bootstrap);
        let bytes = read_bounded(&file).map_err(|e| {
            format!(
                "{e} (extension config discovery; Envoy reads the path from its working directory)"
            )
        })?;
        let documents = parse_documents(&bytes).map_err(|e| format!("{file}: {e}"))?;
        let mut in_file = Vec::new();
        for document in &documents {
            walk(document, &file, "(unnamed)", &mut in_file);
        }
        // Envoy subscribes to the resource named as the filter.
        let only_one = in_file.len() == 1;
        return in_file
            .into_iter()
            .find(|c| only_one || c.name == name)
            .map_or_else(
                || Err(format!("{file} has no TypedExtensionConfig named {name:?}")),
                |c| c.found,
            );
    }
    match discovery.get("default_config") {
        Some(default) => from_wasm_filter(default, name),
        None => Err(
            "its configuration comes from a management server (extension config \
                     discovery) and it has no default_config: check the served \
                     TypedExtensionConfig instead"
                .to_string(),
        ),
    }
}

/// A watched file's path as Envoy reads it, from the working directory; when it is not there,
/// the first directory holding the bootstrap (or one above it) where it is, so that a
/// bootstrap can be checked from anywhere (Envoy is usually started from the repository root).
fn resolve(file: &str, bootstrap: &str) -> String {
    let relative = std::path::Path::new(file);
    if relative.is_absolute() || relative.exists() {
        return file.to_string();
    }
    std::path::Path::new(bootstrap)
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(relative))
        .find(|candidate| candidate.is_file())
        .map_or_else(|| file.to_string(), |found| found.display().to_string())
}

/// The plugin configuration and VM environment of one `Wasm` typed config.
fn from_wasm_filter(wasm: &Value, name: &str) -> Result<Loaded, String> {
    if wasm.get("@type").and_then(Value::as_str) != Some(WASM_FILTER) {
        return Err(format!("not an {WASM_FILTER}"));
    }
    let plugin = wasm.get("config").unwrap_or(&Value::Null);
    let configuration = plugin
        .get("configuration")
        .ok_or("config.configuration is missing: the plugin would get an empty configuration")?;
    let value = configuration.get("value");
    let plugin_config = match configuration.get("@type").and_then(Value::as_str) {
        Some(STRING_VALUE) => value
            .and_then(Value::as_str)
            .ok_or("config.configuration.value is not a string")?
            .as_bytes()
            .to_vec(),
        Some(BYTES_VALUE) => {
            let text = value
                .and_then(Value::as_str)
                .ok_or("config.configuration.value is not a base64 string")?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| "config.configuration.value is not base64")?
        }
        Some(STRUCT) => value
            .ok_or("config.configuration.value is missing")?
            .to_string()
            .into_bytes(),
        other => {
            return Err(format!(
                "config.configuration has type {:?}; Envoy hands the plugin a StringValue, \
                 BytesValue or Struct",
                other.unwrap_or("(none)")
            ));
        }
    };
    let variables = plugin.pointer("/vm_config/environment_variables");
    let values: BTreeMap<String, String> = variables
        .and_then(|v| v.get("key_values"))
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let host_keys = strings(variables.and_then(|v| v.get("host_env_keys")));
    Ok(Loaded {
        plugin_config,
        origin: format!("Envoy Wasm filter {name}"),
        env: VmEnv::Declared { values, host_keys },
        host: Host::Envoy {
            stops_at_headers: plugin.get("allow_on_headers_stop_iteration")
                == Some(&Value::Bool(true)),
            next: None,
        },
    })
}

pub(super) fn strings(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
