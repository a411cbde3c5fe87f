//! HTTP context: one request, decided when its headers arrive.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::SharedState;
use super::request::{Next, not_ready, process, refuse};

pub struct Filter {
    context_id: u32,
    shared: SharedState,
}

impl Filter {
    pub fn new(context_id: u32, shared: SharedState) -> Self {
        Filter { context_id, shared }
    }
}

impl Context for Filter {
    fn on_done(&mut self) -> bool {
        // A client that gave up while waiting for keys is not resumed later.
        if let Some(shared) = self.shared.borrow_mut().as_mut() {
            shared.waiters.retain(|w| w.context_id != self.context_id);
        }
        true
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut guard = self.shared.borrow_mut();
        let Some(shared) = guard.as_mut() else {
            refuse(&not_ready("brickgate is not configured"));
            return Action::Pause;
        };
        match process(shared, self.context_id, true) {
            Next::Continue => Action::Continue,
            Next::Pause => Action::Pause,
        }
    }
}
