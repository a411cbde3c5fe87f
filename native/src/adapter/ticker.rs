//! A module thread that wakes the main thread every [`TICK`] (dynamic modules get no timer for
//! an HTTP filter): the key store's refresh timers, token calls queued for retry, and held
//! streams' deadlines all run there. Stopped and joined when Envoy destroys the configuration,
//! so no commit outlives it (abi.h asks that module threads stop committing before Envoy exits).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::config_event;
use crate::envoy::ConfigScheduler;

/// As the Wasm form's tick: every worker sees new keys well within a second, and paused
/// requests resume promptly.
pub const TICK: Duration = Duration::from_millis(100);

pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// A configuration without its tick would never refresh keys or end held streams at their
    /// deadlines: failing to start the thread refuses the configuration.
    pub fn start(scheduler: ConfigScheduler) -> Result<Ticker, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("brickgate-tick".to_string())
            .spawn(move || {
                // The first tick at once: remote keys are fetched before the first request.
                while !stopped.load(Ordering::Acquire) {
                    scheduler.commit(config_event::TICK);
                    std::thread::park_timeout(TICK);
                }
            })
            .map_err(|why| format!("brickgate: cannot start the tick thread: {why}"))?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
