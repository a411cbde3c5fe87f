//! The config side: metrics, main-thread callouts, the config scheduler.

use crate::abi::host::{RawConfig, RawConfigScheduler};

use super::{CalloutInitError, LogLevel, log, log_enabled};

/// A counter defined on the config; usable from the config (main thread) and from every stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterId(pub(crate) usize);

/// A histogram defined on the config; likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramId(pub(crate) usize);

/// Envoy refused a metric operation (`envoy_dynamic_module_type_metrics_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsError {
    MetricNotFound,
    InvalidLabels,
    /// Defined outside `new_config`: Envoy freezes stat creation once the config is built.
    Frozen,
    Other(u32),
}

impl MetricsError {
    fn from_abi(value: u32) -> MetricsError {
        match value {
            1 => MetricsError::MetricNotFound,
            2 => MetricsError::InvalidLabels,
            3 => MetricsError::Frozen,
            other => MetricsError::Other(other),
        }
    }
}

/// Envoy's filter config, lent to the main-thread hooks (`new_config`, `on_scheduled`,
/// `on_callout_done` of [`super::FilterConfig`]). Neither `Send` nor `Sync`: abi.h documents the
/// config callbacks for the main thread only, so the handle never leaves it.
pub struct ConfigHandle {
    raw: RawConfig,
}

impl ConfigHandle {
    pub(crate) fn new(raw: RawConfig) -> ConfigHandle {
        ConfigHandle { raw }
    }

    /// A counter named `name` under the filter's metrics namespace. Only inside `new_config`.
    pub fn define_counter(&self, name: &str) -> Result<CounterId, MetricsError> {
        self.define_labelled_counter(name, &[])
    }

    /// A counter with labels (`label_names`): each increment names their values, in order.
    /// Envoy renders it as `name.label.value…` in its stats. Only inside `new_config`.
    pub fn define_labelled_counter(
        &self,
        name: &str,
        label_names: &[&str],
    ) -> Result<CounterId, MetricsError> {
        self.raw
            .define_counter(name, label_names)
            .map(CounterId)
            .map_err(MetricsError::from_abi)
    }

    /// A histogram named `name`. Only inside `new_config`.
    pub fn define_histogram(&self, name: &str) -> Result<HistogramId, MetricsError> {
        self.raw
            .define_histogram(name)
            .map(HistogramId)
            .map_err(MetricsError::from_abi)
    }

    /// Adds `by` to a counter from the main thread (false if Envoy refused).
    pub fn increment_counter(&self, counter: CounterId, by: u64) -> bool {
        self.raw.increment_counter(counter.0, by)
    }

    pub fn record_histogram(&self, histogram: HistogramId, value: u64) -> bool {
        self.raw.record_histogram(histogram.0, value)
    }

    /// A scheduler that wakes this config on the main thread ([`super::FilterConfig::on_scheduled`]).
    /// Keep it in the config and let it drop with the config.
    pub fn scheduler(&self) -> Option<ConfigScheduler> {
        self.raw.scheduler().map(|raw| ConfigScheduler { raw })
    }

    /// Sends a request to `cluster` from the main thread; the answer comes to
    /// [`super::FilterConfig::on_callout_done`] with the returned id. `headers` must hold
    /// `:method`, `:path` and `host`.
    pub fn http_callout(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutInitError> {
        self.raw
            .http_callout(
                cluster.as_bytes(),
                &super::byte_pairs(headers),
                body,
                timeout_ms,
            )
            .map_err(CalloutInitError::from_abi)
    }

    pub fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }

    pub fn log_enabled(&self, level: LogLevel) -> bool {
        log_enabled(level)
    }
}

/// Wakes the config on the main thread with an event id, from any thread.
pub struct ConfigScheduler {
    raw: RawConfigScheduler,
}

impl ConfigScheduler {
    pub fn commit(&self, event_id: u64) {
        self.raw.commit(event_id);
    }
}
