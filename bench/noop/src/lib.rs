//! The proxy-wasm floor: what any wasm HTTP filter pays in Envoy's V8 (VM entry and exit for
//! each callback, one header read), and nothing else. `bench/run.py` measures brickgate and the
//! native filters against it.
//!
//! Built with `PROBE` set, it is a host-call probe instead: the floor plus one kind of host call
//! as brickgate makes it on a warm request (`time`: ten clock reads; `add`: nine header
//! additions, as brickgate's identity headers; `map`: the whole request header map read;
//! `property`: one filter-state write; `metrics`: three counter increments and a histogram
//! value). `make bench-probes` builds each and compares them with the floor (`bench/ab.py`).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

/// Unset for the floor.
const PROBE: Option<&str> = option_env!("PROBE");

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

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        // Read, as every auth filter must; the value is not used.
        std::hint::black_box(self.get_http_request_header("authorization"));
        if let Some(probe) = PROBE {
            host_calls(probe);
        }
        Action::Continue
    }
}

/// The probe's host calls (never in the floor).
fn host_calls(probe: &str) {
    match probe {
        "time" => {
            for _ in 0..10 {
                std::hint::black_box(hostcalls::get_current_time().ok());
            }
        }
        "add" => {
            for name in IDENTITY_HEADERS {
                let _ = hostcalls::add_map_value(
                    MapType::HttpRequestHeaders,
                    name,
                    "value-of-some-length",
                );
            }
        }
        "map" => {
            std::hint::black_box(hostcalls::get_map(MapType::HttpRequestHeaders).ok());
        }
        "property" => {
            // A one-field google.protobuf.Struct, as brickgate's record is (undeclared here).
            let _ =
                hostcalls::set_property(vec!["brickgate"], Some(&[10, 5, 10, 1, 97, 18, 0][..]));
        }
        "metrics" => {
            let (counter, histogram) = METRICS.with(|ids| {
                ids.get().unwrap_or_else(|| {
                    let defined = (
                        hostcalls::define_metric(MetricType::Counter, "probe.counter").unwrap_or(0),
                        hostcalls::define_metric(MetricType::Histogram, "probe.histogram")
                            .unwrap_or(0),
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
}
