//! The outcome of a fetch this VM runs under its lease: the next discovery step, or the keys
//! published to every VM, or the failure recorded with its backoff; either way the lease is
//! released in the same conditional write.

use std::sync::Arc;

use super::changes::{changed_event, parse_document, same_keys};
use super::record::{Update, update};
use super::{
    FetchOutcome, FetchRequest, InFlight, JwksStore, Phase, RemoteState, StoreEvent, UnixMillis,
};
use crate::jwks::discovery::{OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN, jwks_location_from};
use crate::jwks::keys::{KeyOrigin, KeySet, parse_jwks};
use crate::jwks::schedule::{backoff_ms, ttl_ms, unit_jitter};
use crate::shared_data::SharedData;

type Next = (Vec<FetchRequest>, Vec<StoreEvent>);

impl JwksStore {
    /// Handles the outcome of a fetch this VM started; may start the next step (discovery →
    /// JWKS, or the RFC 8414 fallback).
    pub fn on_fetch_outcome(
        &mut self,
        shared: &dyn SharedData,
        provider: usize,
        outcome: FetchOutcome,
        now_ms: UnixMillis,
    ) -> Next {
        let vm_id = self.vm_id;
        let Some(state) = self.remote(provider) else {
            return (Vec::new(), Vec::new());
        };
        let Some(InFlight {
            phase,
            lease_serial,
        }) = state.in_flight.take()
        else {
            return (Vec::new(), Vec::new());
        };
        let attempt = Attempt {
            provider,
            vm_id,
            lease_serial,
            now_ms,
        };
        match (phase, outcome) {
            (
                Phase::Discovery(well_known),
                FetchOutcome::Response {
                    status: 200, body, ..
                },
            ) => match jwks_location_from(&body, &state.issuer) {
                Ok(location) => {
                    state.discovered = Some(location.clone());
                    state.continue_with(Phase::Jwks, lease_serial, provider, &location)
                }
                Err(why) => state.fail(shared, &attempt, format!("{well_known}: {why}")),
            },
            (Phase::Discovery(OIDC_WELL_KNOWN), FetchOutcome::Response { .. }) => {
                let location = state.discovery_base().join(OAUTH_WELL_KNOWN);
                let phase = Phase::Discovery(OAUTH_WELL_KNOWN);
                state.continue_with(phase, lease_serial, provider, &location)
            }
            (Phase::Discovery(_), FetchOutcome::Response { status, .. }) => state.fail(
                shared,
                &attempt,
                format!("discovery answered HTTP {status}"),
            ),
            (_, FetchOutcome::TransportFailure(why)) => {
                state.fail(shared, &attempt, format!("fetch failed: {why}"))
            }
            (
                Phase::Jwks,
                FetchOutcome::Response {
                    status,
                    body,
                    max_age_s,
                },
            ) => match state.parse_response(status, &body) {
                Ok(keys) => state.publish(shared, &attempt, keys, body, max_age_s),
                Err(why) => {
                    state.discovered = None;
                    state.fail(shared, &attempt, why)
                }
            },
        }
    }
}

/// The attempt an outcome belongs to.
struct Attempt {
    provider: usize,
    vm_id: u64,
    lease_serial: u64,
    now_ms: UnixMillis,
}

impl RemoteState {
    fn continue_with(
        &mut self,
        phase: Phase,
        lease_serial: u64,
        provider: usize,
        location: &crate::jwks::FetchLocation,
    ) -> Next {
        self.in_flight = Some(InFlight {
            phase,
            lease_serial,
        });
        (vec![self.request(provider, location)], Vec::new())
    }

    fn parse_response(&self, status: u32, body: &[u8]) -> Result<KeySet, String> {
        if status != 200 {
            // Envoy answers 503 (cannot connect, reset) and 504 (timeout) itself.
            let hint = match status {
                503 => " (or Envoy could not connect to the cluster)",
                504 => " (or the fetch timed out)",
                _ => "",
            };
            return Err(format!("JWKS endpoint answered HTTP {status}{hint}"));
        }
        if body.len() as u64 > self.config.max_bytes {
            return Err(format!(
                "JWKS body exceeds max_bytes {}",
                self.config.max_bytes
            ));
        }
        let document =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        parse_jwks(&document, KeyOrigin::Remote)
    }

    /// Publishes the keys to every VM and releases the lease, in one write that succeeds only
    /// while the lease is still ours. Unchanged keys keep their generation.
    fn publish(
        &mut self,
        shared: &dyn SharedData,
        attempt: &Attempt,
        mut keys: KeySet,
        body: Vec<u8>,
        max_age_s: Option<u64>,
    ) -> Next {
        let ttl = ttl_ms(self.config.refresh_interval_s, max_age_s);
        let local_generation = self.generation;
        let discovered = self.discovered.clone().map(|l| (l.authority, l.path));
        let written = update(shared, &self.record_key, |record| {
            if !record.held_by(attempt.vm_id, attempt.lease_serial) {
                return false;
            }
            let unchanged = record.generation > 0
                && parse_document(&record.document)
                    .is_some_and(|current| same_keys(&current, &keys));
            if !unchanged {
                record.generation = record.generation.max(local_generation) + 1;
                record.document.clone_from(&body);
            }
            record.fetched_at_ms = attempt.now_ms;
            record.ttl_ms = ttl;
            record.discovered.clone_from(&discovered);
            record.lease = None;
            record.attempts += 1;
            record.failures = 0;
            record.retry_at_ms = 0;
            record.last_error = None;
            true
        });
        let record = match written {
            Update::Written(record) => record,
            Update::Declined => return self.lost_lease(attempt),
            Update::Failed => {
                let why = "could not publish the keys to shared data".to_string();
                return self.failed(attempt.provider, why);
            }
        };
        keys.generation = record.generation;
        let changed = changed_event(attempt.provider, self.keys.as_deref(), &keys, true);
        if record.generation > self.generation || self.keys.is_none() {
            self.keys = Some(Arc::new(keys));
        }
        self.generation = record.generation;
        self.fetched_at_ms = record.fetched_at_ms;
        self.ttl_ms = record.ttl_ms;
        self.attempts_seen = record.attempts;
        self.last_error = None;
        let mut events = vec![StoreEvent::FetchSucceeded {
            provider: attempt.provider,
        }];
        events.extend(changed);
        (Vec::new(), events)
    }

    /// Records the failure and its backoff for every VM, and releases the lease.
    fn fail(&mut self, shared: &dyn SharedData, attempt: &Attempt, why: String) -> Next {
        let ttl = if self.ttl_ms > 0 {
            self.ttl_ms
        } else {
            self.config.refresh_interval_s * 1000
        };
        let written = update(shared, &self.record_key, |record| {
            if !record.held_by(attempt.vm_id, attempt.lease_serial) {
                return false;
            }
            record.failures = record.failures.saturating_add(1);
            let jitter = unit_jitter(attempt.vm_id, u64::from(record.failures));
            record.retry_at_ms = attempt.now_ms + backoff_ms(record.failures, ttl, jitter);
            record.last_error = Some(why.clone());
            record.lease = None;
            record.attempts += 1;
            true
        });
        match written {
            Update::Written(record) => self.attempts_seen = record.attempts,
            Update::Declined => return self.lost_lease(attempt),
            Update::Failed => {}
        }
        self.failed(attempt.provider, why)
    }

    /// The lease ran out before the outcome came, and another VM took it: that VM's result
    /// counts, this one is discarded.
    fn lost_lease(&mut self, attempt: &Attempt) -> Next {
        let why = "the fetch outlived its lease; its result is discarded".to_string();
        self.failed(attempt.provider, why)
    }

    fn failed(&mut self, provider: usize, why: String) -> Next {
        self.last_error = Some(why.clone());
        (Vec::new(), vec![StoreEvent::FetchFailed { provider, why }])
    }
}
