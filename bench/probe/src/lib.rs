//! Host-call probes: what the floor (bench/noop: read `authorization`, continue) costs Envoy
//! with one kind of host call added, as brickgate makes it on a warm request. `PROBE` (at build
//! time) picks it: `time` (10 clock reads), `add` (9 header additions, as brickgate's identity
//! headers), `map` (the whole request header map read), `property` (one filter-state write),
//! `metrics` (3 counter increments and a histogram value). `make bench-probes` builds each and
//! compares them with `bench/ab.py`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Probe) });
}}

const PROBE: &str = env!("PROBE");

const IDENTITY_HEADERS: [&str; 9] = [
    "x-brickgate-subject",
    "x-brickgate-issuer",
    "x-brickgate-provider",
    "x-brickgate-client-id",
    "x-brickgate-scopes",
    "x-brickgate-groups",
    "x-brickgate-principal-kind",
    "x-brickgate-token-id",
    "x-brickgate-rule",
];

thread_local! {
    static METRICS: std::cell::Cell<Option<(u32, u32)>> = const { std::cell::Cell::new(None) };
}

struct Probe;

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        std::hint::black_box(self.get_http_request_header("authorization"));
        match PROBE {
            "time" => {
                for _ in 0..10 {
                    std::hint::black_box(hostcalls::get_current_time().ok());
                }
            }
            "add" => {
                for name in IDENTITY_HEADERS {
                    let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, "value-of-some-length");
                }
            }
            "map" => {
                std::hint::black_box(hostcalls::get_map(MapType::HttpRequestHeaders).ok());
            }
            "property" => {
                // A one-field google.protobuf.Struct, as brickgate's record is (undeclared here).
                let _ = hostcalls::set_property(vec!["brickgate"], Some(&[10, 5, 10, 1, 97, 18, 0][..]));
            }
            "metrics" => {
                let (counter, histogram) = METRICS.with(|ids| {
                    ids.get().unwrap_or_else(|| {
                        let defined = (
                            hostcalls::define_metric(MetricType::Counter, "probe.counter").unwrap_or(0),
                            hostcalls::define_metric(MetricType::Histogram, "probe.histogram").unwrap_or(0),
                        );
                        ids.set(Some(defined));
                        defined
                    })
                });
                for _ in 0..3 {
                    let _ = hostcalls::increment_metric(counter, 1);
                }
                let _ = hostcalls::record_metric(histogram, 5);
            }
            _ => {}
        }
        Action::Continue
    }
}
