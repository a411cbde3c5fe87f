//! The ABI probe (feature `abi-probe`, never shipped): one filter that exercises every binding,
//! chosen per request by the `x-probe` header, so tests/e2e/test_native_abi.py can check each one
//! in the real Envoy binary. The filter config is the name of the cluster for callouts.
//!
//! Panics here are deliberate (`x-probe: panic`); the rest answers what it saw so the test can
//! assert it.
#![allow(clippy::panic)]

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use crate::envoy::{
    BodyStatus, CalloutDone, ConfigHandle, ConfigScheduler, CounterId, Filter, FilterConfig,
    FilterHandle, HeaderError, HeadersStatus, HistogramId, LogLevel, MetricsError, TrailersStatus,
    log_enabled,
};

const SCHEDULED_EVENT: u64 = 7;
const CONFIG_EVENT: u64 = 11;
const CALLOUT_TIMEOUT_MS: u64 = 2_000;

#[derive(Clone, Copy)]
struct Counters {
    requests: CounterId,
    body_bytes: HistogramId,
    /// Config hooks (scheduled, callout done) seen on the thread that built the config.
    config_on_main: CounterId,
    config_off_main: CounterId,
    /// Stream hooks seen on another thread than the main one.
    stream_off_main: CounterId,
    /// A config callout answered 200 with the id Envoy gave it (and a config histogram took a value).
    config_callout_ok: CounterId,
    /// define_counter outside new_config answered Frozen.
    frozen_after_init: CounterId,
}

struct ProbeConfig {
    cluster: String,
    main_thread: ThreadId,
    counters: Counters,
    scheduler: Option<Arc<ConfigScheduler>>,
    /// The id Envoy gave the last config callout (main thread only; the lock is for `Sync`).
    config_callout: Mutex<Option<u64>>,
}

pub(crate) fn new_config(
    name: &str,
    config: &[u8],
    handle: &ConfigHandle,
) -> Result<Arc<dyn FilterConfig>, String> {
    let cluster =
        String::from_utf8(config.to_vec()).map_err(|_| "probe config is not UTF-8".to_string())?;
    let define = |name: &str| {
        handle
            .define_counter(name)
            .map_err(|err| format!("define_counter {name}: {err:?}"))
    };
    let counters = Counters {
        requests: define("probe_requests")?,
        body_bytes: handle
            .define_histogram("probe_body_bytes")
            .map_err(|err| format!("{err:?}"))?,
        config_on_main: define("probe_config_hook_on_main")?,
        config_off_main: define("probe_config_hook_off_main")?,
        stream_off_main: define("probe_stream_hook_off_main")?,
        config_callout_ok: define("probe_config_callout_ok")?,
        frozen_after_init: define("probe_frozen_after_init")?,
    };
    if log_enabled(LogLevel::Info) {
        handle.log(
            LogLevel::Info,
            &format!("abi probe config {name} loaded (callout cluster {cluster})"),
        );
    }
    Ok(Arc::new(ProbeConfig {
        cluster,
        main_thread: std::thread::current().id(),
        counters,
        scheduler: handle.scheduler().map(Arc::new),
        config_callout: Mutex::new(None),
    }))
}

impl ProbeConfig {
    fn count_thread(&self, config: &ConfigHandle) {
        let on_main = std::thread::current().id() == self.main_thread;
        let counter = if on_main {
            self.counters.config_on_main
        } else {
            self.counters.config_off_main
        };
        config.increment_counter(counter, 1);
    }
}

impl FilterConfig for ProbeConfig {
    fn new_filter(&self, filter: &FilterHandle) -> Box<dyn Filter> {
        if std::thread::current().id() != self.main_thread {
            filter.increment_counter(self.counters.stream_off_main, 1);
        }
        Box::new(Probe {
            cluster: self.cluster.clone(),
            counters: self.counters,
            config_scheduler: self.scheduler.clone(),
            mode: String::new(),
            worker: filter.worker_index(),
            callout_id: None,
        })
    }

    fn on_scheduled(&self, config: &ConfigHandle, event_id: u64) {
        self.count_thread(config);
        if config.define_counter("probe_too_late") == Err(MetricsError::Frozen) {
            config.increment_counter(self.counters.frozen_after_init, 1);
        }
        let headers = [
            (":method", "GET"),
            (":path", "/config-callout"),
            ("host", "upstream"),
        ];
        match config.http_callout(&self.cluster, &headers, b"", CALLOUT_TIMEOUT_MS) {
            Ok(id) => {
                if let Ok(mut pending) = self.config_callout.lock() {
                    *pending = Some(id);
                }
            }
            Err(err) => config.log(
                LogLevel::Error,
                &format!("probe config callout for event {event_id} refused: {err:?}"),
            ),
        }
    }

    fn on_callout_done(&self, config: &ConfigHandle, callout: CalloutDone<'_>) {
        self.count_thread(config);
        let expected = self.config_callout.lock().ok().and_then(|pending| *pending);
        // record_histogram from the config must succeed too for the callout to count as seen.
        let recorded = config.record_histogram(self.counters.body_bytes, callout.body.len() as u64);
        if callout.status() == Some(200) && expected == Some(callout.callout_id) && recorded {
            config.increment_counter(self.counters.config_callout_ok, 1);
        }
    }
}

struct Probe {
    cluster: String,
    counters: Counters,
    config_scheduler: Option<Arc<ConfigScheduler>>,
    mode: String,
    worker: u32,
    /// The id Envoy gave the stream's callout, matched against the one its answer carries.
    callout_id: Option<u64>,
}

fn reply(filter: &FilterHandle, status: u32, headers: &[(&str, &str)], body: &str) {
    filter.send_response(status, headers, body.as_bytes(), "abi_probe");
}

impl Probe {
    /// Answers the request with the names (and values) of its headers, one per line.
    fn echo(&self, filter: &FilterHandle) -> HeadersStatus {
        let echoed = filter.request_header_values("x-probe-in");
        let echoed = echoed
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        match filter.request_headers() {
            Ok(headers) => {
                let lines: Vec<String> = headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {value}"))
                    .collect();
                reply(filter, 200, &[("x-echo", &echoed)], &lines.join("\n"));
            }
            Err(HeaderError::NameNotUtf8 { index }) => {
                reply(filter, 200, &[], &format!("name-not-utf8 {index}"))
            }
            Err(HeaderError::ValueNotUtf8 { name }) => {
                reply(filter, 200, &[], &format!("value-not-utf8 {name}"))
            }
        }
        HeadersStatus::StopIteration
    }

    fn edit(&self, filter: &FilterHandle) -> HeadersStatus {
        filter.set_request_header("x-set", "set-value");
        filter.add_request_header("x-added", "one");
        filter.add_request_header("x-added", "two");
        filter.remove_request_header("x-remove");
        filter.clear_route_cache();
        HeadersStatus::Continue
    }

    fn callout(&mut self, filter: &FilterHandle, cluster: &str) -> HeadersStatus {
        let headers = [
            (":method", "GET"),
            (":path", "/callout"),
            ("host", "upstream"),
        ];
        match filter.http_callout(cluster, &headers, b"", CALLOUT_TIMEOUT_MS) {
            Ok(id) => {
                self.callout_id = Some(id);
                HeadersStatus::StopIteration
            }
            Err(err) => {
                reply(filter, 503, &[], &format!("{err:?}"));
                HeadersStatus::StopIteration
            }
        }
    }

    fn schedule(&self, filter: &FilterHandle) -> HeadersStatus {
        let Some(scheduler) = filter.scheduler() else {
            reply(filter, 500, &[], "no scheduler");
            return HeadersStatus::StopIteration;
        };
        // Commits from a thread of ours; the scheduler is dropped (deleted) there too.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            scheduler.commit(SCHEDULED_EVENT);
        });
        HeadersStatus::StopIteration
    }

    fn metadata(&self, filter: &FilterHandle) -> HeadersStatus {
        let stored = filter.set_filter_state_bytes("brickgate.probe", b"fs-value");
        filter.set_dynamic_metadata_string("brickgate", "decision", "allow");
        filter.add_dynamic_metadata_list_string("brickgate", "scopes", "a");
        filter.add_dynamic_metadata_list_string("brickgate", "scopes", "b");
        filter.set_request_header(
            "x-filter-state-stored",
            if stored { "true" } else { "false" },
        );
        HeadersStatus::Continue
    }
}

impl Filter for Probe {
    fn on_request_headers(&mut self, filter: &FilterHandle, end_of_stream: bool) -> HeadersStatus {
        filter.increment_counter(self.counters.requests, 1);
        let mode = filter.request_header_values("x-probe");
        self.mode = mode
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default();
        match self.mode.as_str() {
            "echo" => self.echo(filter),
            "edit" => self.edit(filter),
            "body" | "trailers" if !end_of_stream => HeadersStatus::StopIteration,
            "body" => {
                reply(filter, 200, &[], "no body");
                HeadersStatus::StopIteration
            }
            "callout" => {
                let cluster = self.cluster.clone();
                self.callout(filter, &cluster)
            }
            "callout-missing" => self.callout(filter, "no-such-cluster"),
            "schedule" | "panic-scheduled" => self.schedule(filter),
            "metadata" => self.metadata(filter),
            "config" => {
                if let Some(scheduler) = &self.config_scheduler {
                    scheduler.commit(CONFIG_EVENT);
                }
                reply(filter, 202, &[], "config event committed");
                HeadersStatus::StopIteration
            }
            "panic" => panic!("abi probe: deliberate panic in on_request_headers"),
            _ => HeadersStatus::Continue,
        }
    }

    fn on_request_body(&mut self, filter: &FilterHandle, end_of_stream: bool) -> BodyStatus {
        match self.mode.as_str() {
            // Held for on_request_trailers, which reads its size.
            "trailers" => return BodyStatus::StopAndBuffer,
            "body" => {}
            _ => return BodyStatus::Continue,
        }
        if !end_of_stream {
            return BodyStatus::StopAndBuffer;
        }
        let body = filter.request_body();
        filter.record_histogram(self.counters.body_bytes, body.len() as u64);
        let summary = format!(
            "size={} copied={} buffered={} received={} received_is_buffered={}",
            filter.request_body_size(),
            body.len(),
            filter.buffered_request_body().len(),
            filter.received_request_body().len(),
            filter.received_is_buffered_request_body(),
        );
        reply(filter, 200, &[], &summary);
        BodyStatus::StopNoBuffer
    }

    fn on_request_trailers(&mut self, filter: &FilterHandle) -> TrailersStatus {
        if self.mode != "trailers" {
            return TrailersStatus::Continue;
        }
        let set = filter.set_request_trailer("x-trailer-added", "added");
        let body = match filter.request_trailers() {
            Some(Ok(trailers)) => trailers
                .iter()
                .map(|(n, v)| format!("{n}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(Err(err)) => format!("{err:?}"),
            None => "no trailers".to_string(),
        };
        let body_size = filter.request_body_size().to_string();
        reply(
            filter,
            200,
            &[
                ("x-trailer-set", if set { "true" } else { "false" }),
                ("x-body-size", &body_size),
            ],
            &body,
        );
        TrailersStatus::StopIteration
    }

    fn on_scheduled(&mut self, filter: &FilterHandle, event_id: u64) {
        if self.mode == "panic-scheduled" {
            panic!("abi probe: deliberate panic in on_scheduled");
        }
        let same_worker = filter.worker_index() == self.worker;
        filter.set_request_header(
            "x-scheduled",
            &format!("{event_id} same-worker={same_worker}"),
        );
        filter.continue_decoding();
    }

    fn on_callout_done(&mut self, filter: &FilterHandle, callout: CalloutDone<'_>) {
        let status = callout
            .status()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "none".to_string());
        let result = format!("{:?}", callout.result);
        let body = String::from_utf8_lossy(callout.body).into_owned();
        let id_matches = if self.callout_id == Some(callout.callout_id) {
            "true"
        } else {
            "false"
        };
        let headers = [
            ("x-callout-status", status.as_str()),
            ("x-callout-result", &result),
            ("x-callout-id-matches", id_matches),
        ];
        reply(filter, 200, &headers, &body);
    }

    fn on_stream_complete(&mut self, filter: &FilterHandle) {
        if self.mode == "metadata" {
            filter.set_dynamic_metadata_string("brickgate", "completed", "yes");
        }
    }
}
