//! What runs on the main thread, outside any stream: the key store's timers and fetches, the
//! Databricks token calls, and waking held streams on their own workers. The main thread's
//! callouts outlive every stream, so a client that gives up strands nobody.

use brickgate_core::error::AuthError;
use brickgate_core::jwks::schedule::max_age;
use brickgate_core::jwks::{FetchOutcome, FetchRequest};
use brickgate_core::metrics;
use brickgate_core::stream::calls::{Sender, Settled};
use brickgate_core::worker::{Level, Telemetry, report_store_events, unsent};

use super::filter::now_ms;
use super::state::State;
use super::{Shared, config_event, stream_event};
use crate::envoy::{CalloutDone, CalloutResult, ConfigHandle, LogLevel, log};

/// How much of a token endpoint's answer is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Counters and log lines from the main thread.
struct MainTelemetry<'a> {
    config: &'a ConfigHandle,
    shared: &'a Shared,
}

impl Telemetry for MainTelemetry<'_> {
    fn count(&mut self, name: &str, amount: u64) {
        if let Some(id) = self.shared.metrics.counter(name) {
            self.config.increment_counter(id, amount);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        log(level, line);
    }
}

pub fn on_scheduled(shared: &Shared, config: &ConfigHandle, event_id: u64) {
    let mut telemetry = MainTelemetry { config, shared };
    let mut state = shared.lock();
    let now = now_ms();
    if event_id == config_event::TICK {
        let State { worker, table, .. } = &mut *state;
        let (fetches, events) = worker.store.tick(*table, now);
        report_store_events(worker, &events, &mut telemetry);
        dispatch_fetches(&mut state, &mut telemetry, fetches);
    }
    send_token_calls(&mut state, &mut telemetry);
    if event_id == config_event::TICK {
        wake_held(&state, now);
    }
}

pub fn on_callout_done(shared: &Shared, config: &ConfigHandle, callout: CalloutDone<'_>) {
    let mut telemetry = MainTelemetry { config, shared };
    let mut state = shared.lock();
    let now = now_ms();
    if let Some(provider) = state.fetches.remove(&callout.callout_id) {
        let outcome = fetch_outcome(&callout, state.worker.store.body_read_limit(provider));
        let State { worker, table, .. } = &mut *state;
        let (more, events) = worker
            .store
            .on_fetch_outcome(*table, provider, outcome, now);
        report_store_events(worker, &events, &mut telemetry);
        dispatch_fetches(&mut state, &mut telemetry, more);
        wake_held(&state, now);
        return;
    }
    if let Some(call) = state.token_calls.remove(&callout.callout_id) {
        let (status, body) = match (callout.result, callout.status()) {
            (CalloutResult::Success, Some(status)) => (u32::from(status), callout.body),
            _ => (0, &[][..]),
        };
        let body = body.get(..MAX_ANSWER_BYTES).unwrap_or(body);
        let State { worker, table, .. } = &mut *state;
        if let Some(settled) =
            worker.token_answered(call, status, body, *table, now, &mut telemetry)
        {
            deliver(&mut state, settled);
        }
    }
}

/// A key fetch's answer as the key store takes it.
fn fetch_outcome(callout: &CalloutDone<'_>, max_body: usize) -> FetchOutcome {
    let status = match (callout.result, callout.status()) {
        (CalloutResult::Success, Some(status)) => status,
        (result, _) => {
            return FetchOutcome::TransportFailure(format!(
                "no response ({result:?}: connection failure, timeout or too large)"
            ));
        }
    };
    let header = |name: &str| {
        callout
            .headers
            .iter()
            .find(|(n, _)| n.as_slice() == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    };
    // Keep the real size visible, so an oversized body is refused, not cut into JSON.
    let body = if callout.body.len() > max_body {
        vec![b' '; max_body]
    } else {
        callout.body.to_vec()
    };
    FetchOutcome::Response {
        status: u32::from(status),
        body,
        max_age_s: header("cache-control").and_then(max_age),
    }
}

fn dispatch_fetches(
    state: &mut State,
    telemetry: &mut MainTelemetry<'_>,
    fetches: Vec<FetchRequest>,
) {
    for fetch in fetches {
        let headers = fetch.headers("host");
        match telemetry
            .config
            .http_callout(&fetch.cluster, &headers, b"", fetch.timeout_ms)
        {
            Ok(callout) => {
                state.fetches.insert(callout, fetch.provider);
            }
            Err(why) => {
                let why = format!(
                    "cannot dispatch through cluster {:?}: {why:?}",
                    fetch.cluster
                );
                let State { worker, table, .. } = &mut *state;
                let outcome = FetchOutcome::TransportFailure(why);
                let (_, events) =
                    worker
                        .store
                        .on_fetch_outcome(*table, fetch.provider, outcome, now_ms());
                report_store_events(worker, &events, telemetry);
            }
        }
    }
}

/// Sends the token calls streams queued (or answers them from the cache).
fn send_token_calls(state: &mut State, telemetry: &mut MainTelemetry<'_>) {
    let queued = state.worker.calls.take_queued();
    for (request, waiting) in queued {
        let now = now_ms();
        let State { worker, table, .. } = &mut *state;
        // Another stream's call may have obtained the token meanwhile.
        if let Some(token) = worker.upstream_tokens.get(*table, &request.cache_key, now) {
            telemetry.count(metrics::UPSTREAM_TOKEN_CACHE_HIT, 1);
            let settled = Settled {
                streams: waiting,
                result: Ok(token),
            };
            deliver(state, settled);
            continue;
        }
        let headers = request.call_headers("host");
        let sent = telemetry.config.http_callout(
            &request.cluster,
            &headers,
            request.body.as_bytes(),
            request.timeout_ms,
        );
        match sent {
            Ok(callout) => {
                telemetry.count(metrics::UPSTREAM_TOKEN_FETCH, 1);
                let call = state.next_call_id();
                state.token_calls.insert(callout, call);
                state
                    .worker
                    .calls
                    .sent(call, request, waiting, Sender::Root);
            }
            Err(why) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "brickgate: cannot send the token request through cluster {:?}: {why:?}",
                        request.cluster
                    ),
                );
                let State { worker, table, .. } = &mut *state;
                let settled = unsent(worker, &request, waiting, *table, now);
                telemetry.count(metrics::UPSTREAM_TOKEN_FAILED, 1);
                deliver(state, settled);
            }
        }
    }
}

/// Hands the token (or the error) to each waiting stream and wakes it on its worker.
fn deliver(state: &mut State, settled: Settled) {
    let Settled { streams, result } = settled;
    let result: Result<String, AuthError> = result;
    for id in streams {
        if let Some(held) = state.held.get_mut(&id) {
            held.token = Some(result.clone());
            held.scheduler.commit(stream_event::TOKEN);
        }
    }
}

/// Wakes, on their own workers, the held streams for which something happened: keys changed,
/// a fetch attempt ended, or a deadline passed.
fn wake_held(state: &State, now: u64) {
    for held in state.held.values() {
        let wants = held
            .slot
            .try_lock()
            .is_ok_and(|slot| slot.stream.wants_wake(&state.worker.store, now));
        if wants {
            held.scheduler.commit(stream_event::WAKE);
        }
    }
}
