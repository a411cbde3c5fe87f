//! Databricks tokens by cache key: in this VM, and in shared data for the other VMs of the
//! Envoy. proxy-wasm shared data cannot delete a key, so the shared side is a fixed number of
//! slots (`brickgate.upstream.slot.<n>`, n = hash(cache key) mod slots): however many subjects
//! call, the key count stays bounded. A slot names the cache key it holds, so a colliding slot
//! never serves another subject's token; a newer token overwrites whatever the slot held, and an
//! expired one is blanked when found.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::exchange::{IssuedToken, MAX_EXPIRES_IN_S};
use crate::UnixMillis;
use crate::shared_data::{SharedData, read, write};

/// Shared slots when the configuration does not say (`performance.upstream_token_slots`).
pub const DEFAULT_SLOTS: usize = 4096;
/// A cached Databricks token is dropped this long before it expires.
const EXPIRY_MARGIN_MS: u64 = 60_000;
const SLOT_PREFIX: &str = "brickgate.upstream.slot.";

/// One shared slot: whose token it is (the full cache key, itself a digest), the token and
/// when it stops being served.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Slot {
    key: String,
    token: String,
    expires_at_ms: UnixMillis,
}

#[derive(Debug)]
pub struct UpstreamTokens {
    slots: usize,
    local: HashMap<String, (String, UnixMillis)>,
}

impl Default for UpstreamTokens {
    fn default() -> Self {
        UpstreamTokens::new(DEFAULT_SLOTS)
    }
}

impl UpstreamTokens {
    /// At most `slots` shared entries, and as many in this VM's own map.
    pub fn new(slots: usize) -> Self {
        UpstreamTokens {
            slots: slots.max(1),
            local: HashMap::new(),
        }
    }

    fn slot_name(&self, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        let hash = digest
            .iter()
            .take(8)
            .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
        let slots = u64::try_from(self.slots).unwrap_or(u64::MAX);
        format!("{SLOT_PREFIX}{}", hash % slots)
    }

    pub fn get(
        &mut self,
        shared: &dyn SharedData,
        key: &str,
        now_ms: UnixMillis,
    ) -> Option<String> {
        if let Some((token, until)) = self.local.get(key) {
            if now_ms < *until {
                return Some(token.clone());
            }
            self.local.remove(key);
        }
        let name = self.slot_name(key);
        let (stored, cas) = read::<Slot>(shared, &name);
        if stored.key != key {
            return None; // empty, or another subject's token
        }
        if now_ms >= stored.expires_at_ms || stored.token.is_empty() {
            // Frees the token's bytes; the CAS keeps a token written meanwhile.
            shared.set(&name, b"", cas);
            return None;
        }
        self.remember(key, &stored.token, stored.expires_at_ms, now_ms);
        Some(stored.token)
    }

    pub fn put(
        &mut self,
        shared: &dyn SharedData,
        key: &str,
        issued: &IssuedToken,
        now_ms: UnixMillis,
    ) {
        // Capped and saturating: whatever `expires_in` said, a token is kept at most an hour
        // and the arithmetic never overflows.
        let lifetime_ms = issued
            .expires_in_s
            .min(MAX_EXPIRES_IN_S)
            .saturating_mul(1000)
            .saturating_sub(EXPIRY_MARGIN_MS);
        let until = now_ms.saturating_add(lifetime_ms);
        if until <= now_ms {
            return;
        }
        self.remember(key, &issued.access_token, until, now_ms);
        let slot = Slot {
            key: key.to_string(),
            token: issued.access_token.clone(),
            expires_at_ms: until,
        };
        write(shared, &self.slot_name(key), &slot, None);
    }

    /// Bounded like the shared side: expired entries go first, then everything if a flood
    /// of subjects fills it.
    fn remember(&mut self, key: &str, token: &str, until: UnixMillis, now_ms: UnixMillis) {
        if self.local.len() >= self.slots && !self.local.contains_key(key) {
            self.local.retain(|_, (_, expires)| *expires > now_ms);
            if self.local.len() >= self.slots {
                self.local.clear();
            }
        }
        self.local
            .insert(key.to_string(), (token.to_string(), until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_data::InMemorySharedData;

    const HOUR: IssuedToken = IssuedToken {
        access_token: String::new(),
        expires_in_s: 3600,
    };

    fn issued(token: &str) -> IssuedToken {
        IssuedToken {
            access_token: token.to_string(),
            ..HOUR
        }
    }

    /// Every VM but the writer: reads go to shared data.
    fn fresh_vm(slots: usize) -> UpstreamTokens {
        UpstreamTokens::new(slots)
    }

    #[test]
    fn tokens_are_cached_until_shortly_before_expiry_across_vms() {
        let shared = InMemorySharedData::default();
        let (mut first, mut second) = (UpstreamTokens::default(), UpstreamTokens::default());
        first.put(&shared, "k", &issued("dbx"), 1_000);
        assert_eq!(first.get(&shared, "k", 2_000).as_deref(), Some("dbx"));
        assert_eq!(
            second.get(&shared, "k", 2_000).as_deref(),
            Some("dbx"),
            "another VM reuses it"
        );
        assert_eq!(
            first.get(&shared, "k", 1_000 + 3_540_000),
            None,
            "dropped a minute early"
        );
        assert_eq!(second.get(&shared, "other", 2_000), None);
    }

    #[test]
    fn shared_keys_stay_bounded_however_many_subjects_call() {
        let shared = InMemorySharedData::default();
        let mut vm = UpstreamTokens::new(256);
        for subject in 0..10_000 {
            let key = format!("subject-{subject}");
            vm.put(&shared, &key, &issued(&format!("dbx-{subject}")), 1_000);
        }
        let keys = shared.keys();
        assert!(keys.len() <= 256, "{} shared keys", keys.len());
        assert!(keys.iter().all(|k| k.starts_with(SLOT_PREFIX)), "{keys:?}");
        assert!(vm.local.len() <= 256, "{} local entries", vm.local.len());
        // The latest writers are still served, each its own token.
        assert_eq!(
            fresh_vm(256).get(&shared, "subject-9999", 2_000).as_deref(),
            Some("dbx-9999")
        );
    }

    #[test]
    fn expired_entries_are_not_served_and_are_blanked() {
        let shared = InMemorySharedData::default();
        let mut writer = UpstreamTokens::new(16);
        writer.put(&shared, "alice", &issued("dbx-alice"), 0);
        let slot = writer.slot_name("alice");
        let cases = [
            (3_539_999, Some("dbx-alice")),
            (3_540_000, None), // a minute before Databricks' expiry
            (7_200_000, None),
        ];
        for (now, expected) in cases {
            let served = fresh_vm(16).get(&shared, "alice", now);
            assert_eq!(served.as_deref(), expected, "at {now}");
        }
        assert_eq!(shared.get(&slot).0.as_deref(), Some(&b""[..]), "blanked");
        let short = IssuedToken {
            access_token: "dbx-short".into(),
            expires_in_s: 30,
        };
        writer.put(&shared, "bob", &short, 0);
        assert_eq!(
            fresh_vm(16).get(&shared, "bob", 1),
            None,
            "a token living less than the margin is never cached"
        );
    }

    #[test]
    fn a_colliding_slot_never_serves_another_subjects_token() {
        let shared = InMemorySharedData::default();
        // One slot: every key collides.
        let mut writer = UpstreamTokens::new(1);
        writer.put(&shared, "alice", &issued("dbx-alice"), 0);
        assert_eq!(fresh_vm(1).get(&shared, "bob", 1), None);
        writer.put(&shared, "bob", &issued("dbx-bob"), 2);
        let mut reader = fresh_vm(1);
        assert_eq!(
            reader.get(&shared, "alice", 3),
            None,
            "overwritten, not mixed"
        );
        assert_eq!(reader.get(&shared, "bob", 3).as_deref(), Some("dbx-bob"));
        assert_eq!(
            writer.get(&shared, "alice", 3),
            None,
            "nor in the writer's VM"
        );
    }

    /// Issue 16 point 7d: an absurd lifetime neither overflows nor keeps a token past an hour.
    #[test]
    fn absurd_lifetimes_are_capped_without_overflow() {
        let shared = InMemorySharedData::default();
        let mut vm = UpstreamTokens::new(16);
        let cases: [(u64, UnixMillis, UnixMillis); 3] = [
            // (expires_in_s, issued at, first instant no longer served)
            (u64::MAX, 0, 3_540_000),
            (u64::MAX / 1000 + 1, 1_000, 3_541_000),
            (7_200, u64::MAX - 10, u64::MAX),
        ];
        for (i, (expires_in_s, at, gone)) in cases.into_iter().enumerate() {
            let key = format!("k{i}");
            let issued = IssuedToken {
                access_token: format!("dbx-{i}"),
                expires_in_s,
            };
            vm.put(&shared, &key, &issued, at);
            if gone > at + 1 {
                assert!(fresh_vm(16).get(&shared, &key, gone - 1).is_some(), "{i}");
            }
            assert_eq!(fresh_vm(16).get(&shared, &key, gone), None, "{i}");
        }
    }
}
