//! Verified-token cache, one per worker VM: a token seen before skips parsing and signature
//! checks. Bounded in entries and bytes; keyed by the compact token itself (as Envoy's
//! `jwt_authn` cache is); an entry never outlives the token's `exp` nor the key set it was
//! verified with. Time-based claims and route rules are still checked on every hit, by the
//! engine.
//!
//! The key is the whole token, compared byte for byte, so no hash collision can make one
//! token pass for another. The hash only spreads the entries, so it is a fast one (foldhash,
//! seeded per map) rather than a cryptographic digest: a digest of a 1 KB token cost over a
//! microsecond per request inside wasm. Flooding the map with colliding keys is not possible
//! either: only tokens whose signature verified are inserted.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::UnixTime;
use crate::alg::Alg;
use crate::identity::Verified;

#[derive(Debug, Clone)]
pub struct CachedToken {
    pub provider: usize,
    /// The generation of the provider's key set that verified the signature.
    pub key_generation: u64,
    pub alg: Alg,
    pub kid: Option<String>,
    /// The audit record's token fingerprint, if records were kept when it was verified.
    pub fingerprint: Option<String>,
    pub verified: Arc<Verified>,
    pub exp: UnixTime,
    /// Approximate memory the entry holds, for the byte bound.
    pub bytes: usize,
}

#[derive(Debug)]
struct Slot {
    token: Arc<str>,
    /// The token's hash, kept: a 1 KB token costs a few hundred ns to hash inside wasm, and a
    /// table that grows or evicts would otherwise hash it again.
    hash: u64,
    /// Its insertion number (see `order`).
    number: u64,
    cached: CachedToken,
}

/// An entry's place in the eviction order: its token's hash and insertion number.
#[derive(Debug)]
struct Queued {
    hash: u64,
    number: u64,
}

#[derive(Debug)]
pub struct TokenCache {
    max_entries: usize,
    max_bytes: usize,
    used_bytes: usize,
    /// A table rather than a map, so a lookup compares the token with [`same_bytes`].
    entries: HashTable<Slot>,
    hasher: RandomState,
    /// Insertion order with insertion numbers, for eviction (oldest first). Entries removed
    /// early leave a stale number behind, skipped when it reaches the front: O(1) per request.
    order: VecDeque<Queued>,
    inserted: u64,
}

impl TokenCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        TokenCache {
            max_entries,
            max_bytes,
            used_bytes: 0,
            entries: HashTable::new(),
            hasher: RandomState::default(),
            order: VecDeque::new(),
            inserted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A still-valid entry. `current_generation` gives each provider's key-set generation;
    /// an entry verified with an older key set, or past its `exp`, is dropped.
    pub fn get(
        &mut self,
        token: &str,
        now: UnixTime,
        current_generation: impl Fn(usize) -> Option<u64>,
    ) -> Option<CachedToken> {
        let hash = self.hasher.hash_one(token);
        let slot = self
            .entries
            .find(hash, |slot| same_bytes(&slot.token, token))?;
        let entry = &slot.cached;
        let fresh =
            now < entry.exp && current_generation(entry.provider) == Some(entry.key_generation);
        if fresh {
            return Some(entry.clone());
        }
        self.remove(hash, |slot| same_bytes(&slot.token, token));
        None
    }

    /// Caches a verified token. `entry.bytes` must count the token's length (it is held).
    pub fn insert(&mut self, token: &str, entry: CachedToken) {
        if self.max_entries == 0 || entry.bytes > self.max_bytes {
            return;
        }
        let hash = self.hasher.hash_one(token);
        self.remove(hash, |slot| same_bytes(&slot.token, token));
        while self.entries.len() >= self.max_entries
            || self.used_bytes + entry.bytes > self.max_bytes
        {
            if !self.evict_oldest() {
                break;
            }
        }
        if self.order.len() > 2 * self.max_entries {
            let entries = &self.entries;
            self.order.retain(|queued| {
                entries
                    .find(queued.hash, |slot| slot.number == queued.number)
                    .is_some()
            });
        }
        self.inserted += 1;
        self.used_bytes += entry.bytes;
        self.order.push_back(Queued {
            hash,
            number: self.inserted,
        });
        self.entries.insert_unique(
            hash,
            Slot {
                token: Arc::from(token),
                hash,
                number: self.inserted,
                cached: entry,
            },
            |slot| slot.hash,
        );
    }

    /// Removes the entry `is_it` picks among those with this hash.
    fn remove(&mut self, hash: u64, is_it: impl Fn(&Slot) -> bool) -> bool {
        match self.entries.find_entry(hash, is_it) {
            Ok(found) => {
                let (old, _) = found.remove();
                self.used_bytes -= old.cached.bytes;
                true
            }
            Err(_) => false,
        }
    }

    /// Drops the oldest entry still present (queue entries of entries removed early are stale:
    /// their insertion number is no longer in the table).
    fn evict_oldest(&mut self) -> bool {
        while let Some(queued) = self.order.pop_front() {
            if self.remove(queued.hash, |slot| slot.number == queued.number) {
                return true;
            }
        }
        false
    }
}

/// Whether two strings are equal, eight bytes at a time: inside wasm `==` on strings is a
/// byte-by-byte `memcmp`, and every cache hit compares a whole (1 KB) token.
pub fn same_bytes(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let (mut left, mut right) = (a.chunks_exact(8), b.chunks_exact(8));
    let words_equal = left
        .by_ref()
        .zip(right.by_ref())
        .all(|(x, y)| word(x) == word(y));
    words_equal && left.remainder() == right.remainder()
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{FederatedSubject, Holder, PrincipalKind};
    use crate::verify::claims::TokenTimes;

    fn entry(provider: usize, generation: u64, exp: u64, bytes: usize) -> CachedToken {
        CachedToken {
            provider,
            key_generation: generation,
            alg: Alg::RS256,
            kid: None,
            fingerprint: None,
            verified: Arc::new(Verified {
                times: TokenTimes {
                    exp,
                    nbf: None,
                    iat: None,
                },
                holder: Holder::default(),
                federated_subject: FederatedSubject::NotExchanged,
                kind: PrincipalKind::User,
                scopes: Vec::new(),
                groups: Vec::new(),
                headers: Vec::new().into(),
            }),
            exp,
            bytes,
        }
    }

    #[test]
    fn hits_until_exp_or_key_rotation() {
        let mut cache = TokenCache::new(10, 10_000);
        let key = "token";
        cache.insert(key, entry(0, 1, 100, 10));
        assert!(cache.get(key, 99, |_| Some(1)).is_some());
        assert!(cache.get(key, 99, |_| Some(2)).is_none(), "new key set");
        assert!(cache.is_empty(), "stale entries are dropped");
        cache.insert(key, entry(0, 1, 100, 10));
        assert!(cache.get(key, 100, |_| Some(1)).is_none(), "expired");
        assert!(cache.get("other", 0, |_| Some(1)).is_none());
    }

    #[test]
    fn bounded_in_entries_and_bytes() {
        let mut cache = TokenCache::new(3, 100);
        for i in 0..5 {
            cache.insert(&i.to_string(), entry(0, 1, 1000, 10));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get("0", 0, |_| Some(1)).is_none(), "oldest evicted");
        assert!(cache.get("4", 0, |_| Some(1)).is_some());

        let mut cache = TokenCache::new(100, 100);
        for i in 0..5 {
            cache.insert(&i.to_string(), entry(0, 1, 1000, 40));
        }
        assert_eq!(cache.len(), 2);
        cache.insert("huge", entry(0, 1, 1000, 101));
        assert!(
            cache.get("huge", 0, |_| Some(1)).is_none(),
            "larger than the whole cache"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        let long = "a".repeat(700);
        let mut other = long.clone();
        other.replace_range(699.., "b");
        assert!(same_bytes(&long, &long.clone()));
        assert!(!same_bytes(&long, &other), "last byte");
        assert!(!same_bytes(&long, &long[..699]), "length");
        for len in 0..20 {
            let text = "x".repeat(len);
            assert!(same_bytes(&text, &text.clone()));
            assert!(!same_bytes(&text, &format!("{text}y")));
        }
        let mut cache = TokenCache::new(10, 100_000);
        cache.insert(&long, entry(0, 1, 1000, 800));
        assert!(cache.get(&other, 0, |_| Some(1)).is_none());
        assert!(cache.get(&long, 0, |_| Some(1)).is_some());
    }

    #[test]
    fn zero_entries_disables_the_cache() {
        let mut cache = TokenCache::new(0, 100);
        cache.insert("t", entry(0, 1, 1000, 1));
        assert!(cache.is_empty());
    }
}
