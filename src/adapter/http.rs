//! HTTP context: translates one stream's callbacks into lifecycle events. What each callback
//! returns is the core's reply: a stream not yet allowed is held or refused, never released.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host_maps::{self, ReadError};
use super::stream::drive;
use super::{SharedState, Slot, StreamCell, log};
use brickgate_core::error::AuthError;
use brickgate_core::stream::{Event, Reply};

pub struct Filter {
    context_id: u32,
    shared: SharedState,
    stream: StreamCell,
    /// How much of the host's buffered body this context has read (the host reports the
    /// whole buffered size to each body callback after a `Pause`, and only the new bytes after
    /// the stream went on).
    body_read: usize,
    /// Refused because the plugin has no configuration: later callbacks only hold (one local
    /// reply per stream).
    refused_unconfigured: bool,
}

impl Filter {
    pub fn new(context_id: u32, shared: SharedState) -> Self {
        Filter {
            context_id,
            shared,
            stream: Rc::new(RefCell::new(Slot::default())),
            body_read: 0,
            refused_unconfigured: false,
        }
    }

    fn handle(&mut self, event: Event<'_>) -> Action {
        let Ok(mut guard) = self.shared.try_borrow_mut() else {
            return Action::Pause;
        };
        let Some(shared) = guard.as_mut() else {
            if !self.refused_unconfigured {
                self.refused_unconfigured = true;
                refuse_unconfigured();
            }
            return Action::Pause;
        };
        match drive(shared, self.context_id, &self.stream, event) {
            Reply::Continue => Action::Continue,
            Reply::Pause => Action::Pause,
        }
    }

    fn wants_body_bytes(&self) -> bool {
        self.stream
            .try_borrow()
            .is_ok_and(|slot| slot.stream.wants_body_bytes())
    }

    /// Whether the host passed on its buffered body since the last body callback
    /// (`body_rules: buffer_filter` lets each chunk go on): read the new buffer from its start.
    fn take_body_released(&mut self) -> bool {
        self.stream
            .try_borrow_mut()
            .is_ok_and(|mut slot| std::mem::take(&mut slot.body_released))
    }
}

/// No configuration (it was refused, or the VM is still starting): fail closed.
fn refuse_unconfigured() {
    let response = AuthError::internal("brickgate is not configured").to_response("brickgate");
    let headers = super::stream::pairs(&response.headers);
    if hostcalls::send_http_response(response.status, headers, Some(&response.body)).is_err() {
        log(LogLevel::Error, "brickgate: cannot send the refusal");
    }
}

impl Context for Filter {
    /// The answer to a token call this stream sent: the SDK hands it to the sending context,
    /// and it is for every stream that waits for it.
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if let Ok(mut guard) = self.shared.try_borrow_mut()
            && let Some(shared) = guard.as_mut()
        {
            super::upstream::on_call_response(shared, token, num_headers, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        // A client that gave up is not woken later; token calls go on for the others.
        if let Ok(mut guard) = self.shared.try_borrow_mut()
            && let Some(shared) = guard.as_mut()
        {
            if self
                .stream
                .try_borrow()
                .is_ok_and(|slot| slot.stream.is_held())
            {
                shared.held.remove(&self.context_id);
            }
            shared.worker.calls.forget(self.context_id);
        }
        true
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match host_maps::read(MapType::HttpRequestHeaders) {
            Ok(headers) => self.handle(Event::RequestHeaders {
                headers,
                end_of_stream,
            }),
            Err(ReadError::NotUtf8 { name, headers }) => {
                self.handle(Event::UnreadableHeaders { name, headers })
            }
            Err(ReadError::Host(why)) => self.handle(Event::ReadFailure(format!(
                "cannot read the request headers: {why}"
            ))),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.take_body_released() {
            self.body_read = 0;
        }
        let bytes = if self.wants_body_bytes() && body_size > self.body_read {
            let new = body_size - self.body_read;
            match hostcalls::get_buffer(BufferType::HttpRequestBody, self.body_read, new) {
                Ok(bytes) => {
                    self.body_read = body_size;
                    bytes.unwrap_or_default()
                }
                Err(status) => {
                    return self.handle(Event::ReadFailure(format!(
                        "cannot read the request body: {status:?}"
                    )));
                }
            }
        } else {
            Vec::new()
        };
        self.handle(Event::RequestBody {
            bytes: &bytes,
            end_of_stream,
        })
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        match host_maps::read(MapType::HttpRequestTrailers) {
            Ok(trailers) => self.handle(Event::RequestTrailers { trailers }),
            Err(ReadError::NotUtf8 { name, .. }) => self.handle(Event::UnreadableTrailers { name }),
            Err(ReadError::Host(why)) => self.handle(Event::ReadFailure(format!(
                "cannot read the request trailers: {why}"
            ))),
        }
    }
}
