//! Counters and the decision-time histogram, defined once when the configuration is built
//! (Envoy freezes stat creation after that). The labelled request counter is one counter with
//! labels `decision`, `reason` and `rule`: Envoy names each series as the Wasm form names its
//! counter (`brickgate.requests_total.decision.….reason.….rule.…`), under the dynamic-module
//! prefix `dynamicmodulescustom.`.

use std::collections::HashMap;

use brickgate_core::metrics;

use crate::envoy::{ConfigHandle, CounterId, FilterHandle, HistogramId};

pub struct Metrics {
    by_name: HashMap<String, CounterId>,
    requests: CounterId,
    decision_time: Option<HistogramId>,
}

impl Metrics {
    pub fn define(config: &ConfigHandle) -> Result<Metrics, String> {
        let mut by_name = HashMap::new();
        for name in metrics::all_counters() {
            let id = config
                .define_counter(&name)
                .map_err(|e| format!("brickgate: cannot define counter {name}: {e:?}"))?;
            by_name.insert(name, id);
        }
        let requests = config
            .define_labelled_counter(metrics::REQUESTS, &["decision", "reason", "rule"])
            .map_err(|e| format!("brickgate: cannot define {}: {e:?}", metrics::REQUESTS))?;
        Ok(Metrics {
            by_name,
            requests,
            decision_time: config.define_histogram(metrics::DECISION_TIME_US).ok(),
        })
    }

    /// The counter named `name`, if the configuration defined it.
    pub fn counter(&self, name: &str) -> Option<CounterId> {
        self.by_name.get(name).copied()
    }

    /// From a stream: a failed increment only loses counts.
    pub fn count(&self, filter: &FilterHandle, name: &str, amount: u64) {
        if let Some(id) = self.counter(name) {
            filter.increment_counter(id, amount);
        }
    }

    pub fn count_request(
        &self,
        filter: &FilterHandle,
        decision: &str,
        reason: Option<&str>,
        rule: Option<&str>,
    ) {
        let labels = [
            decision,
            reason.unwrap_or(metrics::NO_LABEL),
            rule.unwrap_or(metrics::NO_LABEL),
        ];
        filter.increment_labelled_counter(self.requests, &labels, 1);
    }

    pub fn record_decision_time(&self, filter: &FilterHandle, micros: u64) {
        if let Some(id) = self.decision_time {
            filter.record_histogram(id, micros);
        }
    }
}
