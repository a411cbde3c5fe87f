//! One request's way through the engine, from its HTTP context or, when it was paused waiting
//! for keys, from the root context that resumes it.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use super::upstream::{Parked, authorize, refuse_after_allow};
use super::{AwaitingBody, Headers, HostSharedData, Shared, Waiter, log, now_ms};
use brickgate_core::engine::{Decision, Mutations, Request, UpstreamAction};
use brickgate_core::error::{AuthError, DenyResponse, Reason};
use brickgate_core::identity::AuditRecord;
use brickgate_core::jwks::{Availability, KidMiss};
use brickgate_core::metrics;

/// What the HTTP context should do next.
pub enum Next {
    Continue,
    /// Answered locally, or waiting (for keys or an upstream token).
    Pause,
    /// Let the headers through, read the body, then decide again (`Shared::awaiting_body`).
    NeedBody,
    /// The same, once the request is resumed (it waits for an upstream token first).
    NeedBodyAfterResume,
}

/// Decides a request of the effective context. With `may_wait`, a request whose provider's
/// keys are not there yet (cold start) or lack its `kid` (rotation) is parked instead.
/// How long a request may still wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A new request: it may wait its provider's `wait_for_keys_ms`.
    Fresh,
    /// A resumed request: it may wait again, but only until its original deadline.
    Until(u64),
}

/// Decides a request of the effective context. A request whose provider's keys are not there
/// yet (cold start) or lack its `kid` (rotation) is parked until they arrive, within its wait.
/// `body` comes with the request's headers as they arrived (saved when they went through:
/// the host no longer offers them once let through).
pub fn process(
    shared: &mut Shared,
    context_id: u32,
    wait: Wait,
    body: Option<(&[u8], Headers)>,
) -> Next {
    let (body, saved) = match body {
        Some((body, headers)) => (Some(body), Some(headers)),
        None => (None, None),
    };
    let headers = match saved {
        Some(headers) => headers,
        None => match hostcalls::get_map(MapType::HttpRequestHeaders) {
            Ok(headers) => headers,
            Err(_) => {
                refuse(&not_ready("cannot read the request headers"));
                return Next::Pause;
            }
        },
    };
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let request = Request {
        method: pseudo(":method"),
        path: pseudo(":path"),
        headers: &headers,
        body,
        fingerprint: shared.info_logging,
    };
    let now = now_ms();
    let mut decision = shared
        .engine
        .decide(&request, &shared.store, &mut shared.cache, now);
    if let Decision::NeedBody {
        max_bytes,
        mutations,
        upstream,
        audit,
    } = decision
    {
        return before_body(
            shared, context_id, max_bytes, mutations, upstream, audit, &headers,
        );
    }
    // With a body, the headers already went through (see `before_body`): only the verdict is left.
    let headers_sent = body.is_some();
    let saved_for_wait = body.is_some().then_some(&headers);
    match wait_for_keys(shared, &decision, context_id, now, wait, saved_for_wait) {
        KeyWait::Park(waiter) => {
            shared.waiters.push(waiter);
            return Next::Pause;
        }
        KeyWait::DecideAgain => {
            decision = shared
                .engine
                .decide(&request, &shared.store, &mut shared.cache, now);
        }
        KeyWait::Answer => {}
    }
    match decision.audit().cache {
        Some("hit") => shared.counters.add(metrics::TOKEN_CACHE_HIT, 1),
        Some(_) => shared.counters.add(metrics::TOKEN_CACHE_MISS, 1),
        None => {}
    }
    match decision {
        Decision::Allow { audit, .. } if headers_sent => {
            record_allowed(shared, &audit);
            Next::Continue
        }
        Decision::Allow {
            mutations,
            upstream: UpstreamAction::Forward,
            audit,
        } => match finish_allowed(shared, mutations, None, &audit, Some(&headers), true) {
            Ok(()) => Next::Continue,
            Err(error) => {
                refuse_after_allow(shared, &error, audit);
                Next::Pause
            }
        },
        Decision::Allow {
            mutations,
            upstream: UpstreamAction::Fetch(token_request),
            audit,
        } => {
            let parked = Parked {
                context_id,
                mutations,
                audit: audit.clone(),
                record: true,
            };
            match authorize(shared, token_request, parked) {
                Ok(true) => Next::Continue,
                Ok(false) => Next::Pause,
                Err(error) => {
                    refuse_after_allow(shared, &error, audit);
                    Next::Pause
                }
            }
        }
        Decision::Deny { response, audit } => {
            record_denied(shared, &audit);
            refuse(&response);
            Next::Pause
        }
        Decision::NeedBody { .. } => Next::Pause,
    }
}

/// Applies an allowed request's changes (and the upstream token, if one was obtained); with
/// `record`, counts and logs the decision too.
pub fn finish_allowed(
    shared: &Shared,
    mut mutations: Mutations,
    token: Option<&str>,
    audit: &AuditRecord,
    headers: Option<&[(String, String)]>,
    record: bool,
) -> Result<(), AuthError> {
    if let Some(token) = token {
        mutations
            .set_headers
            .push(("authorization".to_string(), format!("Bearer {token}")));
    }
    apply(&mutations, headers).map_err(|problem| {
        log(LogLevel::Error, &format!("brickgate: {problem}"));
        AuthError::new(
            Reason::KeysUnavailable,
            "brickgate could not prepare the request; retry shortly",
        )
    })?;
    if record {
        record_allowed(shared, audit);
    }
    Ok(())
}

/// Counts and logs a refused request.
pub fn record_denied(shared: &Shared, audit: &AuditRecord) {
    shared.counters.add(metrics::DENIED, 1);
    if let Some(reason) = audit.reason {
        shared
            .counters
            .add(&format!("{}.{reason}", metrics::DENIED), 1);
    }
    log_audit(shared, audit);
}

/// Counts and logs an allowed request.
pub fn record_allowed(shared: &Shared, audit: &AuditRecord) {
    let counters = &shared.counters;
    if audit.provider.is_none() {
        counters.add(metrics::ALLOWED_ANONYMOUS, 1);
    } else {
        counters.add(metrics::ALLOWED, 1);
        if audit.stale_keys {
            counters.add(metrics::JWKS_STALE_SERVED, 1);
        }
    }
    log_audit(shared, audit);
}

/// The headers of a request whose rule depends on its body: they go through now with what
/// holds whatever the rule (stripped and verified identity headers, the upstream token), and
/// the body decides. A refusal then resets the upstream request before it has its body.
#[allow(clippy::too_many_arguments)]
fn before_body(
    shared: &mut Shared,
    context_id: u32,
    max_bytes: usize,
    mutations: Mutations,
    upstream: UpstreamAction,
    audit: AuditRecord,
    headers: &[(String, String)],
) -> Next {
    shared.awaiting_body.insert(
        context_id,
        AwaitingBody {
            limit: max_bytes,
            headers: headers.to_vec(),
        },
    );
    match upstream {
        UpstreamAction::Forward => match apply(&mutations, Some(headers)) {
            Ok(()) => Next::NeedBody,
            Err(problem) => {
                log(LogLevel::Error, &format!("brickgate: {problem}"));
                refuse(&not_ready("brickgate could not prepare the request"));
                Next::Pause
            }
        },
        UpstreamAction::Fetch(token_request) => {
            let parked = Parked {
                context_id,
                mutations,
                audit: audit.clone(),
                record: false,
            };
            match authorize(shared, token_request, parked) {
                Ok(true) => Next::NeedBody,
                Ok(false) => Next::NeedBodyAfterResume,
                Err(error) => {
                    refuse_after_allow(shared, &error, audit);
                    Next::Pause
                }
            }
        }
    }
}

fn log_audit(shared: &Shared, audit: &AuditRecord) {
    if shared.info_logging {
        log(
            LogLevel::Info,
            &format!("brickgate audit {}", audit.to_json()),
        );
    }
}

enum KeyWait {
    Park(Waiter),
    /// Newer keys were adopted: the decision may change.
    DecideAgain,
    Answer,
}

/// Whether a refusal about keys should wait for keys that are on their way.
fn wait_for_keys(
    shared: &mut Shared,
    decision: &Decision,
    context_id: u32,
    now: u64,
    wait: Wait,
    saved_headers: Option<&Headers>,
) -> KeyWait {
    let audit = decision.audit();
    let Some(reason) = audit.reason else {
        return KeyWait::Answer;
    };
    let Some(provider) = shared
        .engine
        .config
        .providers
        .iter()
        .position(|p| Some(&p.name) == audit.provider.as_ref())
    else {
        return KeyWait::Answer;
    };
    let deadline = match wait {
        Wait::Fresh => now + shared.store.wait_budget_ms(provider),
        Wait::Until(deadline) => deadline,
    };
    let park = |shared: &Shared| {
        KeyWait::Park(Waiter {
            context_id,
            provider,
            deadline_ms: deadline,
            generation: shared.store.generation(provider),
            attempts: shared.store.attempts_seen(provider),
            saved_headers: saved_headers.cloned(),
        })
    };
    if reason == Reason::UnknownKid.as_str() {
        match shared.store.on_unknown_kid(&HostSharedData, provider, now) {
            KidMiss::Adopted => KeyWait::DecideAgain,
            KidMiss::Wait if now < deadline => park(shared),
            KidMiss::Wait | KidMiss::RateLimited => KeyWait::Answer,
        }
    } else if reason == Reason::KeysUnavailable.as_str()
        && now < deadline
        && matches!(shared.store.availability(provider, now), Availability::Cold)
    {
        park(shared)
    } else {
        KeyWait::Answer
    }
}

/// Applies the changes with one host call (the whole header map), not one per header.
/// `headers` are the request's current headers when the caller already has them.
fn apply(mutations: &Mutations, headers: Option<&[(String, String)]>) -> Result<(), String> {
    if mutations == &Mutations::default() {
        return Ok(());
    }
    let fetched;
    let headers = match headers {
        Some(headers) => headers,
        None => {
            fetched = hostcalls::get_map(MapType::HttpRequestHeaders)
                .map_err(|e| format!("cannot read headers: {e:?}"))?;
            &fetched
        }
    };
    let updated = mutations.applied_to(headers);
    let pairs: Vec<(&str, &str)> = updated
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    hostcalls::set_map(MapType::HttpRequestHeaders, pairs)
        .map_err(|e| format!("cannot set headers: {e:?}"))
}

pub fn refuse(response: &DenyResponse) {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(status) =
        hostcalls::send_http_response(response.status, headers, Some(&response.body))
    {
        log(
            LogLevel::Error,
            &format!("brickgate: cannot send the refusal: {status:?}"),
        );
    }
}

/// Fail closed on internal trouble: 503, never the upstream.
pub fn not_ready(why: &str) -> DenyResponse {
    AuthError::new(Reason::KeysUnavailable, format!("{why}; retry shortly"))
        .to_response("brickgate")
}
