//! The decision as Envoy's access log reads it: one filter-state object per request.
//!
//! Envoy's wasm host stores `set_property(["brickgate"], value)` as the filter-state object
//! `wasm.brickgate`. Declared (once, by the root context) as a `google.protobuf.Struct`, the
//! object is rendered by `%FILTER_STATE(wasm.brickgate)%` as a JSON object (nested in a
//! `json_format` access log, an AnyValue map in the OpenTelemetry one) — so the whole record
//! costs one host call per request. This module writes the two protobuf messages involved;
//! the adapter only hands them to the host. The native form (a dynamic module) can store bytes
//! only: [`filter_state_json`] is the same object as JSON text.

use crate::identity::{AuditRecord, AuditValue};

/// The property name; Envoy prefixes `wasm.` for the filter-state key.
pub const PROPERTY: &str = "brickgate";
/// The filter-state key access logs name: `%FILTER_STATE(wasm.brickgate)%`.
pub const FILTER_STATE_KEY: &str = "wasm.brickgate";
const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// Fields Envoy logs itself (`%RESPONSE_CODE%`, `%REQ(:METHOD)%`, `%PATH(NQ)%`,
/// `%REQ(X-REQUEST-ID)%`): left out so each fact is logged once.
const ENVOY_OWN_FIELDS: [&str; 4] = ["status", "method", "path", "request_id"];

/// `envoy.source.extensions.common.wasm.DeclarePropertyArguments` (the `declare_property`
/// foreign function): a read-write `Struct` living as long as the filter chain.
pub fn declare_property_arguments() -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, PROPERTY.as_bytes()); // name
    varint_field(&mut out, 3, 3); // type: Protobuf
    bytes_field(&mut out, 4, STRUCT_TYPE_URL.as_bytes()); // schema: the type URL
    // span 0 (FilterChain) and readonly false are the defaults, so not written.
    out
}

/// The filter-state property under which the Wasm form publishes one field of the verified
/// principal (`identity::Principal`): other filters read it as `wasm.brickgate.<name>`.
pub fn principal_property(name: &str) -> String {
    format!("{PROPERTY}.{name}")
}

/// `DeclarePropertyArguments` for a principal field: a read-only string living as long as the
/// filter chain. A string (not bytes) so that CEL (RBAC `condition`, the rate limiter's `expr`
/// descriptor) compares it with string literals; read-only so that no Wasm filter after
/// brickgate can change what brickgate verified.
pub fn declare_principal_property_arguments(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, principal_property(name).as_bytes()); // name
    varint_field(&mut out, 2, 1); // readonly
    varint_field(&mut out, 3, 1); // type: String
    out
}

/// The native form's filter-state object: the same fields as [`filter_state_struct`], as the
/// JSON text of one object. A dynamic module stores bytes only (Envoy's
/// `envoy_dynamic_module_callback_http_set_filter_state_bytes` keeps a `Router::StringAccessorImpl`:
/// envoyproxy/envoy source/extensions/filters/http/dynamic_modules/abi_impl.cc),
/// which `%FILTER_STATE(brickgate:PLAIN)%` renders as a JSON string in a `json_format` log.
pub fn filter_state_json(record: &AuditRecord) -> String {
    // Written field by field, in the record's order (`decision` first, as in the log line).
    let mut out = String::with_capacity(512);
    record.for_each_field(|name, field| {
        if ENVOY_OWN_FIELDS.contains(&name) {
            return;
        }
        out.push(if out.is_empty() { '{' } else { ',' });
        let value = match field {
            AuditValue::Text(text) => serde_json::Value::from(text),
            AuditValue::Flag(flag) => serde_json::Value::from(flag),
            AuditValue::Number(number) => serde_json::Value::from(number),
        };
        out.push_str(&serde_json::Value::from(name).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    });
    if out.is_empty() {
        out.push('{');
    }
    out.push('}');
    out
}

/// The audit record as a serialized `google.protobuf.Struct`.
pub fn filter_state_struct(record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    // Each entry is `fields { key: name, value: Value { kind } }`; its length is known before
    // it is written, so the bytes go straight into `out` (no scratch buffers).
    record.for_each_field(|name, field| {
        if ENVOY_OWN_FIELDS.contains(&name) {
            return;
        }
        let (kind, payload_len) = match field {
            AuditValue::Text(text) => (3, text.len()),
            AuditValue::Flag(_) => (4, 1),
            AuditValue::Number(_) => (2, 8),
        };
        let value_len = 1 + match field {
            AuditValue::Text(_) => varint_len(payload_len as u64) + payload_len,
            AuditValue::Flag(_) | AuditValue::Number(_) => payload_len,
        };
        let entry_len = 1
            + varint_len(name.len() as u64)
            + name.len()
            + 1
            + varint_len(value_len as u64)
            + value_len;
        tag(&mut out, 1, 2);
        varint(&mut out, entry_len as u64);
        bytes_field(&mut out, 1, name.as_bytes());
        tag(&mut out, 2, 2);
        varint(&mut out, value_len as u64);
        match field {
            AuditValue::Text(text) => bytes_field(&mut out, kind, text.as_bytes()),
            AuditValue::Flag(flag) => varint_field(&mut out, kind, u64::from(flag)),
            AuditValue::Number(number) => {
                tag(&mut out, kind, 1);
                out.extend_from_slice(&f64::from(number).to_le_bytes());
            }
        }
    });
    out
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn tag(out: &mut Vec<u8>, field: u64, wire_type: u64) {
    varint(out, (field << 3) | wire_type);
}

fn varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    tag(out, field, 0);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    tag(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests;
