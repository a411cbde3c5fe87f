//! JSON objects without duplicate keys: `{"aud":"a","aud":"b"}` must not mean one thing to us
//! and another to the upstream (RFC 8725 §3.4, RFC 7515 §4).

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, Visitor};
use serde_json::{Map, Value};

struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StrictObjectVisitor)
    }
}

struct StrictObjectVisitor;

impl<'de> Visitor<'de> for StrictObjectVisitor {
    type Value = StrictObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
        let mut object = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if object.contains_key(&key) {
                let key = crate::error::echo(&key);
                return Err(A::Error::custom(format!("duplicate key {key:?}")));
            }
            let value: Value = access.next_value()?;
            object.insert(key, value);
        }
        Ok(StrictObject(object))
    }
}

/// Parses bytes that must hold exactly one JSON object whose top-level keys are unique.
pub fn parse_object_strict(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    serde_json::from_slice::<StrictObject>(bytes)
        .map(|object| object.0)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_only_without_duplicates_or_trailing_data() {
        assert_eq!(
            parse_object_strict(br#"{"a":1,"b":{"a":2}}"#)
                .unwrap()
                .len(),
            2
        );
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            b"[1]",
            b"\"x\"",
            br#"{"a":1} x"#,
            b"{",
            b"",
        ] {
            assert!(
                parse_object_strict(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
