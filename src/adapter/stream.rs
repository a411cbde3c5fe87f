//! Carries out a stream's host actions: the core's `worker::drive` steps the stream and calls
//! back here, one host call per action. Shared by the HTTP context (its own callbacks) and the
//! root context (wake-ups and token answers).

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use super::{Counters, HostSharedData, Shared, StreamCell, access_log, log, now_ns};
use brickgate_core::databricks::exchange::TokenRequest;
use brickgate_core::engine::{HeaderEdit, HeaderRewrite};
use brickgate_core::error::DenyResponse;
use brickgate_core::identity::Principal;
use brickgate_core::stream::{Event, Record, Reply};
use brickgate_core::worker::{StreamHost, Worker, drive as drive_stream};

/// Steps the stream with `event` and carries out what the step asks. The stream must be the
/// host's effective context.
pub fn drive(shared: &mut Shared, context_id: u32, cell: &StreamCell, event: Event<'_>) -> Reply {
    let Ok(mut slot) = cell.try_borrow_mut() else {
        // Re-entered while stepping (a host that calls back synchronously): hold, never release.
        return Reply::Pause;
    };
    let log_line = shared.audit_log_line();
    let Shared {
        worker,
        counters,
        held,
        root_context_id,
        filter_state,
        ..
    } = shared;
    let mut host = WasmStream {
        context_id,
        root_context_id: *root_context_id,
        counters,
        filter_state: *filter_state,
        log_line,
    };
    let driven = drive_stream(worker, &HostSharedData, &mut slot, &mut host, event);
    // Most streams are decided in their first step: no map work for them.
    match (driven.was_held, driven.is_held) {
        (false, true) => {
            held.insert(context_id, Rc::clone(cell));
        }
        (true, false) => {
            held.remove(&context_id);
        }
        (false, false) | (true, true) => {}
    }
    driven.reply
}

/// Whether every request-header edit already makes the host pick the route again, so the
/// explicit `clear_route_cache` call would be a second clear (a foreign-function call per
/// rewritten request; docs/BENCHMARKS.md, issue 19, has what dropping it saved). Envoy clears
/// the route cache on each header change of a module of ABI 0.2.1 or older (every version; since
/// 1.33 only for those, envoyproxy/envoy#36671, `Context::onHeadersModified`), and the SDK
/// (proxy-wasm 0.2) exports `proxy_abi_version_0_2_1`. An SDK with a newer ABI must set this to
/// false: tests/e2e/test_route_after_rewrite.py fails otherwise (docs/PATHS.md).
const HOST_REPICKS_ROUTE_ON_EDIT: bool = true;

/// One stream's host calls (the stream is the effective context).
struct WasmStream<'a> {
    context_id: u32,
    root_context_id: u32,
    counters: &'a mut Counters,
    filter_state: bool,
    log_line: bool,
}

impl StreamHost for WasmStream<'_> {
    fn now_ns(&mut self) -> u64 {
        now_ns()
    }

    fn rewrite_request_headers(&mut self, rewrite: &HeaderRewrite) -> Result<(), String> {
        // Any edit may select another route (`HeaderRewrite::reselects_route`). Each of the
        // edits already makes Envoy pick the route again for this module's ABI, so the
        // explicit call is only needed for a newer one.
        if rewrite_headers(rewrite)? && !HOST_REPICKS_ROUTE_ON_EDIT {
            super::route_cache::clear()?;
        }
        Ok(())
    }

    fn publish(&mut self, principal: &Principal) -> Result<(), String> {
        super::publish::publish(principal)
    }

    fn set_request_trailers(&mut self, trailers: &[(String, String)]) -> Result<(), String> {
        hostcalls::set_map(MapType::HttpRequestTrailers, pairs(trailers))
            .map_err(|e| format!("cannot set the request trailers: {e:?}"))
    }

    fn send_response(&mut self, response: &DenyResponse) {
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
    }

    fn resume(&mut self) -> Result<(), String> {
        hostcalls::resume_http_request().map_err(|e| format!("cannot resume the request: {e:?}"))
    }

    fn fetch_upstream_token(&mut self, worker: &mut Worker, request: TokenRequest) {
        super::upstream::fetch_for_stream(
            worker,
            self.counters,
            self.root_context_id,
            self.context_id,
            request,
        );
    }

    /// Counts the decision, hands its record to the access log (filter state) and, when
    /// configured and the host keeps info lines, writes the application-log audit line.
    fn record(&mut self, record: &Record, decision_us: Option<u64>) {
        for counter in record.counters() {
            self.counters.add(&counter, 1);
        }
        let (decision, reason, rule) = record.request_labels();
        self.counters.add_request(decision, reason, rule);
        if let Some(micros) = decision_us {
            self.counters.record_decision_time(micros);
        }
        if self.filter_state {
            access_log::publish(&record.audit);
        }
        if self.log_line {
            log(
                LogLevel::Info,
                &format!("brickgate audit {}", record.audit.to_json()),
            );
        }
    }

    fn warn(&mut self, line: &str) {
        log(LogLevel::Warn, line);
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
