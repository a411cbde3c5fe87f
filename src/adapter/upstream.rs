//! Obtaining Databricks tokens for allowed requests (token exchange, service principal):
//! one call per cache key in flight, every request waiting on it resumed with the result.

use std::collections::HashMap;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::request::{finish_allowed, refuse};
use super::{HostSharedData, Shared, log, now_ms};
use crate::databricks::exchange::{TokenRequest, parse_token_response};
use crate::engine::Mutations;
use crate::error::AuthError;
use crate::identity::AuditRecord;
use crate::metrics;

/// A request waiting for an upstream token.
pub struct Parked {
    pub context_id: u32,
    pub mutations: Mutations,
    pub audit: AuditRecord,
}

/// Token calls in flight, by callout token.
#[derive(Default)]
pub struct InFlight {
    calls: HashMap<u32, (TokenRequest, Vec<Parked>)>,
}

impl InFlight {
    pub fn owns(&self, callout: u32) -> bool {
        self.calls.contains_key(&callout)
    }
}

/// Sets the token on the request now (cache hit), or parks it behind a token call.
/// `true` when the request may continue at once.
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
        finish_allowed(shared, parked.mutations, Some(&token), &parked.audit, None)?;
        return Ok(true);
    }
    if let Some((_, waiting)) = shared
        .in_flight
        .calls
        .values_mut()
        .find(|(r, _)| r.cache_key == request.cache_key)
    {
        waiting.push(parked);
        return Ok(false);
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
    let body = request.body.as_bytes();
    match hostcalls::dispatch_http_call(&request.cluster, headers, Some(body), vec![], timeout) {
        Ok(callout) => {
            shared.counters.add(metrics::UPSTREAM_TOKEN_FETCH, 1);
            shared
                .in_flight
                .calls
                .insert(callout, (request, vec![parked]));
            Ok(false)
        }
        Err(status) => {
            let error = parse_token_response(&request, 0, &[]);
            log(
                LogLevel::Warn,
                &format!(
                    "brickgate: cannot dispatch the token request through cluster {:?}: {status:?}",
                    request.cluster
                ),
            );
            error.map(|_| false)
        }
    }
}

/// Handles a token call's response (from whichever context dispatched it) and resumes or
/// refuses every request parked behind it.
pub fn on_response(shared: &mut Shared, callout: u32, status: u32, body: &[u8]) {
    let Some((request, parked)) = shared.in_flight.calls.remove(&callout) else {
        return;
    };
    let result = parse_token_response(&request, status, body);
    if let Ok(issued) = &result {
        shared
            .upstream_tokens
            .put(&HostSharedData, &request.cache_key, issued, now_ms());
    } else {
        shared.counters.add(metrics::UPSTREAM_TOKEN_FAILED, 1);
    }
    for waiter in parked {
        if hostcalls::set_effective_context(waiter.context_id).is_err() {
            continue; // the client went away
        }
        let outcome = match &result {
            Ok(issued) => finish_allowed(
                shared,
                waiter.mutations,
                Some(&issued.access_token),
                &waiter.audit,
                None,
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
    shared.counters.add(metrics::DENIED, 1);
    shared
        .counters
        .add(&format!("{}.{}", metrics::DENIED, error.reason.as_str()), 1);
    if shared.info_logging {
        log(
            LogLevel::Info,
            &format!("brickgate audit {}", audit.to_json()),
        );
    }
    refuse(&response);
}
