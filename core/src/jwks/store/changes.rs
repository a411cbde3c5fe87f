//! What a new key set changes, for logs and for deciding whether it is a new generation.

use crate::jwks::keys::{KeyOrigin, KeySet, parse_jwks};

use super::StoreEvent;

/// A key-set document as stored in the record (fetched and checked by the VM that published it).
pub(super) fn parse_document(document: &[u8]) -> Option<KeySet> {
    let document = serde_json::from_slice(document).ok()?;
    parse_jwks(&document, KeyOrigin::Remote).ok()
}

/// The same keys, in the same order: no new generation, cached verifications stay valid.
pub(super) fn same_keys(old: &KeySet, new: &KeySet) -> bool {
    old.keys.len() == new.keys.len()
        && old
            .keys
            .iter()
            .zip(&new.keys)
            .all(|(a, b)| a.kid == b.kid && a.alg == b.alg && a.material == b.material)
}

pub(super) fn changed_event(
    provider: usize,
    old: Option<&KeySet>,
    new: &KeySet,
    fetched_here: bool,
) -> Option<StoreEvent> {
    if old.is_some_and(|old| same_keys(old, new)) {
        return None;
    }
    let old_kids = old.map(KeySet::kids).unwrap_or_default();
    let new_kids = new.kids();
    Some(StoreEvent::KeysChanged {
        provider,
        added: new_kids
            .iter()
            .filter(|k| !old_kids.contains(k))
            .cloned()
            .collect(),
        removed: old_kids
            .iter()
            .filter(|k| !new_kids.contains(k))
            .cloned()
            .collect(),
        skipped: new
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.kid.as_deref().unwrap_or("(no kid)"), s.why))
            .collect(),
        fetched_here,
    })
}
