//! Per-provider key state and the fetch schedule, as a pure state machine: the adapter asks
//! which fetches are due, performs them, and hands back the outcome with `now`.

use std::rc::Rc;

use crate::UnixTime;
use crate::config::{Config, JwksSource, RemoteJwks};
use crate::jwks::keys::{KeyOrigin, KeySet, parse_jwks};

/// After a failed fetch, retry sooner than the regular interval.
const RETRY_AFTER_FAILURE_S: u64 = 5;

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
    },
    /// Connection refused, reset, timeout, or the call could not be dispatched.
    TransportFailure(String),
}

/// The result of handling one outcome, for logs and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReport {
    Updated {
        added: Vec<String>,
        removed: Vec<String>,
        skipped: Vec<String>,
    },
    Unchanged,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ProviderKeys {
    pub keys: Option<Rc<KeySet>>,
    remote: Option<RemoteJwks>,
    next_fetch_at: UnixTime,
    in_flight: bool,
}

#[derive(Debug, Clone, Default)]
pub struct JwksStore {
    providers: Vec<ProviderKeys>,
    generations: u64,
}

impl JwksStore {
    /// Inline key sets are ready at once; remote ones are due immediately.
    pub fn new(config: &Config) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|provider| match &provider.jwks {
                JwksSource::Inline(keys) => ProviderKeys {
                    keys: Some(Rc::new(KeySet {
                        generation: 1,
                        ..keys.clone()
                    })),
                    remote: None,
                    next_fetch_at: 0,
                    in_flight: false,
                },
                JwksSource::Remote(remote) => ProviderKeys {
                    keys: None,
                    remote: Some(remote.clone()),
                    next_fetch_at: 0,
                    in_flight: false,
                },
            })
            .collect();
        JwksStore {
            providers,
            generations: 1,
        }
    }

    pub fn generation(&self, provider: usize) -> Option<u64> {
        self.keys(provider).map(|keys| keys.generation)
    }

    pub fn keys(&self, provider: usize) -> Option<&Rc<KeySet>> {
        self.providers.get(provider)?.keys.as_ref()
    }

    /// The largest JWKS body worth reading for `provider` (one byte more than the cap, so
    /// an oversized body is still recognised as such).
    pub fn body_read_limit(&self, provider: usize) -> usize {
        self.providers
            .get(provider)
            .and_then(|state| state.remote.as_ref())
            .map_or(0, |remote| remote.max_bytes as usize + 1)
    }

    /// The fetches due at `now`; each is marked in flight until its outcome arrives.
    pub fn due_fetches(&mut self, now: UnixTime) -> Vec<FetchRequest> {
        let mut due = Vec::new();
        for (index, state) in self.providers.iter_mut().enumerate() {
            let Some(remote) = &state.remote else {
                continue;
            };
            if state.in_flight || now < state.next_fetch_at {
                continue;
            }
            state.in_flight = true;
            due.push(FetchRequest {
                provider: index,
                cluster: remote.cluster.clone(),
                authority: remote.authority.clone(),
                path: remote.path.clone(),
                timeout_ms: remote.timeout_ms,
            });
        }
        due
    }

    /// Handles the outcome of a fetch. A failure keeps the previous keys.
    pub fn on_fetch_outcome(
        &mut self,
        provider: usize,
        outcome: FetchOutcome,
        now: UnixTime,
    ) -> FetchReport {
        let Some(state) = self.providers.get_mut(provider) else {
            return FetchReport::Failed(format!("no provider #{provider}"));
        };
        let Some(remote) = &state.remote else {
            return FetchReport::Failed("provider has inline keys".to_string());
        };
        state.in_flight = false;
        let parsed = match outcome {
            FetchOutcome::TransportFailure(why) => Err(format!("fetch failed: {why}")),
            FetchOutcome::Response { status, .. } if status != 200 => {
                Err(format!("JWKS endpoint answered HTTP {status}"))
            }
            FetchOutcome::Response { body, .. } if body.len() as u64 > remote.max_bytes => {
                Err(format!(
                    "JWKS body of {} bytes exceeds max_bytes {}",
                    body.len(),
                    remote.max_bytes
                ))
            }
            FetchOutcome::Response { body, .. } => serde_json::from_slice(&body)
                .map_err(|e| format!("JWKS is not JSON: {e}"))
                .and_then(|document| parse_jwks(&document, KeyOrigin::Remote)),
        };
        match parsed {
            Err(why) => {
                state.next_fetch_at = now + RETRY_AFTER_FAILURE_S.min(remote.refresh_interval_s);
                FetchReport::Failed(why)
            }
            Ok(mut fresh) => {
                state.next_fetch_at = now + remote.refresh_interval_s;
                let report = diff(state.keys.as_deref(), &fresh);
                if report != FetchReport::Unchanged {
                    self.generations += 1;
                    fresh.generation = self.generations;
                    state.keys = Some(Rc::new(fresh));
                }
                report
            }
        }
    }
}

fn diff(old: Option<&KeySet>, new: &KeySet) -> FetchReport {
    let old_kids = old.map(KeySet::kids).unwrap_or_default();
    let new_kids = new.kids();
    let added: Vec<String> = new_kids
        .iter()
        .filter(|k| !old_kids.contains(k))
        .cloned()
        .collect();
    let removed: Vec<String> = old_kids
        .iter()
        .filter(|k| !new_kids.contains(k))
        .cloned()
        .collect();
    let same_material = old.is_some_and(|old| {
        old.keys.len() == new.keys.len()
            && old
                .keys
                .iter()
                .zip(&new.keys)
                .all(|(a, b)| a.kid == b.kid && a.alg == b.alg && a.material == b.material)
    });
    if same_material {
        return FetchReport::Unchanged;
    }
    let skipped = new
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.kid.as_deref().unwrap_or("(no kid)"), s.why))
        .collect();
    FetchReport::Updated {
        added,
        removed,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(refresh: u64) -> Config {
        let json = format!(
            r#"{{
            "providers": {{
              "local": {{"issuer": "https://local", "audiences": ["a"], "jwks": {{"inline": {{"keys": [{{"kty": "EC", "crv": "P-256",
                  "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}}}}},
              "idp": {{"issuer": "https://idp", "audiences": ["a"],
                      "jwks": {{"remote": {{"cluster": "idp", "uri": "https://idp.example/keys",
                                          "refresh_interval_s": {refresh}, "max_bytes": 2048}}}}}}
            }},
            "rules": [{{"match": {{"prefix": "/"}}, "allow_anonymous": true}}]
        }}"#
        );
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn idp_index(config: &Config) -> usize {
        config
            .providers
            .iter()
            .position(|p| p.name == "idp")
            .unwrap()
    }

    const JWKS: &[u8] = br#"{"keys": [{"kty": "EC", "kid": "k1", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn ok(body: &[u8]) -> FetchOutcome {
        FetchOutcome::Response {
            status: 200,
            body: body.to_vec(),
        }
    }

    #[test]
    fn remote_keys_are_fetched_at_start_then_on_the_interval() {
        let config = config(300);
        let idp = idp_index(&config);
        let mut store = JwksStore::new(&config);
        assert!(store.keys(idp).is_none());
        assert!(
            store.keys(1 - idp).is_some(),
            "inline keys are ready at once"
        );

        let due = store.due_fetches(1000);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].authority.as_str(), due[0].path.as_str()),
            ("idp.example", "/keys")
        );
        assert!(
            store.due_fetches(1000).is_empty(),
            "one fetch in flight at a time"
        );

        let report = store.on_fetch_outcome(idp, ok(JWKS), 1000);
        assert!(matches!(report, FetchReport::Updated { ref added, .. } if added == &["k1"]));
        assert!(store.due_fetches(1299).is_empty());
        assert_eq!(store.due_fetches(1300).len(), 1);
        assert_eq!(
            store.on_fetch_outcome(idp, ok(JWKS), 1300),
            FetchReport::Unchanged
        );
    }

    #[test]
    fn failures_keep_the_previous_keys_and_retry_sooner() {
        let config = config(300);
        let idp = idp_index(&config);
        let mut store = JwksStore::new(&config);
        store.due_fetches(0);
        store.on_fetch_outcome(idp, ok(JWKS), 0);
        let failures = [
            FetchOutcome::TransportFailure("reset".into()),
            FetchOutcome::Response {
                status: 500,
                body: JWKS.to_vec(),
            },
            ok(b"<html>"),
            ok(br#"{"nokeys": 1}"#),
            ok(&vec![b' '; 4096]),
        ];
        let mut now = 300;
        for failure in failures {
            assert_eq!(store.due_fetches(now).len(), 1);
            let report = store.on_fetch_outcome(idp, failure.clone(), now);
            assert!(matches!(report, FetchReport::Failed(_)), "{failure:?}");
            assert_eq!(store.keys(idp).unwrap().kids(), vec!["k1"]);
            assert!(store.due_fetches(now + 4).is_empty());
            now += 5;
        }
    }

    #[test]
    fn removed_keys_are_reported() {
        let config = config(10);
        let idp = idp_index(&config);
        let mut store = JwksStore::new(&config);
        store.due_fetches(0);
        store.on_fetch_outcome(idp, ok(JWKS), 0);
        store.due_fetches(10);
        let report = store.on_fetch_outcome(idp, ok(br#"{"keys": []}"#), 10);
        assert!(matches!(report, FetchReport::Updated { ref removed, .. } if removed == &["k1"]));
        assert!(store.keys(idp).unwrap().keys.is_empty());
    }
}
