//! Per-provider key state and the fetch schedule, as a pure state machine. The adapter calls
//! `tick` periodically, performs the fetches it returns, and hands back their outcomes; all
//! VMs of one Envoy coordinate through one shared record per provider (`record`), so one of
//! them fetches per refresh and the others adopt its keys.
//!
//! Along the data flow: `refresh` (each tick: adopt the record, take the lease when a fetch is
//! due), `fetch` (the outcome of a leased fetch: discovery steps, then publish or back off),
//! `kid_miss` (a token names a `kid` the keys lack), `changes` (what changed, for logs).

mod changes;
mod fetch;
mod kid_miss;
mod record;
mod refresh;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{JwksLocation, JwksSource, KeySources, RemoteJwks};
use crate::jwks::FetchLocation;
use crate::jwks::discovery::OIDC_WELL_KNOWN;
use crate::jwks::keys::KeySet;

pub use crate::UnixMillis;

/// An HTTP GET the adapter should send through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub provider: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

impl FetchRequest {
    /// The fetch's request headers. `authority` is the name the host takes the authority under:
    /// `:authority` for a proxy-wasm callout, `host` for an Envoy dynamic module's.
    pub fn headers(&self, authority: &'static str) -> Vec<(&'static str, &str)> {
        vec![
            (":method", "GET"),
            (":path", self.path.as_str()),
            (authority, self.authority.as_str()),
            ("accept", "application/json"),
            ("user-agent", crate::USER_AGENT),
        ]
    }
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

/// A fetch this VM runs under its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    phase: Phase,
    lease_serial: u64,
}

#[derive(Debug, Clone)]
struct RemoteState {
    name: String,
    issuer: String,
    config: RemoteJwks,
    record_key: String,
    keys: Option<Arc<KeySet>>,
    generation: u64,
    fetched_at_ms: UnixMillis,
    ttl_ms: u64,
    discovered: Option<FetchLocation>,
    in_flight: Option<InFlight>,
    refetch_wanted: bool,
    attempts_seen: u64,
    last_error: Option<String>,
}

#[derive(Debug, Clone)]
enum ProviderState {
    Inline(Arc<KeySet>),
    Remote(Box<RemoteState>),
}

#[derive(Debug, Clone)]
pub struct JwksStore {
    providers: Vec<ProviderState>,
    /// Identifies this VM in fetch leases, and seeds its jitter.
    vm_id: u64,
}

impl JwksStore {
    pub fn new(sources: &impl KeySources, vm_id: u64) -> Self {
        let providers = sources
            .key_sources()
            .into_iter()
            .map(|provider| match provider.source {
                JwksSource::Inline(keys) => ProviderState::Inline(Arc::new(KeySet {
                    generation: 1,
                    ..keys.clone()
                })),
                JwksSource::Remote(remote) => ProviderState::Remote(Box::new(RemoteState {
                    name: provider.name.to_string(),
                    issuer: provider.issuer.to_string(),
                    record_key: record_key(provider.name, provider.issuer, remote),
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
            Some(ProviderState::Remote(state)) => state.availability(now_ms),
        }
    }

    pub fn keys(&self, provider: usize) -> Option<&Arc<KeySet>> {
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

    /// The largest JWKS body worth reading (one byte over the cap, so an oversized body is
    /// still recognised as such).
    pub fn body_read_limit(&self, provider: usize) -> usize {
        match self.providers.get(provider) {
            Some(ProviderState::Remote(state)) => state.config.max_bytes as usize + 1,
            _ => 0,
        }
    }
}

/// The record's key is scoped by everything that decides which keys are right, so a changed
/// configuration never adopts a stale set from the old one.
fn record_key(name: &str, issuer: &str, remote: &RemoteJwks) -> String {
    let identity = format!("{issuer}\n{}\n{:?}", remote.cluster, remote.location);
    let digest = Sha256::digest(identity.as_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("brickgate.jwks.{name}.{tag}.record")
}

impl RemoteState {
    fn availability(&self, now_ms: UnixMillis) -> Availability<'_> {
        let Some(keys) = &self.keys else {
            return Availability::Cold;
        };
        let expires = self.fetched_at_ms + self.ttl_ms;
        let grace_ends = expires + self.config.max_stale_s * 1000;
        if now_ms <= expires {
            Availability::Ready(keys)
        } else if now_ms <= grace_ends {
            Availability::Stale(keys)
        } else {
            Availability::Expired(format!(
                "signing keys of provider {} expired {} s ago and could not be refreshed ({}); failing closed",
                self.name,
                (now_ms - expires) / 1000,
                self.last_error
                    .as_deref()
                    .unwrap_or("no successful fetch since")
            ))
        }
    }

    fn discovery_base(&self) -> FetchLocation {
        match &self.config.location {
            JwksLocation::Discover { issuer } => issuer.clone(),
            JwksLocation::Fixed(location) => location.clone(),
        }
    }

    /// Where a new attempt starts: the JWKS when its location is known, else discovery.
    fn first_step(&self) -> (Phase, FetchLocation) {
        match (&self.config.location, &self.discovered) {
            (JwksLocation::Fixed(location), _) => (Phase::Jwks, location.clone()),
            (JwksLocation::Discover { .. }, Some(location)) => (Phase::Jwks, location.clone()),
            (JwksLocation::Discover { issuer }, None) => (
                Phase::Discovery(OIDC_WELL_KNOWN),
                issuer.join(OIDC_WELL_KNOWN),
            ),
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
}

#[cfg(test)]
mod interleavings;
#[cfg(test)]
mod tests;
