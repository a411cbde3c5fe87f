//! Root context: configuration, the key lifecycle (driven by ticks and fetch responses), and
//! resuming requests that waited for keys.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

use super::host_verify::{HostVerifier, host_passes_self_test};
use super::stream::drive;
use super::{Counters, HostSharedData, Shared, SharedState, http::Filter, log, now_ms, upstream};
use brickgate_core::config::Config;
use brickgate_core::engine::Engine;
use brickgate_core::jwks::schedule::max_age;
use brickgate_core::jwks::{FetchOutcome, FetchRequest};
use brickgate_core::metrics;
use brickgate_core::stream::{BodyBudget, Event};
use brickgate_core::verify::{InWasmVerifier, SignatureVerifier};
use brickgate_core::worker::{Worker, report_store_events};

/// Short enough that every worker adopts new keys well within a second, and that paused
/// requests resume promptly; a tick only reads a few small shared-data entries.
const TICK: Duration = Duration::from_millis(100);

pub struct Root {
    context_id: u32,
    shared: SharedState,
    /// Outstanding fetches: callout token → provider index.
    pending: HashMap<u32, usize>,
}

fn choose_verifier(host_signatures: bool) -> Box<dyn SignatureVerifier + Send + Sync> {
    if !host_signatures {
        log(
            LogLevel::Info,
            "brickgate: signatures verified in wasm (host_signatures is off)",
        );
        return Box::new(InWasmVerifier);
    }
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
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            shared: SharedState::default(),
            pending: HashMap::new(),
        }
    }

    fn configure(&mut self, size: usize) -> Result<(), String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .map_err(|e| format!("cannot read the plugin configuration: {e:?}"))?
            .unwrap_or_default();
        // Secrets come from the VM's environment (WASI environ_get, which Envoy serves from
        // vm_config.environment_variables), never from the configuration.
        let config = Config::from_json_with_env(&bytes, &|name| std::env::var(name).ok())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        // Randomly seeded by the host: identifies this VM in fetch leases.
        let vm_id = RandomState::new().hash_one(now_ms());
        let summary = format!(
            "{} providers, {} rules",
            config.providers.len(),
            config.rules.len()
        );
        let performance = config.performance;
        let filter_state = config.audit.filter_state && super::access_log::declare();
        // Without its declaration a published field would be bytes, which CEL does not compare
        // with strings: a host that cannot declare cannot publish, and the plugin does not start.
        super::publish::declare(&config.identity.publish)?;
        let body_budget =
            BodyBudget::sharing(BodyBudget::limit_of(&config), super::vm_held_body_bytes());
        let engine = Arc::new(Engine::new(
            config,
            choose_verifier(performance.host_signatures),
        ));
        let mut shared = Shared {
            worker: Worker::new(engine, vm_id, body_budget),
            counters: Counters::define(&metrics::all_counters()),
            held: HashMap::new(),
            info_logging: false,
            root_context_id: self.context_id,
            filter_state,
        };
        shared.set_info_logging(super::info_enabled());
        *self.shared.borrow_mut() = Some(shared);
        hostcalls::set_tick_period(TICK)
            .map_err(|e| format!("cannot set the tick period: {e:?}"))?;
        log(
            LogLevel::Info,
            &format!(
                "brickgate {} configured: {summary}",
                brickgate_core::VERSION
            ),
        );
        Ok(())
    }

    fn dispatch(&mut self, shared: &mut Shared, fetches: Vec<FetchRequest>) {
        for fetch in fetches {
            let headers = fetch.headers(":authority");
            let timeout = Duration::from_millis(fetch.timeout_ms);
            match hostcalls::dispatch_http_call(&fetch.cluster, headers, None, vec![], timeout) {
                Ok(token) => {
                    self.pending.insert(token, fetch.provider);
                }
                Err(status) => {
                    let why = format!(
                        "cannot dispatch through cluster {:?}: {status:?}",
                        fetch.cluster
                    );
                    let outcome = FetchOutcome::TransportFailure(why);
                    let (more, events) = shared.worker.store.on_fetch_outcome(
                        &HostSharedData,
                        fetch.provider,
                        outcome,
                        now_ms(),
                    );
                    report_store_events(&shared.worker, &events, &mut shared.counters);
                    // A failed dispatch never yields more fetches; avoid recursion regardless.
                    drop(more);
                }
            }
        }
    }
}

/// Wakes the held streams for which something happened: keys changed, a fetch attempt
/// ended, or a deadline passed. Each is decided again in its own context.
pub fn wake_streams(shared: &mut Shared) {
    let now = now_ms();
    let ready: Vec<(u32, super::StreamCell)> = shared
        .held
        .iter()
        .filter(|(_, cell)| {
            cell.try_borrow()
                .is_ok_and(|slot| slot.stream.wants_wake(&shared.worker.store, now))
        })
        .map(|(id, cell)| (*id, Rc::clone(cell)))
        .collect();
    for (context_id, cell) in ready {
        if hostcalls::set_effective_context(context_id).is_err() {
            shared.held.remove(&context_id); // the stream is gone
            continue;
        }
        drive(shared, context_id, &cell, Event::Wake);
    }
    let _ = hostcalls::set_effective_context(shared.root_context_id);
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let shared_state = Rc::clone(&self.shared);
        let mut guard = shared_state.borrow_mut();
        let Some(shared) = guard.as_mut() else { return };
        let Some(provider) = self.pending.remove(&token) else {
            // Otherwise a Databricks token call the root's tick sent.
            upstream::on_call_response(shared, token, num_headers, body_size);
            return;
        };
        let outcome = match call_response(
            num_headers,
            body_size,
            shared.worker.store.body_read_limit(provider),
        ) {
            None => FetchOutcome::TransportFailure(
                "no response (connection failure or timeout)".to_string(),
            ),
            Some(response) => FetchOutcome::Response {
                max_age_s: response.header("cache-control").and_then(max_age),
                status: response.status,
                // Keep the real size visible, so an oversized body is refused, not cut into JSON.
                body: if response.truncated {
                    vec![b' '; response.body.len()]
                } else {
                    response.body
                },
            },
        };
        let (more, events) =
            shared
                .worker
                .store
                .on_fetch_outcome(&HostSharedData, provider, outcome, now_ms());
        report_store_events(&shared.worker, &events, &mut shared.counters);
        self.dispatch(shared, more);
        wake_streams(shared);
    }
}

/// The callout response being delivered.
pub struct CallResponse {
    pub status: u32,
    headers: Vec<(String, String)>,
    /// At most the caller's limit.
    pub body: Vec<u8>,
    /// The body was longer than the limit.
    pub truncated: bool,
}

impl CallResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The callout response being delivered, its body read up to `max_body` bytes; `None` when the
/// call failed (Envoy reports resets and timeouts as a response without headers).
pub fn call_response(
    num_headers: usize,
    body_size: usize,
    max_body: usize,
) -> Option<CallResponse> {
    if num_headers == 0 {
        return None;
    }
    let headers = super::host_maps::read_lossy(MapType::HttpCallResponseHeaders);
    let status = headers
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let limit = body_size.min(max_body);
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, limit)
        .ok()
        .flatten()
        .unwrap_or_default();
    Some(CallResponse {
        status,
        headers,
        body,
        truncated: body_size > limit,
    })
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
        let shared_state = Rc::clone(&self.shared);
        let mut guard = shared_state.borrow_mut();
        let Some(shared) = guard.as_mut() else { return };
        shared.set_info_logging(super::info_enabled());
        let (fetches, events) = shared.worker.store.tick(&HostSharedData, now_ms());
        report_store_events(&shared.worker, &events, &mut shared.counters);
        self.dispatch(shared, fetches);
        upstream::send_queued(shared);
        wake_streams(shared);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter::new(context_id, Rc::clone(&self.shared))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
