//! The plugin configuration out of the file an operator has: the raw plugin JSON, an Envoy
//! bootstrap, an ECDS `TypedExtensionConfig` (alone or in an xDS `resources:` list), an Istio
//! `WasmPlugin` or an Envoy Gateway `EnvoyExtensionPolicy`, each in YAML or JSON, several YAML
//! documents in one file allowed. What the plugin receives is found as each control plane
//! renders it:
//!
//! - Envoy passes a `StringValue` or `BytesValue` configuration to the plugin as its bare value
//!   and a `Struct` serialized as JSON (envoyproxy/envoy `api/envoy/extensions/wasm/v3/wasm.proto`
//!   `PluginConfig.configuration`, commit 8078718df44d493e3e57f4e94ff222829d320097);
//! - Istio renders `spec.pluginConfig` (an object) as JSON into a `StringValue`, and names the
//!   filter `<namespace>.<name>` (istio/istio `pilot/pkg/model/extensions.go`
//!   `convertToWasmPluginWrapper`, commit 27930d37a56b499663f238d0e7355876d9f06834); an INLINE
//!   `vmConfig.env` entry (the default) is a VM variable, a HOST one exposes Envoy's own;
//! - Envoy Gateway puts `spec.wasm[].config`'s raw JSON into a `StringValue` and exposes
//!   `env.hostKeys` only (envoyproxy/gateway `internal/xds/translator/wasm.go` `wasmConfig`,
//!   commit 49a37b5d6bf95c4f34e9231865e9c578b8a501c0).
//!
//! In Envoy documents every `envoy.extensions.filters.http.wasm.v3.Wasm` typed config is a
//! candidate, named by the object holding it (the HTTP filter or the `TypedExtensionConfig`);
//! a filter whose configuration comes by extension config discovery from a file
//! (`path_config_source`) is read from that file, resolved as Envoy resolves it (against the
//! working directory) or else beside the bootstrap. More than one candidate is refused with their names unless `--filter NAME`
//! picks one.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

mod envoy;
mod mesh;
#[cfg(test)]
mod tests;

/// A larger file is refused before it is parsed: every shipped file is under 20 KiB.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// The plugin configuration found in a file, and what the plugin's VM would see of the
/// environment.
#[derive(Debug)]
pub struct Loaded {
    /// The bytes the plugin receives in `proxy_on_configure`.
    pub plugin_config: Vec<u8>,
    /// Where in the file it was found, e.g. `WasmPlugin databricks-gateway.brickgate`.
    pub origin: String,
    pub env: VmEnv,
    /// What the file says of the Envoy filter that runs the plugin (for `check`'s warnings).
    pub host: Host,
}

/// The Envoy filter around the plugin, as far as the file tells.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Host {
    /// The raw plugin JSON: nothing is known of the filter.
    #[default]
    Unknown,
    /// An Envoy Wasm filter (bootstrap, ECDS): its `allow_on_headers_stop_iteration`, and the
    /// HTTP filter after it when the file lists the connection manager's chain.
    Envoy {
        stops_at_headers: bool,
        next: Option<NextFilter>,
    },
    /// An Istio `WasmPlugin` or Envoy Gateway `EnvoyExtensionPolicy`: the control plane
    /// renders the filter, never with `allow_on_headers_stop_iteration` (docs/LIFECYCLE.md),
    /// and the file does not show the chain.
    ControlPlane(&'static str),
}

/// The HTTP filter right after brickgate's in an `http_filters` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextFilter {
    Filter {
        name: String,
        type_url: Option<String>,
    },
    /// brickgate is the last filter listed.
    None,
}

/// The environment variables the plugin's VM sees.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum VmEnv {
    /// Not rendered by a control plane (the raw plugin JSON): this process's environment.
    #[default]
    Process,
    /// As the filter declares them: fixed values, and the names of Envoy's own variables
    /// passed through (read from this process's environment, standing for Envoy's).
    Declared {
        values: BTreeMap<String, String>,
        host_keys: Vec<String>,
    },
}

impl VmEnv {
    pub fn lookup(&self, name: &str) -> Option<String> {
        match self {
            VmEnv::Process => std::env::var(name).ok(),
            VmEnv::Declared { values, host_keys } => values.get(name).cloned().or_else(|| {
                host_keys
                    .iter()
                    .any(|k| k == name)
                    .then(|| std::env::var(name).ok())
                    .flatten()
            }),
        }
    }
}

/// One brickgate filter a file holds, or why its configuration cannot be had.
struct Candidate {
    name: String,
    found: Result<Loaded, String>,
}

pub fn load(path: &str, filter: Option<&str>) -> Result<Loaded, String> {
    let bytes = read_bounded(path)?;
    let documents = parse_documents(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut candidates = Vec::new();
    for document in &documents {
        candidates.extend(candidates_in(document, path));
    }
    if let [document] = documents.as_slice()
        && candidates.is_empty()
        && is_plugin_config(document)
    {
        // The raw plugin configuration: the file's own bytes, so the plugin's error positions
        // hold (YAML is converted to JSON first).
        let plugin_config = if serde_json::from_slice::<Value>(&bytes).is_ok() {
            bytes
        } else {
            document.to_string().into_bytes()
        };
        return Ok(Loaded {
            plugin_config,
            origin: "plugin configuration".to_string(),
            env: VmEnv::Process,
            host: Host::Unknown,
        });
    }
    choose(path, candidates, filter)
}

fn choose(path: &str, candidates: Vec<Candidate>, filter: Option<&str>) -> Result<Loaded, String> {
    let names: Vec<String> = candidates.iter().map(|c| c.name.clone()).collect();
    let mut chosen: Vec<Candidate> = match filter {
        Some(wanted) => candidates
            .into_iter()
            .filter(|c| c.name == wanted)
            .collect(),
        None => candidates,
    };
    match (chosen.pop(), chosen.is_empty(), filter) {
        (None, _, None) => Err(format!(
            "{path} holds no plugin configuration: expected the plugin JSON, an Envoy bootstrap or \
             ECDS TypedExtensionConfig with an envoy.filters.http.wasm filter, an Istio WasmPlugin \
             or an Envoy Gateway EnvoyExtensionPolicy"
        )),
        (None, _, Some(wanted)) => Err(format!(
            "{path} has no brickgate filter named {wanted:?}; it has [{}]",
            names.join(", ")
        )),
        (Some(candidate), true, _) => candidate
            .found
            .map_err(|e| format!("{path}: filter {}: {e}", candidate.name)),
        (Some(_), false, _) => Err(format!(
            "{path} holds {} Wasm filters [{}]: choose one with --filter NAME",
            names.len(),
            names.join(", ")
        )),
    }
}

pub fn read_bounded(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!("{path} is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

/// JSON first (a JSON file's own error is clearer than YAML's), then YAML, every document of it.
fn parse_documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let json_error = match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => return Ok(vec![value]),
        Err(e) => e,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    if text.trim_start().starts_with(['{', '[']) {
        return Err(format!("not valid JSON: {json_error}"));
    }
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("not valid YAML: {e}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Not a wrapper: no Kubernetes `kind`, no `@type`, no bootstrap, filter or xDS section.
fn is_plugin_config(document: &Value) -> bool {
    let Some(object) = document.as_object() else {
        return false;
    };
    const WRAPPERS: [&str; 7] = [
        "config_discovery",
        "kind",
        "@type",
        "resources",
        "static_resources",
        "staticResources",
        "typed_config",
    ];
    !WRAPPERS.iter().any(|key| object.contains_key(*key))
}

fn candidates_in(document: &Value, path: &str) -> Vec<Candidate> {
    match document.get("kind").and_then(Value::as_str) {
        Some("WasmPlugin") => mesh::istio(document),
        Some("EnvoyExtensionPolicy") => mesh::envoy_gateway(document),
        // Other Kubernetes objects beside them (Backends, routes, secrets).
        Some(_) => Vec::new(),
        None => envoy::candidates(document, path),
    }
}
