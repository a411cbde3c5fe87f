//! Where a provider's keys come from, as the configuration states it. The key store is built
//! from these, so it depends on no other part of the configuration.

use super::{FetchLocation, KeySet};

#[derive(Debug, Clone)]
pub enum JwksSource {
    Inline(KeySet),
    Remote(RemoteJwks),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteJwks {
    pub cluster: String,
    pub location: JwksLocation,
    pub refresh_interval_s: u64,
    pub timeout_ms: u64,
    pub max_bytes: u64,
    /// How long the last good keys stay in use after they expire while the IdP cannot be reached.
    pub max_stale_s: u64,
    /// Least time between refetches caused by unknown `kid`s.
    pub refetch_min_interval_s: u64,
    /// How long a request may wait for keys (cold start, unknown `kid` refetch).
    pub wait_for_keys_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    Fixed(FetchLocation),
    /// Read `jwks_uri` from the issuer's discovery document.
    Discover {
        issuer: FetchLocation,
    },
}

/// One provider's key source, with the names the store reports and coordinates under.
#[derive(Debug, Clone, Copy)]
pub struct ProviderKeys<'a> {
    pub name: &'a str,
    pub issuer: &'a str,
    pub source: &'a JwksSource,
}

/// Whatever lists providers' key sources (the compiled configuration), in provider order.
pub trait KeySources {
    fn key_sources(&self) -> Vec<ProviderKeys<'_>>;
}
