//! The fake host: Envoy's pause semantics under each `Host` (the held path, or no flag and the
//! buffer filter after brickgate), and the adapter's `drive`.

use super::*;
use crate::databricks::exchange::TokenRequest;
use crate::engine::HeaderRewrite;
use crate::identity::Principal;
use crate::worker::{Level, StreamHost, Telemetry};

impl World {
    pub(super) fn new(setup: Setup, host: Host) -> World {
        let config = config(setup, host);
        let engine = Arc::new(Engine::new(config, Box::new(InWasmVerifier)));
        let workers = (0..2)
            .map(|vm| {
                let mut worker = Worker::new(
                    Arc::clone(&engine),
                    vm + 1,
                    BodyBudget::new(MAX_HELD_BODY_BYTES),
                );
                // Small, so that streams run into them.
                worker.cache = TokenCache::new(16, 1 << 16);
                worker.upstream_tokens = UpstreamTokens::default();
                Vm {
                    worker,
                    fetch: None,
                    in_flight: Vec::new(),
                }
            })
            .collect();
        let mut ever_published = BTreeSet::new();
        if setup == Setup::InlineKeys {
            ever_published.extend(["k1", "k2"]);
        } else {
            ever_published.insert("k1");
        }
        World {
            setup,
            host,
            shared: InMemorySharedData::default(),
            workers,
            clients: Vec::new(),
            now_ms: NOW_MS,
            published: 0,
            ever_published,
            fail_next_call: false,
            garble_next: false,
            next_callout: 1,
            issued: 0,
        }
    }

    /// The production loop (`worker::drive`) through the fake host ([`FakeStream`]): a host
    /// call that fails stops the actions and is fed back as [`Event::HostFailure`].
    /// `in_callback`: the event is the stream's own callback, whose reply the host acts on.
    pub(super) fn drive(&mut self, id: usize, event: Event<'_>, in_callback: bool) {
        let client = &mut self.clients[id];
        let vm = &mut self.workers[client.worker];
        let mut slot = std::mem::take(&mut client.slot);
        let mut host = FakeStream {
            client,
            id,
            host: self.host,
            now_ms: self.now_ms,
            in_callback,
            released: false,
            fail_next_call: &mut self.fail_next_call,
            next_callout: &mut self.next_callout,
            in_flight: &mut vm.in_flight,
        };
        let driven = worker::drive(&mut vm.worker, &self.shared, &mut slot, &mut host, event);
        let mut released = host.released;
        let client = &mut self.clients[id];
        client.slot = slot;
        assert_eq!(
            driven.is_held,
            client.slot.stream.is_held(),
            "drive reports another held state than the stream's"
        );
        if in_callback && driven.reply == Reply::Continue && client.local_reply.is_none() {
            released |= release(client, self.host);
        }
        if client.slot.stream.phase() == "waiting_for_keys" && client.keys_wait_since.is_none() {
            client.keys_wait_since = Some(self.now_ms);
        }
        if released {
            self.check_release(id);
        }
        self.check_records(id);
        self.check_credentials_first(id);
        self.deliver_queued(id);
    }

    /// `Host::BufferFilter`: once the headers went on, the host delivers what the client sent
    /// while they were held: its body so far in one callback, then its trailers.
    pub(super) fn deliver_queued(&mut self, id: usize) {
        let client = &mut self.clients[id];
        if !client.headers_went_on || client.local_reply.is_some() {
            return;
        }
        if let Some(bytes) = client.queued_body.take() {
            let end_of_stream = client.complete()
                && client.ending == Ending::EndOfStream
                && client.queued_trailers.is_none();
            client.end_delivered |= end_of_stream;
            let buffered = client.pending_body.len() - bytes.len();
            let bytes = self.body_event_bytes(id, buffered, &bytes, end_of_stream);
            let event = Event::RequestBody {
                bytes: &bytes,
                end_of_stream,
            };
            self.drive(id, event, true);
            return;
        }
        if let Some((trailers, garbled)) = client.queued_trailers.take() {
            client.end_delivered = true;
            let event = if garbled {
                Event::UnreadableTrailers {
                    name: "x-trace".to_string(),
                }
            } else {
                Event::RequestTrailers { trailers }
            };
            self.drive(id, event, true);
        }
    }

    /// `Host::BufferFilter`: brickgate holds the headers, so the host holds back every later
    /// callback.
    pub(super) fn held_back(&self, id: usize) -> bool {
        let client = &self.clients[id];
        self.host == Host::BufferFilter && !client.headers_went_on
    }

    /// The host cannot read what the client sends next (its body chunk or trailers): the
    /// adapter sends [`Event::ReadFailure`] in place of that callback's event.
    pub(super) fn read_failure(&mut self, id: usize) {
        let client = &self.clients[id];
        if client.local_reply.is_some() || client.complete() || self.held_back(id) {
            return;
        }
        self.clients[id].host_failed = true;
        let event = Event::ReadFailure("fuzzed read failure".into());
        self.drive(id, event, true);
    }
}

/// What brickgate held goes on: to the upstream, or (`Host::BufferFilter`) to the buffer
/// filter, which passes the whole request on once its end has gone past brickgate. Whether
/// the upstream received something.
pub(super) fn release(client: &mut Client, host: Host) -> bool {
    let (headers, body, trailers) = match host {
        Host::HoldHeaders => (
            &mut client.upstream_headers,
            &mut client.upstream_body,
            &mut client.upstream_trailers,
        ),
        Host::BufferFilter => {
            // Only what was delivered to brickgate went past it; the rest is still queued.
            let queued = client.queued_body.as_ref().map_or(0, Vec::len);
            let delivered = client.pending_body.len() - queued;
            let (buffered_headers, buffered_body, buffered_trailers) = &mut client.in_buffer;
            if let Some(headers) = client.pending_headers.take() {
                client.headers_went_on = true;
                *buffered_headers = Some(headers);
            }
            buffered_body.extend(client.pending_body.drain(..delivered));
            if client.queued_trailers.is_none()
                && let Some(trailers) = client.pending_trailers.take()
            {
                *buffered_trailers = Some(trailers);
            }
            if !client.end_delivered {
                return false;
            }
            let (headers, body, trailers) = std::mem::take(&mut client.in_buffer);
            client.upstream_headers = headers;
            client.upstream_body = body;
            client.upstream_trailers = trailers;
            return true;
        }
    };
    if let Some(sent) = client.pending_headers.take() {
        *headers = Some(sent);
    }
    body.append(&mut client.pending_body);
    if let Some(sent) = client.pending_trailers.take() {
        *trailers = Some(sent);
    }
    true
}

/// One stream's host calls as Envoy would carry them out, checked as they come: no header edit
/// or publication after the headers went on, one local reply, and a reply after release only
/// to cut an allowed stream whose verdict could not be carried out.
struct FakeStream<'a> {
    client: &'a mut Client,
    id: usize,
    host: Host,
    now_ms: u64,
    in_callback: bool,
    /// The upstream received something during this drive.
    released: bool,
    /// The next host call that carries out a verdict fails (fuzzed).
    fail_next_call: &'a mut bool,
    next_callout: &'a mut u32,
    in_flight: &'a mut Vec<u32>,
}

impl FakeStream<'_> {
    /// A fuzzed failure of the host call about to be made.
    fn fuzzed_failure(&mut self) -> Result<(), String> {
        if std::mem::take(self.fail_next_call) {
            self.client.host_failed = true;
            return Err("fuzzed host call failure".into());
        }
        Ok(())
    }
}

impl StreamHost for FakeStream<'_> {
    fn now_ns(&mut self) -> u64 {
        self.now_ms * 1_000_000
    }

    fn rewrite_request_headers(&mut self, rewrite: &HeaderRewrite) -> Result<(), String> {
        self.fuzzed_failure()?;
        let client = &mut *self.client;
        assert!(
            client.upstream_headers.is_none() && !client.headers_went_on,
            "headers changed after release"
        );
        client.pending_headers = Some(rewrite.to_headers());
        Ok(())
    }

    fn publish(&mut self, _: &Principal) -> Result<(), String> {
        self.fuzzed_failure()?;
        assert!(
            self.client.upstream_headers.is_none() && !self.client.headers_went_on,
            "principal published after the headers went on"
        );
        Ok(())
    }

    fn set_request_trailers(&mut self, trailers: &[(String, String)]) -> Result<(), String> {
        self.fuzzed_failure()?;
        if self.client.pending_trailers.is_some() {
            self.client.pending_trailers = Some(trailers.to_vec());
        }
        Ok(())
    }

    fn send_response(&mut self, response: &DenyResponse) {
        let client = &mut *self.client;
        assert!(client.local_reply.is_none(), "two local replies");
        if client.upstream_headers.is_some() || self.released {
            // Only an allowed stream whose verdict could not be carried out is cut after
            // release (Envoy resets the upstream request).
            assert!(
                client.records.iter().any(Record::is_allowed),
                "local reply after release"
            );
            assert!(
                response.status >= 500 || (client.garbled_trailers && response.status == 400),
                "a cut stream blames the client"
            );
            client.cut = true;
        } else if client.headers_went_on && client.records.iter().any(Record::is_allowed) {
            // Allowed, its headers in the buffer filter: the reply drops them.
            client.cut = true;
        }
        client.local_reply = Some(response.clone());
    }

    fn resume(&mut self) -> Result<(), String> {
        self.fuzzed_failure()?;
        assert!(!self.in_callback, "resume from inside a callback");
        self.released |= release(self.client, self.host);
        Ok(())
    }

    fn fetch_upstream_token(&mut self, worker: &mut Worker, request: TokenRequest) {
        // A new call is sent at once from the stream's context.
        let id = self.id as u32;
        if let Some(request) = worker.calls.wait_for(request, id) {
            let callout = *self.next_callout;
            *self.next_callout += 1;
            let sender = crate::stream::calls::Sender::Stream(id);
            worker.calls.sent(callout, request, vec![id], sender);
            self.in_flight.push(callout);
        }
    }

    fn record(&mut self, record: &Record, _: Option<u64>) {
        self.client.records.push(record.clone());
    }

    fn warn(&mut self, _: &str) {}
}

/// Telemetry outside a stream: counted and logged nowhere.
pub(super) struct NoTelemetry;

impl Telemetry for NoTelemetry {
    fn count(&mut self, _: &str, _: u64) {}
    fn log(&mut self, _: Level, _: &str) {}
}
