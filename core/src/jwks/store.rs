//! Per-provider key state and the fetch schedule, as a pure state machine. The adapter calls
//! `tick` periodically, performs the fetches it returns, and hands back their outcomes; all
//! VMs of one Envoy coordinate through `SharedData`, so one of them fetches per refresh and
//! the others adopt its keys.

use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::config::{Config, JwksLocation, JwksSource, RemoteJwks};
use crate::jwks::FetchLocation;
use crate::jwks::discovery::{OAUTH_WELL_KNOWN, OIDC_WELL_KNOWN, jwks_location_from};
use crate::jwks::keys::{KeyOrigin, KeySet, parse_jwks};
use crate::jwks::schedule::{backoff_ms, refresh_at_ms, ttl_ms, unit_jitter};
use crate::jwks::shared::{Coordination, SharedData, SharedKeys, read, write};

pub type UnixMillis = u64;

/// Slack added to a fetch lease beyond the fetch timeout.
const LEASE_SLACK_MS: u64 = 2_000;

/// An HTTP GET the adapter should send through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub provider: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// What came back from a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    Response {
        status: u32,
        body: Vec<u8>,
        max_age_s: Option<u64>,
    },
    /// Connection refused, reset, timeout, or the call could not be dispatched.
    TransportFailure(String),
}

/// What happened, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The provider's keys changed; `fetched_here` is false when adopted from another VM.
    KeysChanged {
        provider: usize,
        added: Vec<String>,
        removed: Vec<String>,
        skipped: Vec<String>,
        fetched_here: bool,
    },
    FetchSucceeded {
        provider: usize,
    },
    /// This VM started a refetch because a token named an unknown `kid`.
    KidMissRefetch {
        provider: usize,
    },
    FetchFailed {
        provider: usize,
        why: String,
    },
}

/// What to do with a request whose `kid` the key set lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidMiss {
    /// Newer keys (fetched by another VM) were just adopted: decide again.
    Adopted,
    /// A refetch is coming or in flight: wait for it.
    Wait,
    /// A refetch happened too recently: the `kid` is unknown.
    RateLimited,
}

/// Whether a provider's keys can be used now.
#[derive(Debug, Clone)]
pub enum Availability<'a> {
    Ready(&'a KeySet),
    /// Past their refresh deadline, within the grace period (the IdP could not be reached).
    Stale(&'a KeySet),
    /// Never fetched yet.
    Cold,
    /// Beyond the grace period: fail closed.
    Expired(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Discovery(&'static str),
    Jwks,
}

#[derive(Debug, Clone)]
struct RemoteState {
    name: String,
    issuer: String,
    config: RemoteJwks,
    shared_prefix: String,
    keys: Option<Rc<KeySet>>,
    generation: u64,
    fetched_at_ms: UnixMillis,
    ttl_ms: u64,
    discovered: Option<FetchLocation>,
    in_flight: Option<Phase>,
    refetch_wanted: bool,
    attempts_seen: u64,
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
enum ProviderState {
    Inline(Rc<KeySet>),
    Remote(Box<RemoteState>),
}

#[derive(Debug, Clone)]
pub struct JwksStore {
    providers: Vec<ProviderState>,
    /// Identifies this VM in fetch leases, and seeds its jitter.
    vm_id: u64,
}

impl JwksStore {
    pub fn new(config: &Config, vm_id: u64) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|provider| match &provider.jwks {
                JwksSource::Inline(keys) => ProviderState::Inline(Rc::new(KeySet {
                    generation: 1,
                    ..keys.clone()
                })),
                JwksSource::Remote(remote) => ProviderState::Remote(Box::new(RemoteState {
                    name: provider.name.clone(),
                    issuer: provider.issuer.clone(),
                    shared_prefix: shared_prefix(&provider.name, &provider.issuer, remote),
                    config: remote.clone(),
                    keys: None,
                    generation: 0,
                    fetched_at_ms: 0,
                    ttl_ms: 0,
                    discovered: None,
                    in_flight: None,
                    refetch_wanted: false,
                    attempts_seen: 0,
                    last_error: None,
                })),
            })
            .collect();
        JwksStore { providers, vm_id }
    }

    fn remote(&mut self, provider: usize) -> Option<&mut RemoteState> {
        match self.providers.get_mut(provider)? {
            ProviderState::Remote(state) => Some(state),
            ProviderState::Inline(_) => None,
        }
    }

    pub fn availability(&self, provider: usize, now_ms: UnixMillis) -> Availability<'_> {
        match self.providers.get(provider) {
            None => Availability::Expired(format!("no provider #{provider}")),
            Some(ProviderState::Inline(keys)) => Availability::Ready(keys),
            Some(ProviderState::Remote(state)) => {
                let Some(keys) = &state.keys else {
                    return Availability::Cold;
                };
                let expires = state.fetched_at_ms + state.ttl_ms;
                let grace_ends = expires + state.config.max_stale_s * 1000;
                if now_ms <= expires {
                    Availability::Ready(keys)
                } else if now_ms <= grace_ends {
                    Availability::Stale(keys)
                } else {
                    Availability::Expired(format!(
                        "signing keys of provider {} expired {} s ago and could not be refreshed ({}); failing closed",
                        state.name,
                        (now_ms - expires) / 1000,
                        state
                            .last_error
                            .as_deref()
                            .unwrap_or("no successful fetch since")
                    ))
                }
            }
        }
    }

    pub fn keys(&self, provider: usize) -> Option<&Rc<KeySet>> {
        match self.providers.get(provider)? {
            ProviderState::Inline(keys) => Some(keys),
            ProviderState::Remote(state) => state.keys.as_ref(),
        }
    }

    pub fn generation(&self, provider: usize) -> Option<u64> {
        self.keys(provider).map(|keys| keys.generation)
    }

    /// Finished fetch attempts this VM has seen (any VM's), so waiting requests can tell that
    /// an attempt ended even when the keys did not change.
    pub fn attempts_seen(&self, provider: usize) -> u64 {
        match self.providers.get(provider) {
            Some(ProviderState::Remote(state)) => state.attempts_seen,
            _ => 0,
        }
    }

    /// How long a request may wait for this provider's keys (0 for inline keys).
    pub fn wait_budget_ms(&self, provider: usize) -> u64 {
        match self.providers.get(provider) {
            Some(ProviderState::Remote(state)) => state.config.wait_for_keys_ms,
            _ => 0,
        }
    }

    /// A token named a `kid` the key set lacks. Keys another VM already fetched are adopted
    /// at once; otherwise a refetch is requested, unless one happened less than
    /// `refetch_min_interval_s` ago (a flood of random `kid`s must not hammer the IdP). A fetch
    /// in flight anywhere in this Envoy is worth waiting for.
    pub fn on_unknown_kid(
        &mut self,
        shared: &dyn SharedData,
        provider: usize,
        now_ms: UnixMillis,
    ) -> KidMiss {
        let Some(state) = self.remote(provider) else {
            return KidMiss::RateLimited;
        };
        let before = state.generation;
        state.adopt(shared, provider);
        if state.generation != before {
            return KidMiss::Adopted;
        }
        let (coordination, _) = read::<Coordination>(shared, &state.coordination_key());
        if coordination.lease_until_ms > now_ms {
            return KidMiss::Wait;
        }
        if state.keys.is_some() && state.refetch_rate_limited(&coordination, now_ms) {
            return KidMiss::RateLimited;
        }
        state.refetch_wanted = true;
        KidMiss::Wait
    }

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
            events.extend(state.adopt(shared, index));
            if state.in_flight.is_some() {
                continue;
            }
            if let Some((fetch, forced)) = state.start_fetch_if_due(shared, index, vm_id, now_ms) {
                fetches.push(fetch);
                if forced {
                    events.push(StoreEvent::KidMissRefetch { provider: index });
                }
            }
        }
        (fetches, events)
    }

    /// Handles the outcome of a fetch this VM started; may start the next step (discovery →
    /// JWKS, or the RFC 8414 fallback).
    pub fn on_fetch_outcome(
        &mut self,
        shared: &dyn SharedData,
        provider: usize,
        outcome: FetchOutcome,
        now_ms: UnixMillis,
    ) -> (Vec<FetchRequest>, Vec<StoreEvent>) {
        let vm_id = self.vm_id;
        let Some(state) = self.remote(provider) else {
            return (Vec::new(), Vec::new());
        };
        let Some(phase) = state.in_flight.take() else {
            return (Vec::new(), Vec::new());
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
                    state.in_flight = Some(Phase::Jwks);
                    (vec![state.request(provider, &location)], Vec::new())
                }
                Err(why) => state.fail(
                    shared,
                    provider,
                    format!("{well_known}: {why}"),
                    vm_id,
                    now_ms,
                ),
            },
            (Phase::Discovery(OIDC_WELL_KNOWN), FetchOutcome::Response { .. }) => {
                state.in_flight = Some(Phase::Discovery(OAUTH_WELL_KNOWN));
                let location = state.discovery_base().join(OAUTH_WELL_KNOWN);
                (vec![state.request(provider, &location)], Vec::new())
            }
            (Phase::Discovery(_), FetchOutcome::Response { status, .. }) => state.fail(
                shared,
                provider,
                format!("discovery answered HTTP {status}"),
                vm_id,
                now_ms,
            ),
            (_, FetchOutcome::TransportFailure(why)) => state.fail(
                shared,
                provider,
                format!("fetch failed: {why}"),
                vm_id,
                now_ms,
            ),
            (
                Phase::Jwks,
                FetchOutcome::Response {
                    status,
                    body,
                    max_age_s,
                },
            ) => match state.parse_response(status, &body) {
                Ok(keys) => state.succeed(shared, provider, keys, body, max_age_s, now_ms),
                Err(why) => {
                    state.discovered = None;
                    state.fail(shared, provider, why, vm_id, now_ms)
                }
            },
        }
    }

    /// The largest JWKS body worth reading (one byte over the cap, so an oversized body is
    /// still recognised as such).
    pub fn body_read_limit(&self, provider: usize) -> usize {
        match self.providers.get(provider) {
            Some(ProviderState::Remote(state)) => state.config.max_bytes as usize + 1,
            _ => 0,
        }
    }
}

/// Shared-data keys are scoped by everything that decides which keys are right, so a changed
/// configuration never adopts a stale set from the old one.
fn shared_prefix(name: &str, issuer: &str, remote: &RemoteJwks) -> String {
    let identity = format!("{issuer}\n{}\n{:?}", remote.cluster, remote.location);
    let digest = Sha256::digest(identity.as_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("brickgate.jwks.{name}.{tag}")
}

impl RemoteState {
    fn refetch_rate_limited(&self, coordination: &Coordination, now_ms: UnixMillis) -> bool {
        coordination.last_forced_ms > 0
            && now_ms < coordination.last_forced_ms + self.config.refetch_min_interval_s * 1000
    }

    fn meta_key(&self) -> String {
        format!("{}.meta", self.shared_prefix)
    }

    fn body_key(&self) -> String {
        format!("{}.body", self.shared_prefix)
    }

    fn coordination_key(&self) -> String {
        format!("{}.coordination", self.shared_prefix)
    }

    fn discovery_base(&self) -> FetchLocation {
        match &self.config.location {
            JwksLocation::Discover { issuer } => issuer.clone(),
            JwksLocation::Fixed(location) => location.clone(),
        }
    }

    fn request(&self, provider: usize, location: &FetchLocation) -> FetchRequest {
        FetchRequest {
            provider,
            cluster: self.config.cluster.clone(),
            authority: location.authority.clone(),
            path: location.path.clone(),
            timeout_ms: self.config.timeout_ms,
        }
    }

    /// Takes over what the shared record says: freshness always, keys when their generation
    /// moved on.
    fn adopt(&mut self, shared: &dyn SharedData, index: usize) -> Option<StoreEvent> {
        let (coordination, _) = read::<Coordination>(shared, &self.coordination_key());
        self.attempts_seen = coordination.attempts;
        self.last_error = coordination.last_error;
        let (meta, _) = read::<SharedKeys>(shared, &self.meta_key());
        if meta.generation == 0 {
            return None;
        }
        self.fetched_at_ms = meta.fetched_at_ms;
        self.ttl_ms = meta.ttl_ms;
        if self.discovered.is_none() {
            self.discovered = meta
                .discovered
                .map(|(authority, path)| FetchLocation { authority, path });
        }
        if meta.generation <= self.generation {
            return None;
        }
        let (body, _) = shared.get(&self.body_key());
        let parsed = body
            .and_then(|body| serde_json::from_slice(&body).ok())
            .and_then(|document| parse_jwks(&document, KeyOrigin::Remote).ok());
        let mut keys = parsed?;
        keys.generation = meta.generation;
        let event = changed_event(index, self.keys.as_deref(), &keys, false);
        self.generation = meta.generation;
        self.keys = Some(Rc::new(keys));
        event
    }

    fn start_fetch_if_due(
        &mut self,
        shared: &dyn SharedData,
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
        let key = self.coordination_key();
        let (coordination, cas) = read::<Coordination>(shared, &key);
        if coordination.lease_until_ms > now_ms || now_ms < coordination.retry_at_ms {
            return None;
        }
        let forced = self.refetch_wanted && !cold && !refresh_due;
        if forced && self.refetch_rate_limited(&coordination, now_ms) {
            // Another VM refetched for an unknown kid moments ago: its keys are adopted above.
            self.refetch_wanted = false;
            return None;
        }
        let leased = Coordination {
            holder: vm_id,
            lease_until_ms: now_ms + self.config.timeout_ms * 3 + LEASE_SLACK_MS,
            last_forced_ms: if forced {
                now_ms
            } else {
                coordination.last_forced_ms
            },
            ..coordination
        };
        if !write(shared, &key, &leased, cas) {
            return None;
        }
        self.refetch_wanted = false;
        let (phase, location) = match (&self.config.location, &self.discovered) {
            (JwksLocation::Fixed(location), _) => (Phase::Jwks, location.clone()),
            (JwksLocation::Discover { .. }, Some(location)) => (Phase::Jwks, location.clone()),
            (JwksLocation::Discover { issuer }, None) => (
                Phase::Discovery(OIDC_WELL_KNOWN),
                issuer.join(OIDC_WELL_KNOWN),
            ),
        };
        self.in_flight = Some(phase);
        Some((self.request(index, &location), forced))
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

    /// Publishes a successful fetch to every VM and releases the lease.
    fn succeed(
        &mut self,
        shared: &dyn SharedData,
        index: usize,
        mut keys: KeySet,
        body: Vec<u8>,
        max_age_s: Option<u64>,
        now_ms: UnixMillis,
    ) -> (Vec<FetchRequest>, Vec<StoreEvent>) {
        let (meta, _) = read::<SharedKeys>(shared, &self.meta_key());
        let changed = changed_event(index, self.keys.as_deref(), &keys, true);
        let generation = if changed.is_some() || meta.generation == 0 {
            meta.generation.max(self.generation) + 1
        } else {
            meta.generation.max(self.generation)
        };
        if changed.is_some() || meta.generation == 0 {
            shared.set(&self.body_key(), &body, None);
        }
        let ttl = ttl_ms(self.config.refresh_interval_s, max_age_s);
        let published = SharedKeys {
            generation,
            fetched_at_ms: now_ms,
            ttl_ms: ttl,
            discovered: self.discovered.clone().map(|l| (l.authority, l.path)),
        };
        write(shared, &self.meta_key(), &published, None);
        self.finish_attempt(shared, |c| {
            c.failures = 0;
            c.retry_at_ms = 0;
            c.last_error = None;
        });
        keys.generation = generation;
        self.generation = generation;
        self.fetched_at_ms = now_ms;
        self.ttl_ms = ttl;
        self.last_error = None;
        if changed.is_some() || self.keys.is_none() {
            self.keys = Some(Rc::new(keys));
        }
        let mut events = vec![StoreEvent::FetchSucceeded { provider: index }];
        events.extend(changed);
        (Vec::new(), events)
    }

    fn fail(
        &mut self,
        shared: &dyn SharedData,
        index: usize,
        why: String,
        vm_id: u64,
        now_ms: UnixMillis,
    ) -> (Vec<FetchRequest>, Vec<StoreEvent>) {
        let ttl = if self.ttl_ms > 0 {
            self.ttl_ms
        } else {
            self.config.refresh_interval_s * 1000
        };
        let message = why.clone();
        self.finish_attempt(shared, |c| {
            c.failures = c.failures.saturating_add(1);
            c.retry_at_ms =
                now_ms + backoff_ms(c.failures, ttl, unit_jitter(vm_id, u64::from(c.failures)));
            c.last_error = Some(message.clone());
        });
        self.last_error = Some(why.clone());
        (
            Vec::new(),
            vec![StoreEvent::FetchFailed {
                provider: index,
                why,
            }],
        )
    }

    /// Releases the lease and counts the attempt; CAS with a few retries against other VMs'
    /// concurrent updates (rate-limit stamps).
    fn finish_attempt(&mut self, shared: &dyn SharedData, update: impl Fn(&mut Coordination)) {
        let key = self.coordination_key();
        for _ in 0..5 {
            let (mut coordination, cas) = read::<Coordination>(shared, &key);
            coordination.lease_until_ms = 0;
            coordination.attempts += 1;
            update(&mut coordination);
            if write(shared, &key, &coordination, cas) {
                self.attempts_seen = coordination.attempts;
                return;
            }
        }
    }
}

fn changed_event(
    provider: usize,
    old: Option<&KeySet>,
    new: &KeySet,
    fetched_here: bool,
) -> Option<StoreEvent> {
    let same = old.is_some_and(|old| {
        old.keys.len() == new.keys.len()
            && old
                .keys
                .iter()
                .zip(&new.keys)
                .all(|(a, b)| a.kid == b.kid && a.alg == b.alg && a.material == b.material)
    });
    if same {
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

#[cfg(test)]
mod tests;
