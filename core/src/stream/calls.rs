//! Databricks token calls: one per cache key in flight, every stream waiting on it woken with
//! the result.
//!
//! A new call is sent at once by the stream that needs it (issue 16 point 8). The host binds
//! the callout to the root context (proxy-wasm-cpp-host `http_call` dispatches on
//! `root_context()`), but the proxy-wasm Rust SDK hands the answer to the context that was
//! active when the call was sent (`dispatcher.rs` `register_callout`/`on_http_call_response`),
//! and drops it once that context is gone. So the stream's context passes the answer to the
//! shared handler, which wakes every waiter; and when the sending stream goes away first, its
//! call is queued again for the root context's tick, whose own calls answer to the root: a
//! client that gives up strands nobody.

use std::collections::HashMap;

use crate::UnixMillis;
use crate::databricks::exchange::{TokenRequest, UpstreamTokens, parse_token_response};
use crate::error::AuthError;
use crate::shared_data::SharedData;

/// Streams (by context id) waiting for one token call.
type Waiting = Vec<u32>;

/// Whose context the host will hand a call's answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Root,
    /// A stream's context: its answer is lost if the stream is gone by then.
    Stream(u32),
}

#[derive(Debug)]
struct InFlight {
    request: TokenRequest,
    waiting: Waiting,
    sender: Sender,
}

#[derive(Debug, Default)]
pub struct TokenCalls {
    queued: Vec<(TokenRequest, Waiting)>,
    in_flight: HashMap<u32, InFlight>,
}

/// A token call's answer, for every stream that waited for it.
pub struct Settled {
    pub streams: Waiting,
    pub result: Result<String, AuthError>,
}

impl TokenCalls {
    /// The stream waits for `request`'s token: it joins a call for the same cache key
    /// (`None`), or gets the request back to send at once (then [`Self::sent`], or
    /// [`Self::queue`] if it could not be sent).
    pub fn wait_for(&mut self, request: TokenRequest, stream: u32) -> Option<TokenRequest> {
        let existing = self
            .queued
            .iter_mut()
            .map(|(queued, waiting)| (&*queued, waiting))
            .chain(
                self.in_flight
                    .values_mut()
                    .map(|call| (&call.request, &mut call.waiting)),
            )
            .find(|(queued, _)| queued.cache_key == request.cache_key);
        match existing {
            Some((_, waiting)) => {
                waiting.push(stream);
                None
            }
            None => Some(request),
        }
    }

    /// A call to send at the root context's next tick.
    pub fn queue(&mut self, request: TokenRequest, waiting: Waiting) {
        self.queued.push((request, waiting));
    }

    /// The calls to send now.
    pub fn take_queued(&mut self) -> Vec<(TokenRequest, Waiting)> {
        std::mem::take(&mut self.queued)
    }

    /// A call was sent from `sender`'s context; its answer comes back under `callout`.
    pub fn sent(&mut self, callout: u32, request: TokenRequest, waiting: Waiting, sender: Sender) {
        self.in_flight.insert(
            callout,
            InFlight {
                request,
                waiting,
                sender,
            },
        );
    }

    pub fn owns(&self, callout: u32) -> bool {
        self.in_flight.contains_key(&callout)
    }

    /// A stream went away: it waits for nothing. A call it sent is queued again for the
    /// root context when others still wait for it (its answer would come to the gone
    /// stream's context and be lost); a call others sent still completes for them.
    pub fn forget(&mut self, stream: u32) {
        for (_, waiting) in self.queued.iter_mut() {
            waiting.retain(|id| *id != stream);
        }
        for call in self.in_flight.values_mut() {
            call.waiting.retain(|id| *id != stream);
        }
        let orphaned: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, call)| call.sender == Sender::Stream(stream))
            .map(|(callout, _)| *callout)
            .collect();
        for callout in orphaned {
            if let Some(call) = self.in_flight.remove(&callout)
                && !call.waiting.is_empty()
            {
                self.queued.push((call.request, call.waiting));
            }
        }
    }

    /// A call's answer (`status` 0 when it failed at the transport): the token is cached for
    /// every VM, and the streams that waited for it are returned with the result.
    pub fn settle(
        &mut self,
        callout: u32,
        status: u32,
        body: &[u8],
        tokens: &mut UpstreamTokens,
        shared: &dyn SharedData,
        now_ms: UnixMillis,
    ) -> Option<Settled> {
        let call = self.in_flight.remove(&callout)?;
        Some(settle(
            &call.request,
            call.waiting,
            status,
            body,
            tokens,
            shared,
            now_ms,
        ))
    }
}

/// The result of a call that was answered (or never sent: `status` 0, empty body).
pub fn settle(
    request: &TokenRequest,
    streams: Waiting,
    status: u32,
    body: &[u8],
    tokens: &mut UpstreamTokens,
    shared: &dyn SharedData,
    now_ms: UnixMillis,
) -> Settled {
    let result = parse_token_response(request, status, body).map(|issued| {
        tokens.put(shared, &request.cache_key, &issued, now_ms);
        issued.access_token
    });
    Settled { streams, result }
}

#[cfg(test)]
mod tests;
