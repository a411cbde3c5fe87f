//! The fake host: Envoy's pause semantics under each `Host` (the held path, or no flag and the
//! buffer filter after brickgate), and the adapter's `drive`.

use super::*;

impl World {
    pub(super) fn new(setup: Setup, host: Host) -> World {
        let config = config(setup, host);
        let workers = (0..2)
            .map(|vm| Worker {
                store: JwksStore::new(&config, vm + 1),
                cache: TokenCache::new(16, 1 << 16),
                tokens: UpstreamTokens::default(),
                calls: TokenCalls::default(),
                fetch: None,
                in_flight: Vec::new(),
                budget: BodyBudget::new(MAX_HELD_BODY_BYTES),
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
            engine: Engine::new(config, Box::new(InWasmVerifier)),
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

    /// The adapter's `drive`: step, carry out the actions in order; a host call that fails
    /// stops them and is fed back as [`Event::HostFailure`]. `in_callback`: the event is the
    /// stream's own callback, whose reply the host acts on.
    pub(super) fn drive(&mut self, id: usize, event: Event<'_>, in_callback: bool) {
        let mut event = Some(event);
        let mut reply = Reply::Pause;
        let mut released = false;
        for _ in 0..2 {
            let Some(current) = event.take() else { break };
            let client = &mut self.clients[id];
            let worker = &mut self.workers[client.worker];
            let mut env = Env {
                engine: &self.engine,
                store: &mut worker.store,
                cache: &mut worker.cache,
                upstream_tokens: &mut worker.tokens,
                shared: &self.shared,
                now_ms: self.now_ms,
                fingerprint: true,
                body_budget: &worker.budget,
            };
            let step = client.stream.step(&mut env, current);
            reply = step.reply;
            for action in step.actions {
                let host_call = matches!(
                    action,
                    HostAction::SetRequestHeaders(_)
                        | HostAction::Publish(_)
                        | HostAction::SetRequestTrailers(_)
                        | HostAction::Resume
                );
                if host_call && std::mem::take(&mut self.fail_next_call) {
                    client.host_failed = true;
                    event = Some(Event::HostFailure("fuzzed host call failure".into()));
                    break;
                }
                match action {
                    HostAction::SetRequestHeaders(headers) => {
                        assert!(
                            client.upstream_headers.is_none() && !client.headers_went_on,
                            "headers changed after release"
                        );
                        client.pending_headers = Some(headers.to_headers());
                    }
                    HostAction::Publish(_) => assert!(
                        client.upstream_headers.is_none() && !client.headers_went_on,
                        "principal published after the headers went on"
                    ),
                    HostAction::SetRequestTrailers(trailers) => {
                        if client.pending_trailers.is_some() {
                            client.pending_trailers = Some(trailers);
                        }
                    }
                    HostAction::SendResponse(response) => {
                        assert!(client.local_reply.is_none(), "two local replies");
                        if client.upstream_headers.is_some() || released {
                            // Only an allowed stream whose verdict could not be carried out is
                            // cut after release (Envoy resets the upstream request).
                            assert!(
                                client.records.iter().any(Record::is_allowed),
                                "local reply after release"
                            );
                            assert!(
                                response.status >= 500
                                    || (client.garbled_trailers && response.status == 400),
                                "a cut stream blames the client"
                            );
                            client.cut = true;
                        } else if client.headers_went_on
                            && client.records.iter().any(Record::is_allowed)
                        {
                            // Allowed, its headers in the buffer filter: the reply drops them.
                            client.cut = true;
                        }
                        client.local_reply = Some(response);
                    }
                    HostAction::Resume => {
                        assert!(!in_callback, "resume from inside a callback");
                        released |= release(client, self.host);
                    }
                    HostAction::FetchUpstreamToken(request) => {
                        // A new call is sent at once from the stream's context.
                        if let Some(request) = worker.calls.wait_for(request, id as u32) {
                            let callout = self.next_callout;
                            self.next_callout += 1;
                            let sender = crate::stream::calls::Sender::Stream(id as u32);
                            worker.calls.sent(callout, request, vec![id as u32], sender);
                            worker.in_flight.push(callout);
                        }
                    }
                    HostAction::Record(record) => client.records.push(*record),
                    HostAction::Warn(_) => {}
                }
            }
        }
        let client = &mut self.clients[id];
        if in_callback && reply == Reply::Continue && client.local_reply.is_none() {
            released |= release(client, self.host);
        }
        if client.stream.phase() == "waiting_for_keys" && client.keys_wait_since.is_none() {
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
            let bytes = if client.stream.wants_body_bytes() {
                bytes
            } else {
                Vec::new()
            };
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
