//! The safe face of the ABI: what the brickgate adapter (and the ABI probe) program against.
//!
//! Envoy drives three objects, each with its own thread rule (checked in the 1.40 binary by
//! tests/e2e/test_native_abi.py):
//! - a **config** per filter configuration, built and destroyed on the main thread; the
//!   module's [`FilterConfig`] is shared (`Send + Sync`) because Envoy asks it for a new filter on
//!   every worker thread. Main-thread work gets a [`ConfigHandle`] by reference in the hooks that run
//!   there ([`FilterConfigFactory::new_config`], [`FilterConfig::on_scheduled`],
//!   [`FilterConfig::on_callout_done`]); it cannot leave them.
//! - a **filter** per HTTP stream, on that stream's worker thread; every hook lends it a
//!   [`FilterHandle`] for the hook's duration.
//! - **schedulers** ([`ConfigScheduler`], [`StreamScheduler`]): `Send + Sync` handles any thread may
//!   use to wake the config (main thread) or a stream (its worker) with an event id.
//!
//! Registration: the crate root (`lib.rs`) names the one [`NewConfigFn`] the module serves,
//! `MODULE_FACTORY`; the adapter replaces `unbuilt::new_config` there with its own.

mod config;
mod filter;

use std::sync::Arc;

pub use config::{ConfigHandle, ConfigScheduler, CounterId, HistogramId, MetricsError};
pub use filter::{FilterHandle, HeaderError, StreamScheduler};

use crate::abi::types::{CEnum, callout_result, log_level};

/// Builds the module's config for one Envoy filter configuration (main thread).
///
/// `name` is the filter config's `filter_name`, `config` its `filter_config` (a StringValue's or
/// BytesValue's bytes as they are; a Struct as JSON). An `Err` refuses the configuration: Envoy
/// then rejects it and logs "Failed to initialize dynamic module"; the message goes to Envoy's log.
pub type NewConfigFn =
    fn(name: &str, config: &[u8], handle: &ConfigHandle) -> Result<Arc<dyn FilterConfig>, String>;

/// The factory as a trait, for adapters that prefer one: `MODULE_FACTORY = <T as FilterConfigFactory>::new_config`.
pub trait FilterConfigFactory {
    fn new_config(
        name: &str,
        config: &[u8],
        handle: &ConfigHandle,
    ) -> Result<Arc<dyn FilterConfig>, String>;
}

/// One filter configuration, shared by every worker.
pub trait FilterConfig: Send + Sync {
    /// A new stream (on its worker thread).
    fn new_filter(&self, filter: &FilterHandle) -> Box<dyn Filter>;
    /// An event committed through a [`ConfigScheduler`] (main thread).
    fn on_scheduled(&self, _config: &ConfigHandle, _event_id: u64) {}
    /// The answer to [`ConfigHandle::http_callout`] (main thread). `headers` and `body` are copies.
    fn on_callout_done(&self, _config: &ConfigHandle, _callout: CalloutDone<'_>) {}
}

/// One HTTP stream. Every hook runs on the stream's worker thread.
///
/// Request hooks must be answered; response hooks continue by default. A hook that sends a local
/// reply ([`FilterHandle::send_response`]) should stop iteration.
pub trait Filter {
    fn on_request_headers(&mut self, filter: &FilterHandle, end_of_stream: bool) -> HeadersStatus;
    fn on_request_body(&mut self, filter: &FilterHandle, end_of_stream: bool) -> BodyStatus;
    fn on_request_trailers(&mut self, filter: &FilterHandle) -> TrailersStatus;
    fn on_response_headers(
        &mut self,
        _filter: &FilterHandle,
        _end_of_stream: bool,
    ) -> HeadersStatus {
        HeadersStatus::Continue
    }
    fn on_response_body(&mut self, _filter: &FilterHandle, _end_of_stream: bool) -> BodyStatus {
        BodyStatus::Continue
    }
    fn on_response_trailers(&mut self, _filter: &FilterHandle) -> TrailersStatus {
        TrailersStatus::Continue
    }
    /// An event committed through this stream's [`StreamScheduler`]; never after the stream ended.
    fn on_scheduled(&mut self, _filter: &FilterHandle, _event_id: u64) {}
    /// The answer to [`FilterHandle::http_callout`]; never after the stream ended (Envoy cancels).
    fn on_callout_done(&mut self, _filter: &FilterHandle, _callout: CalloutDone<'_>) {}
    /// The stream is over (before access logs are written): last chance for metadata/filter state.
    fn on_stream_complete(&mut self, _filter: &FilterHandle) {}
}

/// `FilterHeadersStatus` (envoy/http/filter.h), the values a policy filter needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadersStatus {
    Continue,
    /// Hold the headers; body chunks still arrive (to be held with [`BodyStatus::StopAndBuffer`]).
    StopIteration,
    /// Hold headers and buffer the whole request in Envoy (up to its buffer limit, then 413).
    StopAllAndBuffer,
}

/// `FilterDataStatus` (envoy/http/filter.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStatus {
    Continue,
    /// Keep this chunk in the buffered body and wait for more (Envoy's buffer limit applies).
    StopAndBuffer,
    /// Hold without buffering (the chunk stays with Envoy's flow control).
    StopNoBuffer,
}

/// `FilterTrailersStatus` (envoy/http/filter.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailersStatus {
    Continue,
    StopIteration,
}

/// How a callout ended (`envoy_dynamic_module_type_http_callout_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutResult {
    Success,
    Reset,
    ExceedResponseBufferLimit,
    /// A value this binding does not know (a newer Envoy).
    Other(u32),
}

impl CalloutResult {
    pub(crate) fn from_abi(value: CEnum) -> CalloutResult {
        match value {
            callout_result::SUCCESS => CalloutResult::Success,
            callout_result::RESET => CalloutResult::Reset,
            callout_result::EXCEED_RESPONSE_BUFFER_LIMIT => {
                CalloutResult::ExceedResponseBufferLimit
            }
            other => CalloutResult::Other(other),
        }
    }
}

/// A finished callout: headers (with `:status`) and body are copies; both empty unless `Success`.
#[derive(Debug)]
pub struct CalloutDone<'a> {
    pub callout_id: u64,
    pub result: CalloutResult,
    pub headers: &'a [(Vec<u8>, Vec<u8>)],
    pub body: &'a [u8],
}

impl CalloutDone<'_> {
    /// The response's `:status`, if it has a numeric one.
    pub fn status(&self) -> Option<u16> {
        self.headers
            .iter()
            .find(|(name, _)| name.as_slice() == b":status")
            .and_then(|(_, value)| std::str::from_utf8(value).ok()?.parse().ok())
    }
}

/// Why Envoy refused to start a callout (`envoy_dynamic_module_type_http_callout_init_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalloutInitError {
    /// `:method`, `:path` and `host` are required.
    MissingRequiredHeaders,
    ClusterNotFound,
    DuplicateCalloutId,
    /// E.g. no healthy host in the cluster.
    CannotCreateRequest,
    Other(u32),
}

impl CalloutInitError {
    pub(crate) fn from_abi(value: CEnum) -> CalloutInitError {
        match value {
            1 => CalloutInitError::MissingRequiredHeaders,
            2 => CalloutInitError::ClusterNotFound,
            3 => CalloutInitError::DuplicateCalloutId,
            4 => CalloutInitError::CannotCreateRequest,
            other => CalloutInitError::Other(other),
        }
    }
}

/// Text header pairs as the bytes the ABI takes.
fn byte_pairs<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a [u8], &'a [u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect()
}

/// Envoy's log levels, for the `dynamic_modules` logger id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    fn to_abi(self) -> CEnum {
        match self {
            LogLevel::Trace => log_level::TRACE,
            LogLevel::Debug => log_level::DEBUG,
            LogLevel::Info => log_level::INFO,
            LogLevel::Warn => log_level::WARN,
            LogLevel::Error => log_level::ERROR,
            LogLevel::Critical => log_level::CRITICAL,
        }
    }
}

/// Logs under Envoy's `dynamic_modules` logger. Any thread (Envoy's spdlog logger is thread-safe).
pub fn log(level: LogLevel, message: &str) {
    crate::abi::host::log(level.to_abi(), message);
}

/// Whether `level` is on for `dynamic_modules`: check before formatting an expensive message.
pub fn log_enabled(level: LogLevel) -> bool {
    crate::abi::host::log_enabled(level.to_abi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callout_results_follow_the_abi_enum_order_and_keep_unknown_values() {
        // abi.h: Success, Reset, ExceedResponseBufferLimit.
        let cases = [
            (0, CalloutResult::Success),
            (1, CalloutResult::Reset),
            (2, CalloutResult::ExceedResponseBufferLimit),
            (9, CalloutResult::Other(9)),
        ];
        for (value, expected) in cases {
            assert_eq!(CalloutResult::from_abi(value), expected, "value {value}");
        }
    }

    #[test]
    fn callout_init_errors_follow_the_abi_enum_order() {
        // abi.h: Success, MissingRequiredHeaders, ClusterNotFound, DuplicateCalloutId, CannotCreateRequest.
        let cases = [
            (1, CalloutInitError::MissingRequiredHeaders),
            (2, CalloutInitError::ClusterNotFound),
            (3, CalloutInitError::DuplicateCalloutId),
            (4, CalloutInitError::CannotCreateRequest),
            (5, CalloutInitError::Other(5)),
        ];
        for (value, expected) in cases {
            assert_eq!(CalloutInitError::from_abi(value), expected, "value {value}");
        }
    }

    /// Header name and value bytes as a test writes them.
    type RawHeaders = &'static [(&'static [u8], &'static [u8])];

    #[test]
    fn a_callouts_status_is_its_numeric_status_pseudo_header() {
        let cases: [(RawHeaders, Option<u16>); 4] = [
            (&[(b":status", b"200"), (b"x", b"y")], Some(200)),
            (&[(b"x", b"y")], None),
            (&[(b":status", b"2x0")], None),
            (&[(b":status", b"\xff")], None),
        ];
        for (headers, expected) in cases {
            let headers: Vec<(Vec<u8>, Vec<u8>)> = headers
                .iter()
                .map(|(n, v)| (n.to_vec(), v.to_vec()))
                .collect();
            let done = CalloutDone {
                callout_id: 1,
                result: CalloutResult::Success,
                headers: &headers,
                body: b"",
            };
            assert_eq!(done.status(), expected, "{headers:?}");
        }
    }

    #[test]
    fn the_module_reports_the_abi_version_of_envoy_1_40() {
        assert_eq!(crate::abi_version(), "v0.2.0");
    }
}
