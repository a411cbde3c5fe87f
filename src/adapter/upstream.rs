//! Sending Databricks token calls (token exchange, service principal) and handing each answer
//! to every stream that waited for it.
//!
//! A new call is sent at once, from the stream that needs it, with the root context as the
//! effective context. Envoy binds the callout to the root context either way: proxy-wasm-cpp-host
//! `src/exports.cc` (928db4d79ec7b90aea3ad13ea5df36dc60c9c31d) `http_call` dispatches on
//! `WASM_CONTEXT(raw_context)->root_context()`, the effective context's root, and Envoy's
//! `source/extensions/common/wasm/context.cc` (b40935ac07f770581a402ca8a220d251bc02b3a5)
//! `Context::httpCall` keeps the request in that (root) context, which outlives every stream.
//! The proxy-wasm Rust SDK 0.2.5, though, routes the answer to the context active when the call
//! was sent (`dispatcher.rs` `register_callout` records `active_id`; `on_http_call_response`
//! ignores the host's context id), and drops it when that stream is gone: so a stream's
//! context hands the answer to [`on_call_response`] like the root does, and a call whose
//! sender went away is sent again by the root's tick ([`TokenCalls::forget`]).
//!
//! [`TokenCalls::forget`]: brickgate_core::stream::calls::TokenCalls::forget

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::root::call_response;
use super::stream::drive;
use super::{Counters, HostSharedData, Shared, log, now_ms};
use brickgate_core::databricks::exchange::TokenRequest;
use brickgate_core::error::AuthError;
use brickgate_core::metrics;
use brickgate_core::stream::Event;
use brickgate_core::stream::calls::{Sender, Settled};
use brickgate_core::worker::{Worker, unsent};

/// How much of a token endpoint's answer is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The stream `context_id` waits for `request`'s token: it joins the call in flight for the
/// same cache key, or sends a new one now. A call that cannot be sent now waits for the tick.
pub fn fetch_for_stream(
    worker: &mut Worker,
    counters: &mut Counters,
    root_context_id: u32,
    context_id: u32,
    request: TokenRequest,
) {
    let Some(request) = worker.calls.wait_for(request, context_id) else {
        return;
    };
    let _ = hostcalls::set_effective_context(root_context_id);
    let sent = dispatch(&request);
    // The stream's own host calls (resume, local reply) follow in this step.
    let _ = hostcalls::set_effective_context(context_id);
    match sent {
        Ok(callout) => {
            counters.add(metrics::UPSTREAM_TOKEN_FETCH, 1);
            let sender = Sender::Stream(context_id);
            worker
                .calls
                .sent(callout, request, vec![context_id], sender);
        }
        Err(why) => {
            log(LogLevel::Debug, &format!("{why}; retried at the next tick"));
            worker.calls.queue(request, vec![context_id]);
        }
    }
}

/// Sends the queued token calls; runs in the root context, so the answers come back to it.
pub fn send_queued(shared: &mut Shared) {
    for (request, waiting) in shared.worker.calls.take_queued() {
        // Another worker may have obtained the token meanwhile.
        if let Some(token) =
            shared
                .worker
                .upstream_tokens
                .get(&HostSharedData, &request.cache_key, now_ms())
        {
            shared.counters.add(metrics::UPSTREAM_TOKEN_CACHE_HIT, 1);
            let settled = Settled {
                streams: waiting,
                result: Ok(token),
            };
            deliver(shared, settled);
            continue;
        }
        // Waking other streams may have switched the effective context.
        let _ = hostcalls::set_effective_context(shared.root_context_id);
        match dispatch(&request) {
            Ok(callout) => {
                shared.counters.add(metrics::UPSTREAM_TOKEN_FETCH, 1);
                shared
                    .counters
                    .add(metrics::UPSTREAM_TOKEN_FETCH_DEFERRED, 1);
                shared
                    .worker
                    .calls
                    .sent(callout, request, waiting, Sender::Root);
            }
            Err(why) => {
                log(LogLevel::Warn, &why);
                let settled = unsent(
                    &mut shared.worker,
                    &request,
                    waiting,
                    &HostSharedData,
                    now_ms(),
                );
                shared.counters.add(metrics::UPSTREAM_TOKEN_FAILED, 1);
                deliver(shared, settled);
            }
        }
    }
}

/// Starts the call; its callout id, or why it could not be sent.
fn dispatch(request: &TokenRequest) -> Result<u32, String> {
    let headers = request.call_headers(":authority");
    let timeout = Duration::from_millis(request.timeout_ms);
    hostcalls::dispatch_http_call(
        &request.cluster,
        headers,
        Some(request.body.as_bytes()),
        vec![],
        timeout,
    )
    .map_err(|status| {
        format!(
            "brickgate: cannot send the token request through cluster {:?}: {status:?}",
            request.cluster
        )
    })
}

/// A callout answered, in the root context or in the stream context that sent it: a token
/// call's answer wakes every stream that waited for it. `false` when the callout is not a
/// token call.
pub fn on_call_response(
    shared: &mut Shared,
    callout: u32,
    num_headers: usize,
    body_size: usize,
) -> bool {
    if !shared.worker.calls.owns(callout) {
        return false;
    }
    let response = call_response(num_headers, body_size, MAX_ANSWER_BYTES);
    let (status, body) = response.map_or((0, Vec::new()), |r| (r.status, r.body));
    let settled = shared.worker.token_answered(
        callout,
        status,
        &body,
        &HostSharedData,
        now_ms(),
        &mut shared.counters,
    );
    if let Some(settled) = settled {
        deliver(shared, settled);
    }
    true
}

/// Wakes each waiting stream, in its own context, with the token or the error.
fn deliver(shared: &mut Shared, settled: Settled) {
    let Settled { streams, result } = settled;
    let result: &Result<String, AuthError> = &result;
    for context_id in streams {
        let Some(cell) = shared.held.get(&context_id).map(Rc::clone) else {
            continue; // the client went away
        };
        if hostcalls::set_effective_context(context_id).is_err() {
            shared.held.remove(&context_id);
            continue;
        }
        drive(
            shared,
            context_id,
            &cell,
            Event::UpstreamToken(result.clone()),
        );
    }
    let _ = hostcalls::set_effective_context(shared.root_context_id);
}
