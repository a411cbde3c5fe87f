//! Sending Databricks token calls (token exchange, service principal) from the root context,
//! and handing each answer to every stream that waited for it.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::stream::drive;
use super::{HostSharedData, Shared, log, now_ms};
use brickgate_core::error::AuthError;
use brickgate_core::metrics;
use brickgate_core::stream::Event;
use brickgate_core::stream::calls::{Settled, settle};

/// Sends the queued token calls; runs in the root context, so the answers come back to it.
pub fn send_queued(shared: &mut Shared) {
    for (request, waiting) in shared.calls.take_queued() {
        // Another worker may have obtained the token meanwhile.
        if let Some(token) =
            shared
                .upstream_tokens
                .get(&HostSharedData, &request.cache_key, now_ms())
        {
            shared.counters.add(metrics::UPSTREAM_TOKEN_CACHE_HIT, 1);
            deliver(shared, waiting, &Ok(token));
            continue;
        }
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", request.path.as_str()),
            (":authority", request.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
            (
                "user-agent",
                concat!("brickgate/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        headers.extend(
            request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        let timeout = Duration::from_millis(request.timeout_ms);
        // Waking other streams may have switched the effective context.
        let _ = hostcalls::set_effective_context(shared.root_context_id);
        match hostcalls::dispatch_http_call(
            &request.cluster,
            headers,
            Some(request.body.as_bytes()),
            vec![],
            timeout,
        ) {
            Ok(callout) => {
                shared.counters.add(metrics::UPSTREAM_TOKEN_FETCH, 1);
                shared.calls.sent(callout, request, waiting);
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "brickgate: cannot send the token request through cluster {:?}: {status:?}",
                        request.cluster
                    ),
                );
                let settled = settle(
                    &request,
                    waiting,
                    0,
                    &[],
                    &mut shared.upstream_tokens,
                    &HostSharedData,
                    now_ms(),
                );
                finish(shared, settled);
            }
        }
    }
}

/// Handles a token call's response.
pub fn on_response(shared: &mut Shared, callout: u32, status: u32, body: &[u8]) {
    let settled = shared.calls.settle(
        callout,
        status,
        body,
        &mut shared.upstream_tokens,
        &HostSharedData,
        now_ms(),
    );
    if let Some(settled) = settled {
        finish(shared, settled);
    }
}

fn finish(shared: &mut Shared, settled: Settled) {
    if settled.result.is_err() {
        shared.counters.add(metrics::UPSTREAM_TOKEN_FAILED, 1);
    }
    deliver(shared, settled.streams, &settled.result);
}

/// Wakes each waiting stream, in its own context, with the token or the error.
fn deliver(shared: &mut Shared, streams: Vec<u32>, result: &Result<String, AuthError>) {
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
