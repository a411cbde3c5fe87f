//! Proxy-wasm shared data: the one key-value space all VMs of a plugin share in one Envoy (one
//! VM per worker thread), and an in-memory model of it with the host's exact semantics.
//!
//! The semantics, from proxy-wasm-cpp-host `src/shared_data.cc` (`SharedData::get`/`set`),
//! which Envoy uses as is:
//! - `get` of a missing key answers `NotFound`: no value and no CAS (the Rust SDK returns
//!   `(None, None)`).
//! - `set` on a missing key always succeeds, *whatever* CAS it carries: the key is created.
//! - `set` on an existing key with CAS 0 (`None` in the SDK) overwrites unconditionally; with a
//!   non-zero CAS it answers `CasMismatch` unless the CAS equals the key's current one.
//! - Every successful `set` gives the key a new CAS from one counter shared by all keys,
//!   starting at 1 and skipping 0 when it wraps: 0 is never a key's CAS.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The host's shared key-value space, with compare-and-swap.
pub trait SharedData {
    /// The value and its CAS token; `(None, None)` for a missing key.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` unless the key exists with a CAS other than `cas` (`None` = 0 =
    /// unconditional); `false` on a lost race or a host error.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
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

/// What the host answers to a `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetResult {
    Ok,
    CasMismatch,
}

/// The host's shared-data table, as `proxy_wasm::SharedData` implements it (see the module
/// doc); tests wrap it to share it between simulated VMs.
#[derive(Debug, Clone)]
pub struct HostSharedTable {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for HostSharedTable {
    fn default() -> Self {
        HostSharedTable::starting_at(1)
    }
}

impl HostSharedTable {
    /// A table whose next CAS is `next_cas` (0 is skipped, as the host does), to test wrap-around.
    pub fn starting_at(next_cas: u32) -> Self {
        HostSharedTable {
            entries: HashMap::new(),
            next_cas: next_cas.max(1),
        }
    }

    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).cloned()
    }

    pub fn set(&mut self, key: &str, value: &[u8], cas: u32) -> SetResult {
        if let Some((_, current)) = self.entries.get(key)
            && cas != 0
            && cas != *current
        {
            return SetResult::CasMismatch;
        }
        let assigned = self.take_cas();
        self.entries
            .insert(key.to_string(), (value.to_vec(), assigned));
        SetResult::Ok
    }

    fn take_cas(&mut self) -> u32 {
        let assigned = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        assigned
    }
}

/// Shared data for a host of threads in one process (the native form): one table for every
/// configuration's stores, as Envoy's proxy-wasm shared data is one table for every VM. Its
/// callers hold no other lock of this table's while they use it.
#[derive(Debug, Default)]
pub struct ThreadSafeSharedData {
    table: Mutex<HostSharedTable>,
}

impl ThreadSafeSharedData {
    fn table(&self) -> std::sync::MutexGuard<'_, HostSharedTable> {
        // Every write is one insert: a panic elsewhere cannot leave the table half-written.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SharedData for ThreadSafeSharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.table().get(key) {
            Some((value, cas)) => (Some(value), Some(cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.table().set(key, value, cas.unwrap_or(0)) == SetResult::Ok
    }
}

/// Shared data for tests: several stores (simulated VMs) share one instance.
#[derive(Debug, Default)]
pub struct InMemorySharedData {
    table: RefCell<HostSharedTable>,
}

impl InMemorySharedData {
    /// Every key written so far, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.table.borrow().entries.keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedData for InMemorySharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.table.borrow().get(key) {
            Some((value, cas)) => (Some(value), Some(cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.table.borrow_mut().set(key, value, cas.unwrap_or(0)) == SetResult::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_as_the_host_does_it() {
        let shared = InMemorySharedData::default();
        assert_eq!(shared.get("k"), (None, None), "missing: no value, no CAS");
        assert!(
            shared.set("k", b"1", Some(12345)),
            "a missing key is created whatever the CAS"
        );
        let (_, cas) = shared.get("k");
        assert!(shared.set("k", b"2", cas));
        assert!(!shared.set("k", b"3", cas), "stale CAS loses");
        assert!(
            !shared.set("k", b"3", Some(u32::MAX)),
            "a CAS the key never had loses"
        );
        assert_eq!(shared.get("k").0.unwrap(), b"2");
        assert!(shared.set("k", b"4", None), "CAS 0 is unconditional");
        assert_eq!(shared.get("k").0.unwrap(), b"4");
    }

    #[test]
    fn one_cas_counter_for_all_keys_that_never_yields_zero() {
        let mut table = HostSharedTable::starting_at(u32::MAX);
        assert_eq!(table.set("a", b"1", 0), SetResult::Ok);
        assert_eq!(table.set("b", b"1", 0), SetResult::Ok);
        assert_eq!(table.set("a", b"2", 0), SetResult::Ok);
        let cases: Vec<u32> = ["a", "b"]
            .iter()
            .filter_map(|key| table.get(key))
            .map(|(_, cas)| cas)
            .collect();
        assert_eq!(cases, [2, 1], "u32::MAX, then 1 (0 skipped), then 2");
    }
}
