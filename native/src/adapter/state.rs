//! The process's mutable state for one configuration, behind one lock: the core's worker (key
//! store, caches, token calls, held bodies), the in-process table the key store and token cache
//! coordinate through, the held streams and the main thread's callouts.
//!
//! Lock order: this state, then a stream's slot. The main thread only tries a slot's lock (a
//! stream stepping on its worker holds both).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use brickgate_core::error::AuthError;
use brickgate_core::shared_data::ThreadSafeSharedData;
use brickgate_core::worker::{Slot, Worker};

use crate::envoy::StreamScheduler;

static PROCESS_TABLE: LazyLock<ThreadSafeSharedData> = LazyLock::new(ThreadSafeSharedData::default);

pub struct State {
    pub worker: Worker,
    /// The process's table, which every configuration's key store and token cache use as the
    /// Wasm form uses Envoy's shared data: two listeners with the same provider fetch its keys
    /// once, and a reloaded configuration adopts the keys of the one it replaces.
    pub table: &'static ThreadSafeSharedData,
    /// Streams held until something outside their callbacks happens, by stream id.
    pub held: HashMap<u32, HeldStream>,
    /// Key fetches in flight: callout id → provider.
    pub fetches: HashMap<u64, usize>,
    /// Token calls in flight: callout id → the core's call id.
    pub token_calls: HashMap<u64, u32>,
    next_call: u32,
}

/// A held stream, as the main thread sees it.
pub struct HeldStream {
    pub slot: Arc<Mutex<Slot>>,
    /// Wakes the stream on its own worker.
    pub scheduler: StreamScheduler,
    /// The Databricks token (or why there is none) delivered to it, taken by its next step.
    pub token: Option<Result<String, AuthError>>,
}

impl State {
    pub fn new(worker: Worker) -> State {
        State {
            worker,
            table: &PROCESS_TABLE,
            held: HashMap::new(),
            fetches: HashMap::new(),
            token_calls: HashMap::new(),
            next_call: 1,
        }
    }

    /// A fresh id for a token call (the core names calls by `u32`).
    pub fn next_call_id(&mut self) -> u32 {
        let id = self.next_call;
        self.next_call = self.next_call.wrapping_add(1).max(1);
        id
    }
}
