//! HTTP context: one request, decided when its headers arrive (or, for OpenAI-style serving
//! routes that rules select by endpoint, once its body has arrived).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};

use super::request::{Next, Wait, not_ready, process, refuse};
use super::{Headers, SharedState};
use brickgate_core::error::{AuthError, Reason};

pub struct Filter {
    context_id: u32,
    shared: SharedState,
}

impl Filter {
    pub fn new(context_id: u32, shared: SharedState) -> Self {
        Filter { context_id, shared }
    }

    fn run(&mut self, body: Option<(&[u8], Headers)>) -> Action {
        let mut guard = self.shared.borrow_mut();
        let Some(shared) = guard.as_mut() else {
            refuse(&not_ready("brickgate is not configured"));
            return Action::Pause;
        };
        match process(shared, self.context_id, Wait::Fresh, body) {
            Next::Continue | Next::NeedBody => Action::Continue,
            Next::Pause | Next::NeedBodyAfterResume => Action::Pause,
        }
    }

    fn body_limit(&self) -> Option<usize> {
        let guard = self.shared.borrow();
        guard
            .as_ref()?
            .awaiting_body
            .get(&self.context_id)
            .map(|a| a.limit)
    }

    fn take_saved_headers(&self) -> Option<Headers> {
        let mut guard = self.shared.borrow_mut();
        guard
            .as_mut()?
            .awaiting_body
            .remove(&self.context_id)
            .map(|a| a.headers)
    }
}

impl Context for Filter {
    fn on_done(&mut self) -> bool {
        // A client that gave up while waiting is not resumed later.
        if let Some(shared) = self.shared.borrow_mut().as_mut() {
            shared.waiters.retain(|w| w.context_id != self.context_id);
            shared.awaiting_body.remove(&self.context_id);
        }
        true
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let action = self.run(None);
        // No body will come: decide on an empty one.
        if let Some(headers) = end_of_stream.then(|| self.take_saved_headers()).flatten() {
            return self.run(Some((&[], headers)));
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(limit) = self.body_limit() else {
            return Action::Continue;
        };
        if body_size > limit {
            self.take_saved_headers();
            let error = AuthError::new(
                Reason::BodyTooLarge,
                format!(
                    "request body exceeds the {limit} bytes brickgate reads to find the serving endpoint"
                ),
            );
            refuse(&error.to_response("brickgate"));
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause; // buffer until the whole body is here
        }
        let headers = self.take_saved_headers().unwrap_or_default();
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.run(Some((&body, headers)))
    }
}
