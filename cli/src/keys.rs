//! Signing keys for `explain`: fetched as the plugin fetches them (the same key store drives
//! discovery and the JWKS fetch; this tool only carries out its GETs), or read from a file.

use std::io::Read;
use std::time::Duration;

use brickgate_core::config::{Config, JwksSource};
use brickgate_core::jwks::schedule::max_age;
use brickgate_core::jwks::{
    FetchLocation, FetchOutcome, FetchRequest, JwksStore, KeyOrigin, StoreEvent, parse_jwks,
};
use brickgate_core::shared_data::InMemorySharedData;

use crate::args::read_file;

/// `--jwks FILE`: this key set stands for every provider's remote keys (offline).
pub fn use_file(config: &mut Config, path: &str) -> Result<(), String> {
    let bytes = read_file(path, "JWKS")?;
    let document: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("JWKS {path} is not JSON: {e}"))?;
    let keys = parse_jwks(&document, KeyOrigin::Remote).map_err(|e| format!("JWKS {path}: {e}"))?;
    for provider in &mut config.providers {
        if matches!(provider.jwks, JwksSource::Remote(_)) {
            provider.jwks = JwksSource::Inline(keys.clone());
        }
    }
    Ok(())
}

/// Builds the key store and runs every fetch it asks for until none is left; returns the
/// store and one line per provider fetch event.
pub fn fetch_all(config: &Config, now_ms: u64) -> (JwksStore, Vec<String>) {
    let shared = InMemorySharedData::default();
    let mut store = JwksStore::new(config, 1);
    let (mut pending, events) = store.tick(&shared, now_ms);
    let mut lines = describe_events(config, &events);
    // Discovery, the RFC 8414 fallback, then the JWKS: a few steps per provider at most.
    for _ in 0..8 {
        if pending.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for fetch in pending {
            let outcome = get(&store, &fetch);
            let (more, events) = store.on_fetch_outcome(&shared, fetch.provider, outcome, now_ms);
            lines.extend(describe_events(config, &events));
            next.extend(more);
        }
        pending = next;
    }
    (store, lines)
}

/// The URL the plugin's Envoy cluster would reach: plain http only on loopback (as the
/// configuration allows it only there), https otherwise.
fn url(fetch: &FetchRequest) -> String {
    // The core's own judgement: its URL parser takes plain http only for loopback hosts.
    let loopback = FetchLocation::parse(&format!("http://{}/", fetch.authority)).is_ok();
    let scheme = if loopback { "http" } else { "https" };
    format!("{scheme}://{}{}", fetch.authority, fetch.path)
}

fn get(store: &JwksStore, fetch: &FetchRequest) -> FetchOutcome {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(fetch.timeout_ms)))
        .http_status_as_error(false)
        .build()
        .into();
    let url = url(fetch);
    let mut response = match agent.get(&url).header("accept", "application/json").call() {
        Ok(response) => response,
        Err(e) => return FetchOutcome::TransportFailure(format!("GET {url}: {e}")),
    };
    let status = u32::from(response.status().as_u16());
    let max_age_s = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    let limit = store.body_read_limit(fetch.provider) as u64;
    let mut body = Vec::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(limit)
        .read_to_end(&mut body);
    match read {
        Ok(_) => FetchOutcome::Response {
            status,
            body,
            max_age_s,
        },
        Err(e) => FetchOutcome::TransportFailure(format!("GET {url}: {e}")),
    }
}

fn describe_events(config: &Config, events: &[StoreEvent]) -> Vec<String> {
    let name = |i: &usize| {
        config
            .providers
            .get(*i)
            .map_or("?", |p| p.name.as_str())
            .to_string()
    };
    events
        .iter()
        .filter_map(|event| match event {
            StoreEvent::KeysChanged {
                provider,
                added,
                skipped,
                ..
            } => Some(format!(
                "keys: provider {}: fetched [{}]{}",
                name(provider),
                added.join(", "),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(", skipped [{}]", skipped.join(", "))
                }
            )),
            StoreEvent::FetchFailed { provider, why } => {
                Some(format!("keys: provider {}: {why}", name(provider)))
            }
            StoreEvent::FetchSucceeded { .. } | StoreEvent::KidMissRefetch { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(authority: &str) -> FetchRequest {
        FetchRequest {
            provider: 0,
            cluster: "idp".into(),
            authority: authority.into(),
            path: "/jwks.json".into(),
            timeout_ms: 1000,
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        for (authority, url) in [
            ("127.0.0.1:9400", "http://127.0.0.1:9400/jwks.json"),
            ("localhost:8080", "http://localhost:8080/jwks.json"),
            ("[::1]:9400", "http://[::1]:9400/jwks.json"),
            ("login.example.com", "https://login.example.com/jwks.json"),
            (
                "127.0.0.1.evil.example",
                "https://127.0.0.1.evil.example/jwks.json",
            ),
        ] {
            assert_eq!(super::url(&fetch(authority)), url);
        }
    }
}
