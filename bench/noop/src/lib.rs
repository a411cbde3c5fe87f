//! The proxy-wasm floor: what any wasm HTTP filter pays in Envoy's V8 (VM entry and exit for
//! each callback, one header read), and nothing else. `bench/run.py` measures brickgate and the
//! native filters against it.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Read, as every auth filter must; the value is not used.
        std::hint::black_box(self.get_http_request_header("authorization"));
        Action::Continue
    }
}
