//! One stream: each hook becomes a lifecycle event, stepped by the core's `worker::drive` with
//! this stream's host calls ([`NativeStream`]). What a request hook returns is the core's
//! reply: a stream not yet allowed is held or refused, never released.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use brickgate_core::access_log;
use brickgate_core::databricks::exchange::TokenRequest;
use brickgate_core::engine::{HeaderEdit, HeaderRewrite};
use brickgate_core::error::DenyResponse;
use brickgate_core::identity::Principal;
use brickgate_core::stream::{Event, Record, Reply};
use brickgate_core::worker::{BodyCursor, BodyHook, HeldBody, Slot, StreamHost, Worker, drive};

use super::state::{HeldStream, State};
use super::{Shared, config_event, stream_event};
use crate::envoy::{
    BodyStatus, Filter, FilterHandle, HeaderError, HeadersStatus, LogLevel, TrailersStatus, log,
    log_enabled,
};

/// The filter-state key of each decision's audit record (`%FILTER_STATE(brickgate:PLAIN)%`:
/// the JSON text of the fields the Wasm form's `wasm.brickgate` object holds).
pub const AUDIT_FILTER_STATE: &str = "brickgate";
/// The dynamic-metadata namespace of the published principal (`identity.publish`).
pub const METADATA_NAMESPACE: &str = "brickgate";

pub struct NativeFilter {
    shared: Arc<Shared>,
    id: u32,
    slot: Arc<Mutex<Slot>>,
    /// How much of Envoy's buffer for this filter the core has seen (after the stream went
    /// on, Envoy passed it on and starts a new one).
    body: BodyCursor,
}

impl NativeFilter {
    pub fn new(shared: Arc<Shared>, id: u32) -> NativeFilter {
        NativeFilter {
            shared,
            id,
            slot: Arc::new(Mutex::new(Slot::default())),
            body: BodyCursor::default(),
        }
    }

    /// Steps the stream with `event` and carries out its actions; keeps the held-stream table.
    fn handle(&mut self, filter: &FilterHandle, event: Event<'_>) -> Reply {
        self.step_with(filter, |_, _| Some(event))
            .unwrap_or(Reply::Pause)
    }

    /// Locks the state, then the slot, and steps the stream with the event `event` finds there
    /// (none: nothing to do).
    fn step_with<'e>(
        &self,
        filter: &FilterHandle,
        event: impl FnOnce(&mut State, &Slot) -> Option<Event<'e>>,
    ) -> Option<Reply> {
        let mut state = self.shared.lock();
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let event = event(&mut state, &slot)?;
        let reply = step(
            &self.shared,
            &mut state,
            filter,
            self.id,
            &self.slot,
            &mut slot,
            event,
        );
        Some(reply)
    }
}

/// Envoy's body buffers in the running body hook, read only when they hold new bytes.
struct EnvoyBody<'a>(&'a FilterHandle);

impl HeldBody for EnvoyBody<'_> {
    fn hook(&self) -> BodyHook {
        BodyHook {
            buffered: self.0.buffered_request_body_size(),
            received: self.0.received_request_body_size(),
            received_is_buffered: self.0.received_is_buffered_request_body(),
        }
    }

    fn received(&self) -> Vec<u8> {
        self.0.received_request_body()
    }

    fn whole(&self) -> Vec<u8> {
        self.0.request_body()
    }
}

/// One step of the stream, the state and its slot locked (in that order).
fn step(
    shared: &Shared,
    state: &mut State,
    filter: &FilterHandle,
    id: u32,
    cell: &Arc<Mutex<Slot>>,
    slot: &mut Slot,
    event: Event<'_>,
) -> Reply {
    let State {
        worker,
        table,
        held,
        ..
    } = state;
    let mut host = NativeStream {
        filter,
        shared,
        id,
        wake_main: false,
    };
    let driven = drive(worker, *table, slot, &mut host, event);
    if host.wake_main {
        shared.wake_main.commit(config_event::SEND_TOKEN_CALLS);
    }
    match (driven.was_held, driven.is_held) {
        (false, true) => match filter.scheduler() {
            Some(scheduler) => {
                let entry = HeldStream {
                    slot: Arc::clone(cell),
                    scheduler,
                    token: None,
                };
                held.insert(id, entry);
            }
            // Nothing could wake it: Envoy's own timeouts end it (logged, never released).
            None => log(
                LogLevel::Error,
                "brickgate: Envoy gave no stream scheduler: a held request waits for Envoy's timeouts",
            ),
        },
        (true, false) => {
            held.remove(&id);
        }
        (false, false) | (true, true) => {}
    }
    driven.reply
}

impl Filter for NativeFilter {
    fn on_request_headers(&mut self, filter: &FilterHandle, end_of_stream: bool) -> HeadersStatus {
        let event = match filter.request_headers() {
            Ok(headers) => Event::RequestHeaders {
                headers,
                end_of_stream,
            },
            Err(error) => unreadable_headers(filter, error),
        };
        match self.handle(filter, event) {
            Reply::Continue => HeadersStatus::Continue,
            Reply::Pause => HeadersStatus::StopIteration,
        }
    }

    fn on_request_body(&mut self, filter: &FilterHandle, end_of_stream: bool) -> BodyStatus {
        let bytes = {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            self.body.bytes_for(&mut slot, &EnvoyBody(filter))
        };
        let event = Event::RequestBody {
            bytes: &bytes,
            end_of_stream,
        };
        match self.handle(filter, event) {
            Reply::Continue => BodyStatus::Continue,
            Reply::Pause => BodyStatus::StopAndBuffer,
        }
    }

    fn on_request_trailers(&mut self, filter: &FilterHandle) -> TrailersStatus {
        let event = match filter.request_trailers() {
            Some(Ok(trailers)) => Event::RequestTrailers { trailers },
            Some(Err(error)) => Event::UnreadableTrailers {
                name: error_name(filter, &error, true),
            },
            None => Event::ReadFailure("cannot read the request trailers".to_string()),
        };
        match self.handle(filter, event) {
            Reply::Continue => TrailersStatus::Continue,
            Reply::Pause => TrailersStatus::StopIteration,
        }
    }

    /// Woken on this worker by the main thread: keys or a deadline, or its token.
    fn on_scheduled(&mut self, filter: &FilterHandle, event_id: u64) {
        let id = self.id;
        self.step_with(filter, |state, slot| match event_id {
            stream_event::TOKEN => state
                .held
                .get_mut(&id)
                .and_then(|held| held.token.take())
                .map(Event::UpstreamToken),
            _ => slot
                .stream
                .wants_wake(&state.worker.store, now_ms())
                .then_some(Event::Wake),
        });
    }
}

impl Drop for NativeFilter {
    /// A stream that ended is woken no more, and no token call waits for it.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.held.remove(&self.id);
        state.worker.calls.forget(self.id);
    }
}

/// The request headers, one of which is not UTF-8: read lossily, for the audit record only.
fn unreadable_headers(filter: &FilterHandle, error: HeaderError) -> Event<'static> {
    let name = error_name(filter, &error, false);
    let headers = filter
        .request_headers_bytes()
        .into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(&n).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect();
    Event::UnreadableHeaders { name, headers }
}

/// The (printable) name of the header or trailer that is not UTF-8.
fn error_name(filter: &FilterHandle, error: &HeaderError, trailers: bool) -> String {
    match error {
        HeaderError::ValueNotUtf8 { name } => name.clone(),
        HeaderError::NameNotUtf8 { index } => {
            let pairs = if trailers {
                Vec::new()
            } else {
                filter.request_headers_bytes()
            };
            pairs
                .get(*index)
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_else(|| "(not UTF-8)".to_string())
        }
    }
}

/// The clock in Unix milliseconds (0 if it cannot tell, which fails every token closed).
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// One stream's host calls, on its worker.
struct NativeStream<'a> {
    filter: &'a FilterHandle,
    shared: &'a Shared,
    id: u32,
    /// A token call was queued: the main thread sends it at once.
    wake_main: bool,
}

impl StreamHost for NativeStream<'_> {
    fn now_ns(&mut self) -> u64 {
        now_ns()
    }

    fn rewrite_request_headers(&mut self, rewrite: &HeaderRewrite) -> Result<(), String> {
        let edits = rewrite.edits();
        let edited = !edits.is_empty();
        for edit in edits {
            // Names only in the message: a value may be a credential.
            let (done, name) = match edit {
                HeaderEdit::Remove(name) => (self.filter.remove_request_header(name), name),
                HeaderEdit::ReplacePath(path) => {
                    (self.filter.set_request_header(":path", path), ":path")
                }
                HeaderEdit::Add(name, value) => (self.filter.add_request_header(name, value), name),
            };
            if !done {
                return Err(format!("cannot set the request header {name}"));
            }
        }
        // Any edit may select another route (`HeaderRewrite::reselects_route`).
        if edited {
            self.filter.clear_route_cache();
        }
        Ok(())
    }

    fn publish(&mut self, principal: &Principal) -> Result<(), String> {
        for (name, value) in principal.entries() {
            self.filter
                .set_dynamic_metadata_string(METADATA_NAMESPACE, name, &value);
        }
        Ok(())
    }

    fn set_request_trailers(&mut self, trailers: &[(String, String)]) -> Result<(), String> {
        let present = match self.filter.request_trailers() {
            Some(Ok(present)) => present,
            _ => return Err("cannot read the request trailers".to_string()),
        };
        for (name, _) in &present {
            if !trailers.iter().any(|(kept, _)| kept == name)
                && !self.filter.remove_request_trailer(name)
            {
                return Err(format!("cannot remove the request trailer {name}"));
            }
        }
        let mut set: Vec<&str> = Vec::new();
        for (name, value) in trailers {
            let done = if set.contains(&name.as_str()) {
                self.filter.add_request_trailer(name, value)
            } else {
                set.push(name);
                self.filter.set_request_trailer(name, value)
            };
            if !done {
                return Err(format!("cannot set the request trailer {name}"));
            }
        }
        Ok(())
    }

    fn send_response(&mut self, response: &DenyResponse) {
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        self.filter
            .send_response(response.status, &headers, &response.body, "brickgate");
    }

    fn resume(&mut self) -> Result<(), String> {
        self.filter.continue_decoding();
        Ok(())
    }

    fn fetch_upstream_token(&mut self, worker: &mut Worker, request: TokenRequest) {
        // Calls go out from the main thread, whose callouts outlive any one stream.
        if let Some(request) = worker.calls.wait_for(request, self.id) {
            worker.calls.queue(request, vec![self.id]);
            self.wake_main = true;
        }
    }

    fn record(&mut self, record: &Record, decision_us: Option<u64>) {
        let metrics = &self.shared.metrics;
        for counter in record.counters() {
            metrics.count(self.filter, &counter, 1);
        }
        let (decision, reason, rule) = record.request_labels();
        metrics.count_request(self.filter, decision, reason, rule);
        if let Some(micros) = decision_us {
            metrics.record_decision_time(self.filter, micros);
        }
        if self.shared.filter_state {
            // The Wasm form's fields (Envoy logs status, method, path and request id itself).
            // A failed write only loses the access-log field.
            let json = access_log::filter_state_json(&record.audit);
            self.filter
                .set_filter_state_bytes(AUDIT_FILTER_STATE, json.as_bytes());
        }
        if self.shared.log_line && log_enabled(LogLevel::Info) {
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
