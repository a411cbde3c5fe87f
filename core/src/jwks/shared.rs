//! Coordination between the VMs of one Envoy (one per worker thread) through proxy-wasm shared
//! data: one JWKS fetch per provider per refresh, whatever `--concurrency`, and every VM adopts
//! the keys another one fetched.

use std::cell::RefCell;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The host's shared key-value space, with compare-and-swap.
pub trait SharedData {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if `cas` still matches (or unconditionally with `None`); `false` on a
    /// lost race or a host error.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// The last good key set of a provider, as fetched by whichever VM held the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedKeys {
    pub generation: u64,
    pub fetched_at_ms: u64,
    pub ttl_ms: u64,
    /// The JWKS location found by discovery, so the next lease holder can skip it.
    pub discovered: Option<(String, String)>,
}

/// Who may fetch, and when: the fetch lease, the failure backoff and the rate limit of
/// refetches caused by unknown `kid`s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coordination {
    pub holder: u64,
    pub lease_until_ms: u64,
    pub retry_at_ms: u64,
    pub failures: u32,
    pub last_forced_ms: u64,
    /// Incremented by every finished attempt, so waiting requests learn that one ended.
    pub attempts: u64,
    pub last_error: Option<String>,
}

pub fn read<T: for<'de> Deserialize<'de> + Default>(
    shared: &dyn SharedData,
    key: &str,
) -> (T, Option<u32>) {
    let (bytes, cas) = shared.get(key);
    let value = bytes
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    (value, cas)
}

pub fn write<T: Serialize>(
    shared: &dyn SharedData,
    key: &str,
    value: &T,
    cas: Option<u32>,
) -> bool {
    serde_json::to_vec(value).is_ok_and(|bytes| shared.set(key, &bytes, cas))
}

/// Shared data for tests: several stores (simulated VMs) share one instance.
#[derive(Debug, Default)]
pub struct InMemorySharedData {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl InMemorySharedData {
    /// Every key written so far, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedData for InMemorySharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut entries = self.entries.borrow_mut();
        let current = entries.get(key).map(|(_, cas)| *cas);
        if cas.is_some() && cas != current {
            return false;
        }
        entries.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap() {
        let shared = InMemorySharedData::default();
        assert!(shared.set("k", b"1", None));
        let (_, cas) = shared.get("k");
        assert!(shared.set("k", b"2", cas));
        assert!(!shared.set("k", b"3", cas), "stale CAS loses");
        assert_eq!(shared.get("k").0.unwrap(), b"2");
    }
}
