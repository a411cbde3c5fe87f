//! Root context: configuration, the JWKS fetch schedule (driven by ticks), fetch responses.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

use super::host_verify::{HostVerifier, host_passes_self_test};
use super::{Counters, Shared, SharedState, http::Filter, log, now};
use crate::cache::TokenCache;
use crate::config::Config;
use crate::engine::Engine;
use crate::jwks::{FetchOutcome, FetchReport, JwksStore};
use crate::metrics;
use crate::verify::{InWasmVerifier, SignatureVerifier};

const TICK: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Root {
    shared: SharedState,
    /// Outstanding JWKS fetches: callout token → provider index.
    pending: HashMap<u32, usize>,
}

impl Root {
    fn configure(&mut self, size: usize) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .map_err(|e| format!("cannot read the plugin configuration: {e:?}"))?
            .unwrap_or_default();
        let config =
            Config::from_json(&bytes).map_err(|e| format!("invalid configuration: {e}"))?;
        let store = JwksStore::new(&config);
        let summary = format!(
            "{} providers, {} rules",
            config.providers.len(),
            config.rules.len()
        );
        let verifier: Box<dyn SignatureVerifier> = if !config.performance.host_signatures {
            log(
                LogLevel::Info,
                "brickgate: signatures verified in wasm (host_signatures is off)",
            );
            Box::new(InWasmVerifier)
        } else {
            match host_passes_self_test() {
                Ok(()) => {
                    log(
                        LogLevel::Info,
                        "brickgate: RS*/ES* signatures verified by the host (verify_signature)",
                    );
                    Box::new(HostVerifier)
                }
                Err(why) => {
                    log(
                        LogLevel::Info,
                        &format!("brickgate: signatures verified in wasm: {why}"),
                    );
                    Box::new(InWasmVerifier)
                }
            }
        };
        let cache = TokenCache::new(
            config.performance.token_cache_entries,
            config.performance.token_cache_bytes,
        );
        let engine = Engine::new(config, verifier);
        *self.shared.borrow_mut() = Some(Shared {
            engine: Rc::new(engine),
            store,
            cache,
            counters: Counters::define(&metrics::all_counters()),
        });
        hostcalls::set_tick_period(TICK)
            .map_err(|e| format!("cannot set the tick period: {e:?}"))?;
        log(
            LogLevel::Info,
            &format!("brickgate {} configured: {summary}", crate::VERSION),
        );
        Ok(())
    }

    fn start_due_fetches(&mut self) {
        let now = now();
        let mut guard = self.shared.borrow_mut();
        let Some(shared) = guard.as_mut() else { return };
        for fetch in shared.store.due_fetches(now) {
            let headers = vec![
                (":method", "GET"),
                (":path", fetch.path.as_str()),
                (":authority", fetch.authority.as_str()),
                ("accept", "application/json"),
                (
                    "user-agent",
                    concat!("brickgate/", env!("CARGO_PKG_VERSION")),
                ),
            ];
            let timeout = Duration::from_millis(fetch.timeout_ms);
            match hostcalls::dispatch_http_call(&fetch.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    self.pending.insert(token, fetch.provider);
                }
                Err(status) => {
                    let outcome = FetchOutcome::TransportFailure(format!(
                        "cannot dispatch through cluster {:?}: {status:?}",
                        fetch.cluster
                    ));
                    let report = shared.store.on_fetch_outcome(fetch.provider, outcome, now);
                    record_report(shared, fetch.provider, &report);
                }
            }
        }
    }
}

fn record_report(shared: &Shared, provider: usize, report: &FetchReport) {
    let name = shared
        .engine
        .config
        .providers
        .get(provider)
        .map_or("?", |p| p.name.as_str());
    match report {
        FetchReport::Updated {
            added,
            removed,
            skipped,
        } => {
            shared.counters.add(metrics::JWKS_FETCH_SUCCESS, 1);
            shared
                .counters
                .add(metrics::JWKS_KEYS_SKIPPED, skipped.len() as i64);
            log(
                LogLevel::Info,
                &format!(
                    "brickgate: provider {name} key set changed: added [{}], removed [{}]{}",
                    added.join(", "),
                    removed.join(", "),
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!("; skipped [{}]", skipped.join("; "))
                    }
                ),
            );
        }
        FetchReport::Unchanged => shared.counters.add(metrics::JWKS_FETCH_SUCCESS, 1),
        FetchReport::Failed(why) => {
            shared.counters.add(metrics::JWKS_FETCH_FAILED, 1);
            log(
                LogLevel::Warn,
                &format!("brickgate: provider {name} JWKS fetch failed: {why}"),
            );
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some(provider) = self.pending.remove(&token) else {
            return;
        };
        let mut guard = self.shared.borrow_mut();
        let Some(shared) = guard.as_mut() else { return };
        // Envoy reports resets and timeouts as a response without headers.
        let outcome = if num_headers == 0 {
            FetchOutcome::TransportFailure(
                "no response (connection failure or timeout)".to_string(),
            )
        } else {
            let status = hostcalls::get_map(MapType::HttpCallResponseHeaders)
                .ok()
                .and_then(|headers| {
                    headers
                        .into_iter()
                        .find(|(name, _)| name == ":status")
                        .and_then(|(_, value)| value.parse::<u32>().ok())
                })
                .unwrap_or(0);
            let limit = body_size.min(shared.store.body_read_limit(provider));
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, limit)
                .ok()
                .flatten()
                .unwrap_or_default();
            // Report the real size so an oversized body is refused, not truncated into JSON.
            let body = if body_size > limit {
                vec![b' '; limit]
            } else {
                body
            };
            FetchOutcome::Response { status, body }
        };
        let report = shared.store.on_fetch_outcome(provider, outcome, now());
        record_report(shared, provider, &report);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        match self.configure(size) {
            Ok(()) => true,
            Err(problem) => {
                // Returning false makes Envoy refuse the filter: bad config never serves traffic.
                log(LogLevel::Critical, &format!("brickgate: {problem}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.start_due_fetches();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter::new(Rc::clone(&self.shared))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
