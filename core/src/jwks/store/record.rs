//! The shared record of one remote provider, and the protocol by which the VMs of one Envoy
//! (one per worker thread) share it, so that one of them fetches per refresh and all of them
//! use the same keys under the same generation.
//!
//! **One record.** One shared-data key per provider (`brickgate.jwks.<name>.<tag>.record`, the
//! tag a digest of everything that decides which keys are right) holds all the VMs coordinate
//! on: the fetch lease, the generation *and the key-set document it names*, freshness (fetch
//! time, TTL, the discovered JWKS location) and the fetch bookkeeping (attempts, failures and
//! backoff, the time of the last unknown-`kid` refetch). One value is one atomic write: no VM
//! can read a generation together with another generation's keys, and a lease changes hands
//! together with the state it was granted on.
//!
//! **Every write is conditional.** The host's semantics (proxy-wasm-cpp-host `SharedData`, see
//! `jwks::shared`): `get` of a missing key gives no CAS; `set` with CAS 0 overwrites
//! unconditionally; `set` with a non-zero CAS fails with `CasMismatch` on an existing key whose
//! CAS differs, and *creates a missing key whatever CAS it carries*. So:
//! - A VM reads the record and its CAS, and writes back a record derived from what it read,
//!   with that CAS. If any VM wrote in between, the write fails and nothing of it happened;
//!   the VM acts on the fresh record instead (on its next tick, or by re-reading).
//! - A VM that read no record creates it with CAS [`CREATE_ONLY`] (`u32::MAX`): the write
//!   succeeds while the key is missing, and if another VM created the record in between, the
//!   host compares `u32::MAX` with that record's CAS and refuses. Of VMs racing to create the
//!   record, exactly the first succeeds. (The host draws CAS values from one 32-bit counter for
//!   all keys and never yields 0; the refusal fails only if the creation that won the race drew
//!   `u32::MAX` itself, within the microseconds between the loser's read and write: at most once
//!   per 2³² shared-data writes of the process, and only at that moment.) No write uses CAS 0.
//!
//! **The lease.** A VM fetches only under a lease it wrote into the record: its VM id, a serial
//! (one more than any lease granted before) and an end time that covers the longest attempt
//! (three sequential calls, each bounded by the host's timeout). It takes the lease only from a
//! record whose own state says a fetch is due and no lease is live, so the first fetch too is
//! leased: the record is *created* holding the creator's lease. The holder publishes its keys,
//! or records its failure, and releases the lease in one write, conditional on the record still
//! holding its lease; a holder whose lease ran out and was taken over discards its result.
//! Generations only grow: a publish takes one more than both the record's and the holder's.

use serde::{Deserialize, Serialize};

use crate::shared_data::SharedData;

/// The CAS that creates a missing record and loses against an existing one (see above).
pub const CREATE_ONLY: u32 = u32::MAX;

/// Conditional writes retried against other VMs' concurrent writes before giving up.
const RACES: usize = 5;

/// A fetch lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub holder: u64,
    pub serial: u64,
    pub until_ms: u64,
}

/// What all VMs share about one provider. Stored as one line of JSON, a newline, then the
/// key-set document as fetched, so that a tick parses the small header and the document only
/// when its generation is new.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 0 until the first successful fetch.
    pub generation: u64,
    pub fetched_at_ms: u64,
    pub ttl_ms: u64,
    /// The JWKS location found by discovery, so the next lease holder can skip it.
    pub discovered: Option<(String, String)>,
    pub lease: Option<Lease>,
    pub leases_granted: u64,
    /// Finished attempts, so waiting requests learn that one ended.
    pub attempts: u64,
    pub failures: u32,
    pub retry_at_ms: u64,
    /// When a fetch was last started for an unknown `kid` (0: never).
    pub last_forced_ms: u64,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub document: Vec<u8>,
}

impl Record {
    pub fn live_lease(&self, now_ms: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| lease.until_ms > now_ms)
    }

    pub fn held_by(&self, holder: u64, serial: u64) -> bool {
        self.lease
            .is_some_and(|lease| lease.holder == holder && lease.serial == serial)
    }

    fn encode(&self) -> Option<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).ok()?;
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.document);
        Some(bytes)
    }

    /// Only brickgate writes the record, but a record from another version, or a broken one,
    /// must not be taken for keys: it reads as absent and is replaced (by CAS) on the next write.
    fn decode(bytes: &[u8]) -> Option<Record> {
        let newline = bytes.iter().position(|b| *b == b'\n')?;
        let (header, document) = bytes.split_at(newline);
        let mut record: Record = serde_json::from_slice(header).ok()?;
        record.document = document.get(1..).unwrap_or_default().to_vec();
        Some(record)
    }
}

/// A record as read, with what it takes to replace it conditionally.
#[derive(Debug, Clone)]
pub struct Stored {
    pub record: Record,
    cas: Option<u32>,
}

impl Stored {
    pub fn load(shared: &dyn SharedData, key: &str) -> Stored {
        let (bytes, cas) = shared.get(key);
        Stored {
            record: bytes
                .as_deref()
                .and_then(Record::decode)
                .unwrap_or_default(),
            cas,
        }
    }

    /// Writes `record` in place of the one read, if no VM wrote in between.
    pub fn replace(&self, shared: &dyn SharedData, key: &str, record: &Record) -> bool {
        let cas = self.cas.filter(|cas| *cas != 0).unwrap_or(CREATE_ONLY);
        record
            .encode()
            .is_some_and(|bytes| shared.set(key, &bytes, Some(cas)))
    }
}

/// How a read-modify-write ended.
#[derive(Debug)]
pub enum Update {
    Written(Record),
    /// `change` declined the record as read (e.g. the lease is no longer ours).
    Declined,
    /// Lost every race, or the host refused the write.
    Failed,
}

/// Reads, changes and conditionally writes the record, re-reading after a lost race.
pub fn update(
    shared: &dyn SharedData,
    key: &str,
    mut change: impl FnMut(&mut Record) -> bool,
) -> Update {
    for _ in 0..RACES {
        let stored = Stored::load(shared, key);
        let mut record = stored.record.clone();
        if !change(&mut record) {
            return Update::Declined;
        }
        if stored.replace(shared, key, &record) {
            return Update::Written(record);
        }
    }
    Update::Failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_data::InMemorySharedData;

    #[test]
    fn the_document_travels_with_its_generation() {
        let record = Record {
            generation: 7,
            last_error: Some("line\nbreak".into()),
            document: b"{\"keys\": []}\n".to_vec(),
            ..Record::default()
        };
        let bytes = record.encode().unwrap();
        assert_eq!(Record::decode(&bytes), Some(record));
        assert_eq!(Record::decode(b"{\"generation\": 1}"), None, "no separator");
        assert_eq!(Record::decode(b"<html>\n"), None);
    }

    #[test]
    fn only_the_first_of_racing_creators_succeeds() {
        let shared = InMemorySharedData::default();
        let (first, second) = (Stored::load(&shared, "r"), Stored::load(&shared, "r"));
        let mine = |holder| Record {
            lease: Some(Lease {
                holder,
                serial: 1,
                until_ms: 10,
            }),
            ..Record::default()
        };
        assert!(first.replace(&shared, "r", &mine(1)));
        assert!(
            !second.replace(&shared, "r", &mine(2)),
            "the record exists now"
        );
        assert!(Stored::load(&shared, "r").record.held_by(1, 1));
    }

    #[test]
    fn a_broken_record_reads_as_empty_and_is_replaced_by_cas() {
        let shared = InMemorySharedData::default();
        assert!(shared.set("r", b"garbage", None));
        let stored = Stored::load(&shared, "r");
        assert_eq!(stored.record, Record::default());
        assert!(stored.replace(&shared, "r", &Record::default()));
        assert!(
            !stored.replace(&shared, "r", &Record::default()),
            "stale CAS"
        );
    }
}
