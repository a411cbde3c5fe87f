//! HTTP context: one request. Reads headers once, asks the engine, applies the decision.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};

use super::{SharedState, info_enabled, log, now};
use crate::engine::{Decision, Mutations, Request};
use crate::error::{AuthError, Reason};
use crate::metrics;

pub struct Filter {
    shared: SharedState,
}

impl Filter {
    pub fn new(shared: SharedState) -> Self {
        Filter { shared }
    }

    fn decide(&self) -> Option<Decision> {
        let headers = hostcalls::get_map(MapType::HttpRequestHeaders).ok()?;
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let request = Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers: &headers,
        };
        let mut guard = self.shared.borrow_mut();
        let shared = guard.as_mut()?;
        let decision = shared
            .engine
            .decide(&request, &shared.store, &mut shared.cache, now());
        let counters = &shared.counters;
        match decision.audit().cache {
            Some("hit") => counters.add(metrics::TOKEN_CACHE_HIT, 1),
            Some(_) => counters.add(metrics::TOKEN_CACHE_MISS, 1),
            None => {}
        }
        match &decision {
            Decision::Allow { .. } if decision.audit().token_fingerprint.is_none() => {
                counters.add(metrics::ALLOWED_ANONYMOUS, 1);
            }
            Decision::Allow { .. } => counters.add(metrics::ALLOWED, 1),
            Decision::Deny { .. } => {
                counters.add(metrics::DENIED, 1);
                if let Some(reason) = Reason::ALL
                    .iter()
                    .find(|r| Some(r.as_str()) == decision.audit().reason)
                {
                    counters.add(&metrics::denied_for(*reason), 1);
                }
            }
        }
        Some(decision)
    }
}

fn apply(mutations: &Mutations) -> Result<(), String> {
    let set = |name: &str, value: Option<&str>| {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
            .map_err(|e| format!("cannot change header {name}: {e:?}"))
    };
    for name in &mutations.remove_headers {
        set(name, None)?;
    }
    for (name, value) in &mutations.set_headers {
        set(name, Some(value))?;
    }
    if let Some(path) = &mutations.set_path {
        set(":path", Some(path))?;
    }
    Ok(())
}

fn refuse(decision_response: &crate::error::DenyResponse) {
    let headers: Vec<(&str, &str)> = decision_response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sent = hostcalls::send_http_response(
        decision_response.status,
        headers,
        Some(&decision_response.body),
    );
    if let Err(status) = sent {
        log(
            LogLevel::Error,
            &format!("brickgate: cannot send the refusal: {status:?}"),
        );
    }
}

impl Context for Filter {}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(decision) = self.decide() else {
            // No configuration or no headers: fail closed, never let the request through.
            let error = AuthError::new(
                Reason::KeysUnavailable,
                "brickgate is not ready; retry shortly",
            );
            refuse(&error.to_response("brickgate"));
            return Action::Pause;
        };
        if info_enabled() {
            log(
                LogLevel::Info,
                &format!("brickgate audit {}", decision.audit().to_json()),
            );
        }
        match decision {
            Decision::Allow { mutations, .. } => match apply(&mutations) {
                Ok(()) => Action::Continue,
                Err(problem) => {
                    log(LogLevel::Error, &format!("brickgate: {problem}"));
                    let error = AuthError::new(
                        Reason::KeysUnavailable,
                        "brickgate could not prepare the request; retry shortly",
                    );
                    refuse(&error.to_response("brickgate"));
                    Action::Pause
                }
            },
            Decision::Deny { response, .. } => {
                refuse(&response);
                Action::Pause
            }
        }
    }
}
