//! Drives one stream's lifecycle: the core's step for an event, then its host actions carried
//! out in order. Shared by the HTTP context (its own callbacks) and the root context (wake-ups
//! and token answers).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use super::{HostSharedData, Shared, StreamCell, access_log, log, now_ns};
use brickgate_core::engine::{HeaderEdit, HeaderRewrite};
use brickgate_core::stream::{Env, Event, HostAction, Record, Reply};

/// Steps the stream with `event` and carries out what the step asks. The stream must be the
/// host's effective context.
pub fn drive(shared: &mut Shared, context_id: u32, cell: &StreamCell, event: Event<'_>) -> Reply {
    let Ok(mut slot) = cell.try_borrow_mut() else {
        // Re-entered while stepping (a host that calls back synchronously): hold, never release.
        return Reply::Pause;
    };
    let slot = &mut *slot;
    let was_held = slot.stream.is_held();
    let mut event = Some(event);
    let mut reply = Reply::Pause;
    let fingerprint = shared.filter_state || shared.audit_log_line();
    // At most two rounds: the event, then (if a host call failed) the failure.
    for _ in 0..2 {
        let Some(current) = event.take() else { break };
        // One clock read per step, also timing the decision (headers → record).
        let now_ns = now_ns();
        // Decided in the step its headers arrived in, or after waiting (body, keys, a token).
        let at_once = matches!(current, Event::RequestHeaders { .. });
        if at_once {
            slot.started_ns = now_ns;
        }
        let timing = Timing {
            started_ns: slot.started_ns,
            at_once,
        };
        let mut env = Env {
            engine: &shared.engine,
            store: &mut shared.store,
            cache: &mut shared.cache,
            upstream_tokens: &mut shared.upstream_tokens,
            shared: &HostSharedData,
            now_ms: now_ns / 1_000_000,
            fingerprint,
            body_budget: &shared.body_budget,
        };
        let step = slot.stream.step(&mut env, current);
        reply = step.reply;
        slot.body_released |= reply == Reply::Continue
            || step.actions.iter().any(|a| matches!(a, HostAction::Resume));
        for action in step.actions {
            if let Err(why) = carry_out(shared, context_id, timing, action) {
                event = Some(Event::HostFailure(why));
                break;
            }
        }
    }
    // Most streams are decided in their first step: no map work for them.
    match (was_held, slot.stream.is_held()) {
        (false, true) => {
            shared.held.insert(context_id, Rc::clone(cell));
        }
        (true, false) => {
            shared.held.remove(&context_id);
        }
        (false, false) | (true, true) => {}
    }
    reply
}

/// When the stream's headers arrived (host ns), and whether this step is that one.
#[derive(Clone, Copy)]
pub struct Timing {
    pub started_ns: u64,
    pub at_once: bool,
}

fn carry_out(
    shared: &mut Shared,
    context_id: u32,
    timing: Timing,
    action: HostAction,
) -> Result<(), String> {
    match action {
        HostAction::SetRequestHeaders(rewrite) => {
            // Any edit may select another route (`HeaderRewrite::reselects_route`).
            if rewrite_headers(&rewrite)? {
                super::route_cache::clear()?;
            }
            Ok(())
        }
        HostAction::Publish(principal) => super::publish::publish(&principal),
        HostAction::SetRequestTrailers(trailers) => {
            hostcalls::set_map(MapType::HttpRequestTrailers, pairs(&trailers))
                .map_err(|e| format!("cannot set the request trailers: {e:?}"))
        }
        HostAction::SendResponse(response) => {
            if let Err(status) = hostcalls::send_http_response(
                response.status,
                pairs(&response.headers),
                Some(&response.body),
            ) {
                // Nothing else to fall back on: the stream stays paused until Envoy times it out.
                log(
                    LogLevel::Error,
                    &format!("brickgate: cannot send the refusal: {status:?}"),
                );
            }
            Ok(())
        }
        HostAction::Resume => hostcalls::resume_http_request()
            .map_err(|e| format!("cannot resume the request: {e:?}")),
        HostAction::FetchUpstreamToken(request) => {
            super::upstream::fetch_for_stream(shared, context_id, request);
            Ok(())
        }
        HostAction::Record(record) => {
            record_decision(shared, timing, &record);
            Ok(())
        }
        HostAction::Warn(line) => {
            log(LogLevel::Warn, &line);
            Ok(())
        }
    }
}

/// Makes the rewrite's edits, one host call each; whether there were any.
fn rewrite_headers(rewrite: &HeaderRewrite) -> Result<bool, String> {
    const MAP: MapType = MapType::HttpRequestHeaders;
    let edits = rewrite.edits();
    let edited = !edits.is_empty();
    for edit in edits {
        // Names only in the message: a value may be a credential.
        let (done, name) = match edit {
            HeaderEdit::Remove(name) => (hostcalls::set_map_value(MAP, name, None), name),
            HeaderEdit::ReplacePath(path) => {
                (hostcalls::set_map_value(MAP, ":path", Some(path)), ":path")
            }
            HeaderEdit::Add(name, value) => (hostcalls::add_map_value(MAP, name, value), name),
        };
        done.map_err(|e| format!("cannot set the request header {name}: {e:?}"))?;
    }
    Ok(edited)
}

/// Header pairs as the SDK takes them.
pub fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

/// Counts and times the decision, hands its record to the access log (filter state) and, when
/// configured and the host keeps info lines, writes the application-log audit line.
pub fn record_decision(shared: &mut Shared, timing: Timing, record: &Record) {
    for counter in record.counters() {
        shared.counters.add(&counter, 1);
    }
    let (decision, reason, rule) = record.request_labels();
    shared.counters.add_request(decision, reason, rule);
    if timing.started_ns != 0 && shared.counters.times_decision(timing.at_once) {
        // A fresh clock read: the step's own read is where a decision made at once started.
        let micros = now_ns().saturating_sub(timing.started_ns) / 1000;
        shared.counters.record_decision_time(micros);
    }
    if shared.filter_state {
        access_log::publish(&record.audit);
    }
    if shared.audit_log_line() {
        log(
            LogLevel::Info,
            &format!("brickgate audit {}", record.audit.to_json()),
        );
    }
}
