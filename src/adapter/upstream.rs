//! Obtaining Databricks tokens for allowed requests (token exchange, service principal):
//! one call per cache key in flight, every request waiting on it resumed with the result.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::request::{finish_allowed, record_denied, refuse};
use super::{HostSharedData, Shared, log, now_ms};
use brickgate_core::databricks::exchange::{TokenRequest, parse_token_response};
use brickgate_core::engine::Mutations;
use brickgate_core::error::AuthError;
use brickgate_core::identity::AuditRecord;
use brickgate_core::metrics;

/// A request waiting for an upstream token.
pub struct Parked {
    pub context_id: u32,
    pub mutations: Mutations,
    pub audit: AuditRecord,
    /// Count and log the decision when the token arrives (not when only the headers of a
    /// request whose body decides are being let through).
    pub record: bool,
}

/// Token calls waiting for the next tick, and in flight (by callout token). Calls are sent by
/// the root context, so their answers never depend on the stream that asked first staying
/// alive (a client that gives up must not strand everyone waiting on the same token).
#[derive(Default)]
pub struct InFlight {
    queued: Vec<(TokenRequest, Vec<Parked>)>,
    calls: HashMap<u32, (TokenRequest, Vec<Parked>)>,
}

impl InFlight {
    pub fn owns(&self, callout: u32) -> bool {
        self.calls.contains_key(&callout)
    }

    fn waiting_for(&mut self, cache_key: &str) -> Option<&mut Vec<Parked>> {
        self.queued
            .iter_mut()
            .chain(self.calls.values_mut())
            .find(|(request, _)| request.cache_key == cache_key)
            .map(|(_, waiting)| waiting)
    }
}

/// Sets the token on the request now (cache hit), or parks it behind a token call (one per
/// cache key), which the root context sends at its next tick. `true` when the request may
/// continue at once.
pub fn authorize(
    shared: &mut Shared,
    request: TokenRequest,
    parked: Parked,
) -> Result<bool, AuthError> {
    let now = now_ms();
    if let Some(token) = shared
        .upstream_tokens
        .get(&HostSharedData, &request.cache_key, now)
    {
        shared.counters.add(metrics::UPSTREAM_TOKEN_CACHE_HIT, 1);
        finish_allowed(
            shared,
            parked.mutations,
            Some(&token),
            &parked.audit,
            None,
            parked.record,
        )?;
        return Ok(true);
    }
    if let Some(waiting) = shared.in_flight.waiting_for(&request.cache_key) {
        waiting.push(parked);
        return Ok(false);
    }
    shared.in_flight.queued.push((request, vec![parked]));
    Ok(false)
}

/// Sends the queued token calls; runs in the root context, so the answers come back to it.
pub fn send_queued(shared: &mut Shared) {
    for (request, parked) in std::mem::take(&mut shared.in_flight.queued) {
        // Another worker may have obtained the token meanwhile.
        if let Some(token) =
            shared
                .upstream_tokens
                .get(&HostSharedData, &request.cache_key, now_ms())
        {
            resume_all(shared, parked, &Ok(token));
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
        // Resuming other requests above may have switched the effective context.
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
                shared.in_flight.calls.insert(callout, (request, parked));
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "brickgate: cannot send the token request through cluster {:?}: {status:?}",
                        request.cluster
                    ),
                );
                shared.counters.add(metrics::UPSTREAM_TOKEN_FAILED, 1);
                let error =
                    parse_token_response(&request, 0, &[]).map(|issued| issued.access_token);
                resume_all(shared, parked, &error);
            }
        }
    }
}

/// Handles a token call's response and resumes or refuses every request parked behind it.
pub fn on_response(shared: &mut Shared, callout: u32, status: u32, body: &[u8]) {
    let Some((request, parked)) = shared.in_flight.calls.remove(&callout) else {
        return;
    };
    let result = parse_token_response(&request, status, body);
    match &result {
        Ok(issued) => {
            shared
                .upstream_tokens
                .put(&HostSharedData, &request.cache_key, issued, now_ms())
        }
        Err(_) => shared.counters.add(metrics::UPSTREAM_TOKEN_FAILED, 1),
    }
    resume_all(shared, parked, &result.map(|issued| issued.access_token));
}

fn resume_all(shared: &mut Shared, parked: Vec<Parked>, token: &Result<String, AuthError>) {
    for waiter in parked {
        if hostcalls::set_effective_context(waiter.context_id).is_err() {
            continue; // the client went away
        }
        let outcome = match token {
            Ok(token) => finish_allowed(
                shared,
                waiter.mutations,
                Some(token),
                &waiter.audit,
                None,
                waiter.record,
            ),
            Err(error) => Err(error.clone()),
        };
        match outcome {
            Ok(()) => {
                let _ = hostcalls::resume_http_request();
            }
            Err(error) => refuse_after_allow(shared, &error, waiter.audit),
        }
    }
}

/// The caller was verified, but Databricks would not give us a token for it.
pub fn refuse_after_allow(shared: &Shared, error: &AuthError, mut audit: AuditRecord) {
    let response = error.to_response(&shared.engine.config.realm);
    audit.decision = "deny";
    audit.reason = Some(error.reason.as_str());
    audit.status = response.status;
    audit.detail = Some(error.detail.clone());
    record_denied(shared, &audit);
    refuse(&response);
}
