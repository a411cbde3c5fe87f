//! Each tick: take over what the shared record says, then start the fetch that is due, if
//! this VM wins its lease.

use std::sync::Arc;

use super::changes::{changed_event, parse_document};
use super::record::{Lease, Record, Stored};
use super::{
    FetchRequest, InFlight, JwksStore, ProviderState, RemoteState, StoreEvent, UnixMillis,
};
use crate::jwks::FetchLocation;
use crate::jwks::schedule::{refresh_at_ms, unit_jitter};
use crate::shared_data::SharedData;

/// Slack added to a fetch lease beyond the longest attempt.
const LEASE_SLACK_MS: u64 = 2_000;

impl JwksStore {
    /// Adopts keys other VMs fetched, and starts the fetches that are due and whose lease this
    /// VM wins.
    pub fn tick(
        &mut self,
        shared: &dyn SharedData,
        now_ms: UnixMillis,
    ) -> (Vec<FetchRequest>, Vec<StoreEvent>) {
        let vm_id = self.vm_id;
        let mut fetches = Vec::new();
        let mut events = Vec::new();
        for (index, provider) in self.providers.iter_mut().enumerate() {
            let ProviderState::Remote(state) = provider else {
                continue;
            };
            let stored = Stored::load(shared, &state.record_key);
            events.extend(state.adopt(&stored.record, index));
            if state.in_flight.is_some() {
                continue;
            }
            if let Some((fetch, forced)) =
                state.start_fetch_if_due(shared, &stored, index, vm_id, now_ms)
            {
                fetches.push(fetch);
                if forced {
                    events.push(StoreEvent::KidMissRefetch { provider: index });
                }
            }
        }
        (fetches, events)
    }
}

impl RemoteState {
    /// Takes over what the record says: keys when their generation moved on, and freshness
    /// and bookkeeping of that same generation. Keys and their metadata come from one read of
    /// one value, so they always belong together.
    pub(super) fn adopt(&mut self, record: &Record, index: usize) -> Option<StoreEvent> {
        self.attempts_seen = record.attempts;
        self.last_error.clone_from(&record.last_error);
        if record.generation == 0 || record.generation < self.generation {
            return None;
        }
        let mut event = None;
        if record.generation > self.generation {
            let mut keys = parse_document(&record.document)?;
            keys.generation = record.generation;
            event = changed_event(index, self.keys.as_deref(), &keys, false);
            self.generation = record.generation;
            self.keys = Some(Arc::new(keys));
            // Requests waiting on an unknown kid re-decide against these keys, and ask again.
            self.refetch_wanted = false;
        }
        self.fetched_at_ms = record.fetched_at_ms;
        self.ttl_ms = record.ttl_ms;
        if self.discovered.is_none() {
            self.discovered = record
                .discovered
                .clone()
                .map(|(authority, path)| FetchLocation { authority, path });
        }
        event
    }

    pub(super) fn refetch_rate_limited(&self, record: &Record, now_ms: UnixMillis) -> bool {
        record.last_forced_ms > 0
            && now_ms < record.last_forced_ms + self.config.refetch_min_interval_s * 1000
    }

    /// A lease long enough for the longest attempt: discovery, its RFC 8414 fallback and the
    /// JWKS, each bounded by the fetch timeout.
    fn lease_ms(&self) -> u64 {
        self.config.timeout_ms * 3 + LEASE_SLACK_MS
    }

    /// Takes the lease on the record as read, when that record says a fetch is due and no
    /// other VM holds a live lease; `forced` when the fetch is for an unknown `kid`.
    fn start_fetch_if_due(
        &mut self,
        shared: &dyn SharedData,
        stored: &Stored,
        index: usize,
        vm_id: u64,
        now_ms: UnixMillis,
    ) -> Option<(FetchRequest, bool)> {
        let cold = self.keys.is_none();
        let jitter = unit_jitter(vm_id, self.generation);
        let refresh_due = !cold && now_ms >= refresh_at_ms(self.fetched_at_ms, self.ttl_ms, jitter);
        if !(cold || refresh_due || self.refetch_wanted) {
            return None;
        }
        let record = &stored.record;
        if record.live_lease(now_ms).is_some() || now_ms < record.retry_at_ms {
            return None;
        }
        let forced = self.refetch_wanted && !cold && !refresh_due;
        if forced && self.refetch_rate_limited(record, now_ms) {
            // Another VM refetched for an unknown kid moments ago: its keys were adopted.
            self.refetch_wanted = false;
            return None;
        }
        let serial = record.leases_granted + 1;
        let leased = Record {
            lease: Some(Lease {
                holder: vm_id,
                serial,
                until_ms: now_ms + self.lease_ms(),
            }),
            leases_granted: serial,
            last_forced_ms: if forced {
                now_ms
            } else {
                record.last_forced_ms
            },
            ..record.clone()
        };
        if !stored.replace(shared, &self.record_key, &leased) {
            // Another VM wrote first: its record is read on the next tick.
            return None;
        }
        self.refetch_wanted = false;
        let (phase, location) = self.first_step();
        self.in_flight = Some(InFlight {
            phase,
            lease_serial: serial,
        });
        Some((self.request(index, &location), forced))
    }
}
