//! One worker's orchestration, the same for every adapter: the compiled policy shared by all
//! workers (`Arc<Engine>`), the state one worker mutates (key store, caches, token calls, held
//! bodies), and the loop that steps a stream and carries out its actions through a host.
//!
//! An adapter implements [`StreamHost`] (one host call per method) and [`Telemetry`], and
//! calls [`drive`] from each callback: it translates, and decides nothing. The Wasm form keeps
//! one `Worker` per VM (per Envoy worker thread); the native form keeps one for the process,
//! behind a lock, so its key store and caches serve every worker thread.

mod body_cursor;
#[cfg(test)]
mod tests;

pub use body_cursor::{BodyCursor, BodyHook, HeldBody, NewBytes};

use std::sync::Arc;

use crate::UnixMillis;
use crate::cache::TokenCache;
use crate::databricks::exchange::{TokenRequest, UpstreamTokens};
use crate::engine::{Engine, HeaderRewrite};
use crate::error::DenyResponse;
use crate::identity::Principal;
use crate::jwks::{JwksStore, StoreEvent};
use crate::metrics;
use crate::shared_data::SharedData;
use crate::stream::calls::Settled;
use crate::stream::{BodyBudget, Env, Event, HostAction, Record, Reply, Stream, TokenCalls};

/// One in this many decisions made at once goes into the decision-time histogram (the first one
/// included); every decision that waited (for a body, keys or a Databricks token) goes in. Its
/// quantiles are the same, and a clock read and a histogram value per request cost the worker
/// more than a decision made at once takes (docs/BENCHMARKS.md).
pub const AT_ONCE_SAMPLE: u32 = 8;

/// What one worker mutates while it decides.
pub struct Worker {
    pub engine: Arc<Engine>,
    pub store: JwksStore,
    pub cache: TokenCache,
    pub upstream_tokens: UpstreamTokens,
    pub calls: TokenCalls,
    /// The request bodies this worker's streams hold (`databricks.max_held_body_bytes`).
    pub body_budget: BodyBudget,
    /// Fill audit records' token fingerprints (only worth it when records are kept).
    pub fingerprint: bool,
    /// Decisions made at once so far (for sampling them into the histogram).
    at_once: u32,
}

// The native form shares one worker across Envoy's threads, behind a lock.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Worker>();
    assert_send::<Slot>();
};

impl Worker {
    /// `instance` identifies this worker in fetch leases among those sharing one key space.
    pub fn new(engine: Arc<Engine>, instance: u64, body_budget: BodyBudget) -> Worker {
        let performance = engine.config.performance;
        Worker {
            store: JwksStore::new(&engine.config, instance),
            cache: TokenCache::new(
                performance.token_cache_entries,
                performance.token_cache_bytes,
            ),
            upstream_tokens: UpstreamTokens::new(performance.upstream_token_slots),
            calls: TokenCalls::default(),
            body_budget,
            fingerprint: true,
            at_once: 0,
            engine,
        }
    }

    /// Whether a decision goes into the decision-time histogram ([`AT_ONCE_SAMPLE`]).
    fn times_decision(&mut self, at_once: bool) -> bool {
        if !at_once {
            return true;
        }
        let seen = self.at_once;
        self.at_once = seen.wrapping_add(1);
        seen.is_multiple_of(AT_ONCE_SAMPLE)
    }

    /// A token call answered (`status` 0 and an empty body when it failed): the token is cached
    /// and every stream that waited for it is returned with the result. `None` when the callout
    /// is not a token call.
    pub fn token_answered(
        &mut self,
        callout: u32,
        status: u32,
        body: &[u8],
        shared: &dyn SharedData,
        now_ms: UnixMillis,
        telemetry: &mut dyn Telemetry,
    ) -> Option<Settled> {
        let settled = self.calls.settle(
            callout,
            status,
            body,
            &mut self.upstream_tokens,
            shared,
            now_ms,
        )?;
        if settled.result.is_err() {
            telemetry.count(metrics::UPSTREAM_TOKEN_FAILED, 1);
        }
        Some(settled)
    }
}

/// One stream's lifecycle, and when its headers arrived (host nanoseconds, for the
/// decision-time histogram): kept with the stream, so timing costs no map per request.
#[derive(Debug, Default)]
pub struct Slot {
    pub stream: Stream,
    pub started_ns: u64,
    /// The stream went on (a `Continue` reply or a resume) since its last body callback: the
    /// host passed on what it had buffered, and its next body callback reports only new bytes.
    pub body_released: bool,
}

/// The host calls a step's actions need, for one stream. Each is one host call (or a few); a
/// failure is reported as text and fed back to the stream as [`Event::HostFailure`].
pub trait StreamHost {
    /// The host's clock in Unix nanoseconds (0 if it cannot tell, which fails tokens closed).
    fn now_ns(&mut self) -> u64;
    /// Makes the rewrite's edits; when [`HeaderRewrite::reselects_route`] may apply, the host
    /// picks the route again.
    fn rewrite_request_headers(&mut self, rewrite: &HeaderRewrite) -> Result<(), String>;
    /// Publishes the verified principal for the filters after brickgate (`identity.publish`),
    /// before the request goes on. A failure refuses the request: a policy downstream must not
    /// see it without its principal.
    fn publish(&mut self, principal: &Principal) -> Result<(), String>;
    fn set_request_trailers(&mut self, trailers: &[(String, String)]) -> Result<(), String>;
    /// Answers locally. Nothing to fall back on if the host refuses: it logs.
    fn send_response(&mut self, response: &DenyResponse);
    /// Lets a held stream go on, from outside its own callbacks.
    fn resume(&mut self) -> Result<(), String>;
    /// Obtains a Databricks token for this stream (joining a call in flight through
    /// `worker.calls`); its answer comes back as [`Event::UpstreamToken`].
    fn fetch_upstream_token(&mut self, worker: &mut Worker, request: TokenRequest);
    /// Counts the decision and publishes its record (access log, audit line, metadata);
    /// `decision_us`: how long it took, when this one is timed.
    fn record(&mut self, record: &Record, decision_us: Option<u64>);
    /// A line for the operator, at warning level.
    fn warn(&mut self, line: &str);
}

/// Where the host's telemetry goes outside a stream: counters and log lines.
pub trait Telemetry {
    fn count(&mut self, name: &str, amount: u64);
    fn log(&mut self, level: Level, line: &str);
}

/// Log levels the core asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

/// What [`drive`] did to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Driven {
    /// What the callback that delivered the event returns to the host.
    pub reply: Reply,
    /// The stream was held before the event, and is after it: the adapter keeps the held
    /// streams it may have to wake (most streams are decided in their first step, so most
    /// adapters touch no map for them).
    pub was_held: bool,
    pub is_held: bool,
}

/// Steps the stream with `event` and carries out what the step asks, in order. A host call
/// that fails stops the actions and is fed back at once as [`Event::HostFailure`] (at most
/// two rounds: the event, then the failure).
pub fn drive(
    worker: &mut Worker,
    shared: &dyn SharedData,
    slot: &mut Slot,
    host: &mut dyn StreamHost,
    event: Event<'_>,
) -> Driven {
    let was_held = slot.stream.is_held();
    let mut event = Some(event);
    let mut reply = Reply::Pause;
    for _ in 0..2 {
        let Some(current) = event.take() else { break };
        // One clock read per step, also timing the decision (headers → record).
        let now_ns = host.now_ns();
        // Decided in the step its headers arrived in, or after waiting (body, keys, a token).
        let at_once = matches!(current, Event::RequestHeaders { .. });
        if at_once {
            slot.started_ns = now_ns;
        }
        let mut env = Env {
            engine: &worker.engine,
            store: &mut worker.store,
            cache: &mut worker.cache,
            upstream_tokens: &mut worker.upstream_tokens,
            shared,
            now_ms: now_ns / 1_000_000,
            fingerprint: worker.fingerprint,
            body_budget: &worker.body_budget,
        };
        let step = slot.stream.step(&mut env, current);
        reply = step.reply;
        slot.body_released |= reply == Reply::Continue
            || step.actions.iter().any(|a| matches!(a, HostAction::Resume));
        for action in step.actions {
            if let Err(why) = carry_out(worker, slot.started_ns, at_once, host, action) {
                event = Some(Event::HostFailure(why));
                break;
            }
        }
    }
    Driven {
        reply,
        was_held,
        is_held: slot.stream.is_held(),
    }
}

fn carry_out(
    worker: &mut Worker,
    started_ns: u64,
    at_once: bool,
    host: &mut dyn StreamHost,
    action: HostAction,
) -> Result<(), String> {
    match action {
        HostAction::SetRequestHeaders(rewrite) => host.rewrite_request_headers(&rewrite),
        HostAction::Publish(principal) => host.publish(&principal),
        HostAction::SetRequestTrailers(trailers) => host.set_request_trailers(&trailers),
        HostAction::SendResponse(response) => {
            host.send_response(&response);
            Ok(())
        }
        HostAction::Resume => host.resume(),
        HostAction::FetchUpstreamToken(request) => {
            host.fetch_upstream_token(worker, request);
            Ok(())
        }
        HostAction::Record(record) => {
            let decision_us = (started_ns != 0 && worker.times_decision(at_once))
                // A fresh clock read: the step's own read is where a decision made at once
                // started.
                .then(|| host.now_ns().saturating_sub(started_ns) / 1000);
            host.record(&record, decision_us);
            Ok(())
        }
        HostAction::Warn(line) => {
            host.warn(&line);
            Ok(())
        }
    }
}

/// Counts and logs what the key store reports (one line per key-set change in the whole
/// Envoy: the instance that fetched it logs at info, the others at debug).
pub fn report_store_events(worker: &Worker, events: &[StoreEvent], telemetry: &mut dyn Telemetry) {
    let name = |provider: usize| {
        worker
            .engine
            .config
            .providers
            .get(provider)
            .map_or("?", |p| p.name.as_str())
    };
    for event in events {
        match event {
            StoreEvent::KeysChanged {
                provider,
                added,
                removed,
                skipped,
                fetched_here,
            } => {
                telemetry.count(metrics::JWKS_KEYS_SKIPPED, skipped.len() as u64);
                if let Some(why) = worker
                    .store
                    .keys(*provider)
                    .and_then(|keys| keys.too_many_without_kid())
                    && *fetched_here
                {
                    telemetry.count(metrics::JWKS_KEYS_WITHOUT_KID_CAPPED, 1);
                    telemetry.log(
                        Level::Warn,
                        &format!("brickgate: provider {}: {why}", name(*provider)),
                    );
                }
                let level = if *fetched_here {
                    Level::Info
                } else {
                    Level::Debug
                };
                let skipped = if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; skipped [{}]", skipped.join("; "))
                };
                telemetry.log(
                    level,
                    &format!(
                        "brickgate: provider {} key set changed: added [{}], removed [{}]{skipped}",
                        name(*provider),
                        added.join(", "),
                        removed.join(", ")
                    ),
                );
            }
            StoreEvent::FetchSucceeded { .. } => telemetry.count(metrics::JWKS_FETCH_SUCCESS, 1),
            StoreEvent::KidMissRefetch { .. } => telemetry.count(metrics::JWKS_KID_MISS_REFETCH, 1),
            StoreEvent::FetchFailed { provider, why } => {
                telemetry.count(metrics::JWKS_FETCH_FAILED, 1);
                telemetry.log(
                    Level::Warn,
                    &format!(
                        "brickgate: provider {} JWKS fetch failed: {why}",
                        name(*provider)
                    ),
                );
            }
        }
    }
}

/// The answer every stream waiting on a call that could not be made at all receives.
pub fn unsent(
    worker: &mut Worker,
    request: &TokenRequest,
    waiting: Vec<u32>,
    shared: &dyn SharedData,
    now_ms: UnixMillis,
) -> Settled {
    crate::stream::calls::settle(
        request,
        waiting,
        0,
        &[],
        &mut worker.upstream_tokens,
        shared,
        now_ms,
    )
}
