//! brickgate's adapter for the native form: translates Envoy's dynamic-module hooks into the
//! core's events and carries out its actions, as `src/adapter` does for proxy-wasm. It decides
//! nothing: `brickgate_core::worker` steps every stream.
//!
//! One [`NativeConfig`] per Envoy filter configuration serves every worker thread, so the key
//! store, the verified-token cache and the Databricks token cache are the process's, not one
//! per worker (`state::State`, behind one lock). Streams run on their worker threads; what
//! happens outside a stream (key fetches, token calls, deadlines) runs on the main thread,
//! which a module thread wakes every [`ticker::TICK`] through the config scheduler, and which
//! wakes each held stream on its own worker through that stream's scheduler.

mod filter;
mod main_thread;
mod metrics;
mod state;
mod ticker;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use brickgate_core::config::Config;
use brickgate_core::engine::Engine;
use brickgate_core::stream::BodyBudget;
use brickgate_core::verify::InWasmVerifier;
use brickgate_core::worker::Worker;

use crate::envoy::{ConfigHandle, ConfigScheduler, FilterConfig, FilterHandle, LogLevel, log};
use metrics::Metrics;
use state::State;
use ticker::Ticker;

/// Config scheduler events (main thread).
mod config_event {
    /// Time passed: the key store's timers, queued token calls, held streams' deadlines.
    pub const TICK: u64 = 1;
    /// A stream queued a Databricks token call: send it now, not at the next tick.
    pub const SEND_TOKEN_CALLS: u64 = 2;
}

/// Stream scheduler events (the stream's worker).
mod stream_event {
    /// Something the held stream waits for happened (keys, a deadline).
    pub const WAKE: u64 = 1;
    /// Its Databricks token (or why there is none) is in its held entry.
    pub const TOKEN: u64 = 2;
}

/// One Envoy filter configuration, as Envoy holds it: the shared part, and the thread that
/// wakes the main thread, stopped and joined when Envoy destroys the configuration (streams
/// still running keep the shared part until they end).
pub struct NativeConfig {
    shared: Arc<Shared>,
    _ticker: Ticker,
}

/// The compiled policy and the process's mutable state, shared by the configuration and its
/// streams.
pub struct Shared {
    state: Mutex<State>,
    metrics: Metrics,
    /// Each record goes to the `brickgate` filter state (`audit.filter_state`).
    filter_state: bool,
    /// Each record goes to Envoy's log too, when it keeps info lines (`audit.log_line`).
    log_line: bool,
    /// Stream ids (the core's token calls name waiting streams by a `u32`).
    next_stream: AtomicU32,
    /// Wakes the main thread at once (a stream queued a token call).
    wake_main: ConfigScheduler,
}

/// Builds the config (main thread): parses the plugin JSON once, fully; refusing it refuses
/// the Envoy configuration, so bad config never serves traffic.
pub(crate) fn new_config(
    _name: &str,
    config: &[u8],
    handle: &ConfigHandle,
) -> Result<Arc<dyn FilterConfig>, String> {
    // Secrets come from Envoy's environment, never from the configuration.
    let config = Config::from_json_with_env(config, &|name| std::env::var(name).ok())
        .map_err(|e| format!("brickgate: invalid configuration: {e}"))?;
    let summary = format!(
        "{} providers, {} rules",
        config.providers.len(),
        config.rules.len()
    );
    let filter_state = config.audit.filter_state;
    let log_line = config.audit.log_line;
    let body_budget = BodyBudget::new(BodyBudget::limit_of(&config));
    // Signatures are verified natively (ring): no host function to probe for.
    let engine = Arc::new(Engine::new(config, Box::new(InWasmVerifier)));
    let instance = RandomState::new().hash_one(std::process::id());
    let mut worker = Worker::new(engine, instance, body_budget);
    worker.fingerprint = filter_state || log_line;
    let metrics = Metrics::define(handle)?;
    let scheduler = || {
        handle
            .scheduler()
            .ok_or("brickgate: Envoy gave no config scheduler")
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(State::new(worker)),
        metrics,
        filter_state,
        log_line,
        next_stream: AtomicU32::new(1),
        wake_main: scheduler()?,
    });
    let config = NativeConfig {
        shared,
        _ticker: Ticker::start(scheduler()?)?,
    };
    log(
        LogLevel::Info,
        &format!(
            "brickgate {} configured (native): {summary}",
            brickgate_core::VERSION
        ),
    );
    Ok(Arc::new(config))
}

impl Shared {
    fn new_stream_id(&self) -> u32 {
        // Never 0; wraps after 4 billion streams, long after any id in use has ended.
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            self.next_stream.fetch_add(1, Ordering::Relaxed)
        } else {
            id
        }
    }

    /// The state, even if a thread panicked while holding it (the panic was caught at the ABI;
    /// the core's state stays consistent between steps).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl FilterConfig for NativeConfig {
    fn new_filter(&self, _filter: &FilterHandle) -> Box<dyn crate::envoy::Filter> {
        let id = self.shared.new_stream_id();
        Box::new(filter::NativeFilter::new(Arc::clone(&self.shared), id))
    }

    fn on_scheduled(&self, config: &ConfigHandle, event_id: u64) {
        main_thread::on_scheduled(&self.shared, config, event_id);
    }

    fn on_callout_done(&self, config: &ConfigHandle, callout: crate::envoy::CalloutDone<'_>) {
        main_thread::on_callout_done(&self.shared, config, callout);
    }
}
