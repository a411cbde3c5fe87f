//! Warnings about the Envoy filter around brickgate, from what the checked file shows of it:
//! whether the configured `body_rules` mode can get the bodies its rules need
//! (docs/LIFECYCLE.md, "Rules that depend on the body").

use brickgate_core::config::{BodyRules, Config};

use crate::loader::{Host, NextFilter};

/// Envoy's buffer filter (envoyproxy/envoy `api/envoy/extensions/filters/http/buffer/v3/buffer.proto`).
const BUFFER_NAME: &str = "envoy.filters.http.buffer";
const BUFFER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer";

pub fn warnings(config: &Config, host: &Host) -> Vec<String> {
    let serving_rules = config.reads_model_from_body;
    // What a host that never hands bodies to paused headers does to a held request.
    let held = if serving_rules {
        "every body-form serving request (OpenAI-style routes, AI Gateway POSTs) a serving_endpoint \
         rule could select, and every invocation without Content-Length, waits \
         databricks.first_body_wait_ms and is refused with 503 internal_error"
    } else {
        "every serving invocation without Content-Length waits databricks.first_body_wait_ms and is \
         refused with 503 internal_error"
    };
    match (config.body_rules, host) {
        (
            BodyRules::BufferFilter,
            Host::Envoy {
                next: Some(next), ..
            },
        ) if !is_buffer(next) => {
            let after = match next {
                NextFilter::Filter { name, .. } => format!("the filter after it is {name}"),
                NextFilter::None => "no filter follows it".to_string(),
            };
            vec![format!(
                "body_rules: buffer_filter, but {after}, not {BUFFER_NAME}: nothing then holds the \
                 request from the upstream while brickgate reads the body, so the headers and the \
                 first body bytes of a request the body refuses reach the upstream; put \
                 {BUFFER_NAME} (max_request_bytes above the largest body limit) right after brickgate"
            )]
        }
        (
            BodyRules::HoldHeaders,
            Host::Envoy {
                stops_at_headers: false,
                ..
            },
        ) => vec![format!(
            "body_rules: hold_headers, but the Wasm filter lacks allow_on_headers_stop_iteration: \
             true: Envoy delivers no body to a request held at its headers, so {held}; set the \
             flag (Envoy >= 1.35), or use body_rules: buffer_filter with {BUFFER_NAME} after \
             brickgate{}",
            if serving_rules {
                ""
            } else {
                ", or body_rules: off (411 at the headers)"
            }
        )],
        (BodyRules::HoldHeaders, Host::ControlPlane(kind)) => vec![format!(
            "body_rules: hold_headers needs the Wasm filter's allow_on_headers_stop_iteration: true, \
             which {kind} cannot set (neither Istio nor Envoy Gateway renders it, docs/LIFECYCLE.md), \
             so {held}; use body_rules: buffer_filter with {BUFFER_NAME} right after brickgate{}",
            if serving_rules {
                ""
            } else {
                ", or body_rules: off (411 at the headers)"
            }
        )],
        _ => Vec::new(),
    }
}

fn is_buffer(next: &NextFilter) -> bool {
    match next {
        NextFilter::Filter { name, type_url } => {
            name == BUFFER_NAME || type_url.as_deref() == Some(BUFFER_TYPE)
        }
        NextFilter::None => false,
    }
}

#[cfg(test)]
mod tests;
