//! What happens to the world: clients start and send, workers tick and wake, the IdP and the
//! workspace answer, and at the end everything drains.

use super::host::NoTelemetry;
use super::*;

impl World {
    pub(super) fn start(&mut self, input: &mut Input<'_>) {
        if self.clients.len() >= MAX_STREAMS {
            return;
        }
        let worker = input.below(2);
        let kind = *input.choose(&KINDS);
        let route = *input.choose(&[Route::JobsList, Route::Chat, Route::JobsRunNow]);
        let model = *input.choose(&MODELS);
        let body = body_of(route, model);
        let pieces = if body.is_empty() {
            0
        } else {
            1 + input.below(3)
        };
        let mut chunks = Vec::new();
        let mut left = body.len();
        for piece in 0..pieces {
            let size = if piece + 1 == pieces {
                left
            } else {
                left.min(1 + input.below(40))
            };
            chunks.push(size);
            left -= size;
        }
        // One byte picks both (older corpus inputs decode as before).
        let ending_choice = if body.is_empty() { 0 } else { input.byte() };
        let ending = if !body.is_empty() && ending_choice.is_multiple_of(3) {
            Ending::Trailers
        } else {
            Ending::EndOfStream
        };
        let received_is_buffer = (ending_choice / 3) % 2 == 1;
        let path = match route {
            Route::JobsList => "/api/2.1/jobs/list",
            Route::Chat => CHAT,
            Route::JobsRunNow => "/api/2.1/jobs/run-now",
        };
        let method = if route == Route::JobsList {
            "GET"
        } else {
            "POST"
        };
        let authorization = authorization(kind);
        let mut headers: Headers = vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), "gw.test".into()),
            ("x-brickgate-subject".into(), "spoofed".into()),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization".into(), value.clone()));
        }
        let end_of_stream = chunks.is_empty() && ending == Ending::EndOfStream;
        self.clients.push(Client {
            worker,
            kind,
            route,
            authorization,
            body,
            chunks,
            sent_chunks: 0,
            ending,
            trailers_sent: false,
            pending_headers: Some(headers.clone()),
            pending_body: Vec::new(),
            pending_trailers: None,
            upstream_headers: None,
            upstream_body: Vec::new(),
            upstream_trailers: None,
            in_buffer: (None, Vec::new(), None),
            headers_went_on: false,
            end_delivered: false,
            queued_body: None,
            queued_trailers: None,
            local_reply: None,
            records: Vec::new(),
            keys_wait_since: None,
            headers_at: self.now_ms,
            body_events: 0,
            cut: false,
            host_failed: false,
            garbled_headers: false,
            garbled_trailers: false,
            slot: Slot::default(),
            body_cursor: BodyCursor::default(),
            core_body: Vec::new(),
            received_is_buffer,
        });
        let id = self.clients.len() - 1;
        if std::mem::take(&mut self.garble_next) {
            self.clients[id].garbled_headers = true;
            let name = "x-note".to_string();
            self.drive(id, Event::UnreadableHeaders { name, headers }, true);
            return;
        }
        self.drive(
            id,
            Event::RequestHeaders {
                headers,
                end_of_stream,
            },
            true,
        );
    }

    /// The client sends its next body chunk (or, with everything sent, its trailers).
    pub(super) fn send_next(&mut self, id: usize) {
        let held_back = self.held_back(id);
        let client = &mut self.clients[id];
        if client.local_reply.is_some() || client.complete() {
            return;
        }
        if client.sent_chunks == client.chunks.len() {
            client.trailers_sent = true;
            let trailers: Headers = TRAILERS
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            client.pending_trailers = Some(trailers.clone());
            if held_back {
                let garbled = std::mem::take(&mut self.garble_next);
                client.garbled_trailers |= garbled;
                client.queued_trailers = Some((trailers, garbled));
                return;
            }
            client.end_delivered = true;
            if std::mem::take(&mut self.garble_next) {
                // Had the stream gone on, the host would pass these on as they came.
                client.garbled_trailers = true;
                let name = "x-trace".to_string();
                self.drive(id, Event::UnreadableTrailers { name }, true);
                return;
            }
            self.drive(id, Event::RequestTrailers { trailers }, true);
            return;
        }
        let start: usize = client.chunks[..client.sent_chunks].iter().sum();
        let size = client.chunks[client.sent_chunks];
        client.sent_chunks += 1;
        let chunk = client.body[start..start + size].to_vec();
        let end_of_stream =
            client.sent_chunks == client.chunks.len() && client.ending == Ending::EndOfStream;
        let buffered = client.pending_body.len();
        client.pending_body.extend_from_slice(&chunk);
        client.body_events += 1;
        if held_back {
            client
                .queued_body
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&chunk);
            return;
        }
        client.end_delivered |= end_of_stream;
        let bytes = self.body_event_bytes(id, buffered, &chunk, end_of_stream);
        self.drive(
            id,
            Event::RequestBody {
                bytes: &bytes,
                end_of_stream,
            },
            true,
        );
    }

    /// The root context's tick on one worker: adopt and start fetches, send token calls, wake.
    pub(super) fn tick(&mut self, w: usize) {
        let vm = &mut self.workers[w];
        let (fetches, reported) = vm.worker.store.tick(&self.shared, self.now_ms);
        worker::report_store_events(&vm.worker, &reported, &mut NoTelemetry);
        if let Some(fetch) = fetches.into_iter().next() {
            assert!(vm.fetch.is_none(), "two fetches in flight on one worker");
            vm.fetch = Some(fetch);
        }
        for (request, waiting) in vm.worker.calls.take_queued() {
            let callout = self.next_callout;
            self.next_callout += 1;
            vm.worker.calls.sent(
                callout,
                request,
                waiting,
                crate::stream::calls::Sender::Root,
            );
            vm.in_flight.push(callout);
        }
        self.wake(w);
    }

    /// Wakes the held streams of a worker for which something happened, then checks that none
    /// is left past its deadline.
    pub(super) fn wake(&mut self, w: usize) {
        for id in 0..self.clients.len() {
            let client = &self.clients[id];
            if client.worker == w
                && client.local_reply.is_none()
                && client
                    .slot
                    .stream
                    .wants_wake(&self.workers[w].worker.store, self.now_ms)
            {
                self.drive(id, Event::Wake, false);
            }
        }
        for client in self.clients.iter().filter(|c| c.worker == w) {
            if let Some(since) = client.keys_wait_since
                && client.slot.stream.phase() == "waiting_for_keys"
            {
                assert!(
                    self.now_ms < since + WAIT_FOR_KEYS_MS,
                    "held for keys past its deadline"
                );
            }
            if client.slot.stream.phase() == "reading_body"
                && client.body_events == 0
                && self.host == Host::HoldHeaders
            {
                assert!(
                    self.now_ms < client.headers_at + FIRST_BODY_WAIT_MS,
                    "held for a body that never came past its deadline"
                );
            }
            if client.slot.stream.wants_body_bytes() {
                assert!(
                    self.now_ms < client.headers_at + BODY_DEADLINE_MS,
                    "held for a body past its deadline"
                );
            }
        }
    }

    pub(super) fn answer_fetch(&mut self, w: usize, choice: u8) {
        let Some(fetch) = self.workers[w].fetch.take() else {
            return;
        };
        let current = ROTATION[self.published];
        let outcome = match choice % 5 {
            0 | 1 => FetchOutcome::Response {
                status: 200,
                body: jwks(current),
                max_age_s: None,
            },
            2 => FetchOutcome::Response {
                status: 500,
                body: b"oops".to_vec(),
                max_age_s: None,
            },
            3 => FetchOutcome::Response {
                status: 200,
                body: b"{\"keys\": 7".to_vec(),
                max_age_s: None,
            },
            _ => FetchOutcome::TransportFailure("reset".into()),
        };
        let vm = &mut self.workers[w];
        let (more, reported) =
            vm.worker
                .store
                .on_fetch_outcome(&self.shared, fetch.provider, outcome, self.now_ms);
        worker::report_store_events(&vm.worker, &reported, &mut NoTelemetry);
        vm.fetch = more.into_iter().next();
        self.wake(w);
    }

    pub(super) fn answer_token_call(&mut self, w: usize, choice: u8) {
        if self.workers[w].in_flight.is_empty() {
            return;
        }
        let callout = self.workers[w].in_flight.remove(0);
        self.issued += 1;
        let ok = format!(
            r#"{{"access_token": "dbx-{}", "expires_in": 3600}}"#,
            self.issued
        );
        let (status, body): (u32, &[u8]) = match choice % 4 {
            0 | 1 => (200, ok.as_bytes()),
            2 => (503, b"upstream connect error"),
            _ => (0, b""),
        };
        let worker = &mut self.workers[w].worker;
        let Some(settled) = worker.token_answered(
            callout,
            status,
            body,
            &self.shared,
            self.now_ms,
            &mut NoTelemetry,
        ) else {
            return;
        };
        for stream in settled.streams {
            let id = stream as usize;
            if self.clients[id].local_reply.is_none() {
                self.drive(id, Event::UpstreamToken(settled.result.clone()), false);
            }
        }
    }

    /// The client finishes, the IdP and the workspace stop answering, time runs out: every
    /// stream must then be answered.
    pub(super) fn drain(&mut self) {
        for id in 0..self.clients.len() {
            while !self.clients[id].complete() && self.clients[id].local_reply.is_none() {
                self.send_next(id);
            }
        }
        for _ in 0..6 {
            self.now_ms += FIRST_BODY_WAIT_MS.max(WAIT_FOR_KEYS_MS);
            for w in 0..self.workers.len() {
                self.tick(w);
                self.answer_fetch(w, 4);
                while !self.workers[w].in_flight.is_empty() {
                    self.answer_token_call(w, 3);
                }
                self.tick(w);
                while !self.workers[w].in_flight.is_empty() {
                    self.answer_token_call(w, 3);
                }
            }
        }
        for (id, client) in self.clients.iter().enumerate() {
            assert!(
                client.answered(),
                "stream {id} never answered: phase {}, {client:?}",
                client.slot.stream.phase()
            );
            // A cut stream's upstream request is reset: what it got is not a request.
            if client.upstream_headers.is_some() && !client.cut {
                assert_eq!(
                    client.upstream_body, client.body,
                    "the upstream got another body"
                );
            }
            self.check_records(id);
        }
        // Every stream has ended: no body is still counted against its VM.
        for (w, vm) in self.workers.iter().enumerate() {
            assert_eq!(
                vm.worker.body_budget.held(),
                0,
                "worker {w} still counts held body bytes"
            );
        }
    }
}
