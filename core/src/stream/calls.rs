//! Databricks token calls: one per cache key in flight, every stream waiting on it woken with
//! the result. The calls are sent by the root context, so their answers never depend on the
//! stream that asked first staying alive.

use std::collections::HashMap;

use crate::UnixMillis;
use crate::databricks::exchange::{TokenRequest, UpstreamTokens, parse_token_response};
use crate::error::AuthError;
use crate::shared_data::SharedData;

/// Streams (by context id) waiting for one token call.
type Waiting = Vec<u32>;

#[derive(Debug, Default)]
pub struct TokenCalls {
    queued: Vec<(TokenRequest, Waiting)>,
    in_flight: HashMap<u32, (TokenRequest, Waiting)>,
}

/// A token call's answer, for every stream that waited for it.
pub struct Settled {
    pub streams: Waiting,
    pub result: Result<String, AuthError>,
}

impl TokenCalls {
    /// The stream waits for `request`'s token: it joins a call for the same cache key, or
    /// queues a new one (sent at the root context's next tick).
    pub fn wait_for(&mut self, request: TokenRequest, stream: u32) {
        let existing = self
            .queued
            .iter_mut()
            .chain(self.in_flight.values_mut())
            .find(|(queued, _)| queued.cache_key == request.cache_key);
        match existing {
            Some((_, waiting)) => waiting.push(stream),
            None => self.queued.push((request, vec![stream])),
        }
    }

    /// The calls to send now.
    pub fn take_queued(&mut self) -> Vec<(TokenRequest, Waiting)> {
        std::mem::take(&mut self.queued)
    }

    /// A call was sent; its answer comes back under `callout`.
    pub fn sent(&mut self, callout: u32, request: TokenRequest, waiting: Waiting) {
        self.in_flight.insert(callout, (request, waiting));
    }

    pub fn owns(&self, callout: u32) -> bool {
        self.in_flight.contains_key(&callout)
    }

    /// A stream went away: it waits for nothing (the call, if any, still completes for the
    /// others and fills the cache).
    pub fn forget(&mut self, stream: u32) {
        for (_, waiting) in self.queued.iter_mut().chain(self.in_flight.values_mut()) {
            waiting.retain(|id| *id != stream);
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
        let (request, streams) = self.in_flight.remove(&callout)?;
        Some(settle(
            &request, streams, status, body, tokens, shared, now_ms,
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
