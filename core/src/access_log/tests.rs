use super::*;
use serde_json::Value;

/// A protobuf reader written from the wire-format spec, independent of the writer above.
fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
        shift += 7;
    }
}

/// (field number, wire type, payload) of each top-level field.
fn fields(bytes: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let (field, wire) = (key >> 3, key & 7);
        let payload = match wire {
            0 => read_varint(bytes, &mut at).to_le_bytes().to_vec(),
            1 => {
                at += 8;
                bytes[at - 8..at].to_vec()
            }
            2 => {
                let len = read_varint(bytes, &mut at) as usize;
                at += len;
                bytes[at - len..at].to_vec()
            }
            other => unreachable!("wire type {other}"),
        };
        out.push((field, wire, payload));
    }
    out
}

/// Decodes a `Struct` of scalar values into JSON.
fn decode_struct(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    for (field, _, entry) in fields(bytes) {
        assert_eq!(field, 1, "Struct has only `fields`");
        let entry = fields(&entry);
        let key = String::from_utf8(entry[0].2.clone()).unwrap();
        let (kind, _, payload) = &fields(&entry[1].2)[0];
        let value = match kind {
            2 => serde_json::json!(f64::from_le_bytes(payload[..8].try_into().unwrap())),
            3 => Value::String(String::from_utf8(payload.clone()).unwrap()),
            4 => Value::Bool(payload[0] == 1),
            other => unreachable!("Value field {other}"),
        };
        map.insert(key, value);
    }
    map
}

#[test]
fn both_forms_carry_the_decision_but_not_what_envoy_logs_itself() {
    let record = AuditRecord {
        decision: "deny",
        reason: Some("audience_mismatch"),
        status: 401,
        method: "GET".into(),
        path: "/api/2.0/clusters/list".into(),
        rule: Some("clusters".into()),
        request_id: Some("r-1".into()),
        provider: Some("okta".into()),
        claimed_subject: Some("ünïcode ✓".into()),
        token_fingerprint: Some("ba7816bf8f01cfea".into()),
        stale_keys: true,
        detail: Some("x".repeat(300)),
        ..AuditRecord::default()
    };
    let decoded = decode_struct(&filter_state_struct(&record));
    let native: Value = serde_json::from_str(&filter_state_json(&record)).unwrap();
    let expected = serde_json::json!({
        "decision": "deny",
        "reason": "audience_mismatch",
        "rule": "clusters",
        "provider": "okta",
        "claimed_subject": "ünïcode ✓",
        "token_fingerprint": "ba7816bf8f01cfea",
        "stale_keys": true,
        "detail": "x".repeat(300),
    });
    assert_eq!(Value::Object(decoded), expected);
    assert_eq!(
        native, expected,
        "the native form's JSON holds the same fields"
    );
}

#[test]
fn the_declaration_names_a_struct_property() {
    let decoded = fields(&declare_property_arguments());
    assert_eq!(decoded[0], (1, 2, b"brickgate".to_vec()));
    assert_eq!(decoded[1].0, 3);
    assert_eq!(decoded[1].2[0], 3, "WasmType::Protobuf");
    assert_eq!(
        decoded[2],
        (4, 2, b"type.googleapis.com/google.protobuf.Struct".to_vec())
    );
    assert_eq!(FILTER_STATE_KEY, format!("wasm.{PROPERTY}"));
}

/// Field numbers and enum values of `DeclarePropertyArguments` as Envoy's
/// source/extensions/common/wasm/ext/declare_property.proto defines them.
#[test]
fn a_principal_field_is_declared_a_read_only_string() {
    let decoded = fields(&declare_principal_property_arguments("sub"));
    assert_eq!(decoded[0], (1, 2, b"brickgate.sub".to_vec()));
    assert_eq!((decoded[1].0, decoded[1].2[0]), (2, 1), "readonly");
    assert_eq!((decoded[2].0, decoded[2].2[0]), (3, 1), "WasmType::String");
    assert_eq!(decoded.len(), 3, "span FilterChain is the default");
}
