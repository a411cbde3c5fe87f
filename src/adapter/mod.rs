//! The only code that talks to the proxy-wasm host. It reads what the host offers, hands it
//! to the pure core, and carries out the decisions the core returns.

mod access_log;
mod host_maps;
mod host_verify;
mod http;
mod publish;
mod root;
mod route_cache;
mod stream;
mod upstream;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::{LogLevel, MetricType};

use brickgate_core::jwks::UnixMillis;
use brickgate_core::metrics;
use brickgate_core::shared_data::SharedData;
use brickgate_core::worker::{Level, Slot, Telemetry, Worker};

// The SDK's entry point exports `_initialize`, which needs `no_mangle`.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
            super::new_root(context_id)
        });
    }}
}

fn new_root(context_id: u32) -> Box<dyn RootContext> {
    Box::new(root::Root::new(context_id))
}

/// A stream's lifecycle, shared by its HTTP context and (while it is held) the root context
/// that wakes it.
pub type StreamCell = Rc<RefCell<Slot>>;

/// State one VM's root context shares with its HTTP contexts (single-threaded: `Rc<RefCell>`).
pub struct Shared {
    /// The policy, the key store, the caches and the token calls of this VM.
    pub worker: Worker,
    pub counters: Counters,
    /// Streams held until something outside their callbacks happens (keys, a token, a
    /// deadline), by context id.
    pub held: HashMap<u32, StreamCell>,
    /// Whether the host keeps info lines (audit records), refreshed every tick so requests
    /// need not ask.
    pub info_logging: bool,
    /// The root context's id: calls it sends must belong to it, not to a stream.
    pub root_context_id: u32,
    /// Each record goes to the `wasm.brickgate` filter state (`audit.filter_state`, and the
    /// host could declare it).
    pub filter_state: bool,
}

impl Shared {
    /// Whether decisions go to the application log too (`audit.log_line`, and the host keeps
    /// info lines).
    pub fn audit_log_line(&self) -> bool {
        self.info_logging && self.worker.engine.config.audit.log_line
    }

    /// Refreshes whether the host keeps info lines, and so whether records need fingerprints.
    pub fn set_info_logging(&mut self, on: bool) {
        self.info_logging = on;
        self.worker.fingerprint = self.filter_state || self.audit_log_line();
    }
}

pub type SharedState = Rc<RefCell<Option<Shared>>>;

thread_local! {
    /// The request-body bytes every stream of this VM holds, whatever root context (plugin
    /// configuration) it belongs to: one counter per VM, which every configuration's
    /// `BodyBudget` shares, a new one included while streams of the old one still hold bodies.
    static HELD_BODY_BYTES: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// This VM's held-body counter (see `HELD_BODY_BYTES`).
pub fn vm_held_body_bytes() -> Arc<AtomicUsize> {
    HELD_BODY_BYTES.with(Arc::clone)
}

/// The counters' maps' hasher (their keys are this configuration's counter and rule names).
type FastHash = foldhash::fast::RandomState;

/// A labelled request counter's slot, by its decision and reason.
type LabelledSlot = (&'static str, Option<&'static str>, usize);

/// Counters, handed to the host as they move: a counter read right after a request (a test, an
/// operator at the admin endpoint) counts it. Batching them per tick saved about half a
/// microsecond per request and made every such read race the tick (docs/BENCHMARKS.md).
#[derive(Default)]
pub struct Counters {
    /// Slot of each counter defined at configure time, by name. Looked up per request: hashed
    /// with `foldhash`, not std's SipHash (a few hundred ns per request inside wasm).
    by_name: HashMap<String, usize, FastHash>,
    /// Labelled request counters by rule name ("" for none), then by (decision, reason): found
    /// without formatting the counter's name, which is only built the first time.
    labelled: HashMap<String, Vec<LabelledSlot>, FastHash>,
    /// Each counter's host id.
    slots: Vec<u32>,
    /// The decision-time histogram, if the host defines histograms.
    decision_time: Option<u32>,
}

impl Counters {
    pub fn define(names: &[String]) -> Counters {
        let mut counters = Counters {
            decision_time: hostcalls::define_metric(
                MetricType::Histogram,
                metrics::DECISION_TIME_US,
            )
            .ok(),
            ..Counters::default()
        };
        for name in names {
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, name) {
                counters.by_name.insert(name.clone(), counters.slots.len());
                counters.slots.push(id);
            }
        }
        counters
    }

    /// Moves the labelled request counter of a decision (`metrics::request_counter`; its
    /// labels are bounded by the configuration).
    pub fn add_request(
        &mut self,
        decision: &'static str,
        reason: Option<&'static str>,
        rule: Option<&str>,
    ) {
        let by_rule = match self.labelled.get_mut(rule.unwrap_or_default()) {
            Some(by_rule) => by_rule,
            None => self
                .labelled
                .entry(rule.unwrap_or_default().to_string())
                .or_default(),
        };
        let known = by_rule
            .iter()
            .find(|(d, r, _)| *d == decision && *r == reason)
            .map(|(_, _, slot)| *slot);
        let slot = match known {
            Some(slot) => slot,
            None => {
                let name = metrics::request_counter(decision, reason, rule);
                let Ok(id) = hostcalls::define_metric(MetricType::Counter, &name) else {
                    return;
                };
                self.slots.push(id);
                by_rule.push((decision, reason, self.slots.len() - 1));
                self.slots.len() - 1
            }
        };
        self.bump(slot, 1);
    }

    pub fn record_decision_time(&self, micros: u64) {
        if let Some(id) = self.decision_time {
            let _ = hostcalls::record_metric(id, micros);
        }
    }

    pub fn add(&self, name: &str, amount: u64) {
        if let Some(slot) = self.by_name.get(name) {
            self.bump(*slot, amount);
        }
    }

    /// A failed increment only loses counts; it never fails anything.
    fn bump(&self, slot: usize, amount: u64) {
        if let Some(id) = self.slots.get(slot) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(amount).unwrap_or(i64::MAX));
        }
    }
}

/// Counters and log lines outside a stream (the key store's events, token calls).
impl Telemetry for Counters {
    fn count(&mut self, name: &str, amount: u64) {
        self.add(name, amount);
    }

    fn log(&mut self, level: Level, line: &str) {
        log(
            match level {
                Level::Debug => LogLevel::Debug,
                Level::Info => LogLevel::Info,
                Level::Warn => LogLevel::Warn,
            },
            line,
        );
    }
}

/// Proxy-wasm shared data: one space for all VMs of this plugin in one Envoy.
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

/// The host's clock in Unix milliseconds (0 if the host cannot tell, which fails every
/// token closed).
pub fn now_ms() -> UnixMillis {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis() as u64)
}

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// The host's clock in nanoseconds (0 if it cannot tell).
pub fn now_ns() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Whether the host would keep an info line: lets hot paths skip formatting audit records
/// nobody will read.
pub fn info_enabled() -> bool {
    hostcalls::get_log_level().is_ok_and(|level| level as u32 <= LogLevel::Info as u32)
}
