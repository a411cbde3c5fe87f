//! The answer `explain` prints: `Engine::decide` itself, on the request as `trace` placed the
//! token and the operator's `--header`s, then the audit record the plugin would write.

use brickgate_core::cache::TokenCache;
use brickgate_core::config::Config;
use brickgate_core::engine::{Decision, Engine, Request, UpstreamAction, WOULD_DENY};
use brickgate_core::error::Reason;
use brickgate_core::jwks::JwksStore;
use brickgate_core::verify::InWasmVerifier;
use serde_json::{Value, json};

use crate::Outcome;
use crate::transcript::Transcript;

pub(super) fn verdict(
    config: Config,
    store: &JwksStore,
    out: &Transcript,
    method: &str,
    headers: &[(String, String)],
    body: Option<Vec<u8>>,
    now_ms: u64,
) -> Result<Outcome, String> {
    // `trace` always places the path (with the token, when a query parameter carries it).
    let path = headers
        .iter()
        .find(|(n, _)| n == ":path")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let engine = Engine::new(config, Box::new(InWasmVerifier));
    let mut cache = TokenCache::new(0, 4096);
    let decide = |body: Option<&[u8]>, cache: &mut TokenCache| {
        let request = Request {
            method,
            path: &path,
            headers,
            body,
            fingerprint: true,
        };
        engine.decide(&request, store, cache, now_ms)
    };
    let mut decision = decide(body.as_deref(), &mut cache);
    if let Decision::NeedBody { .. } = decision {
        // As the plugin does once the request is complete: decide on the body (or none).
        decision = decide(Some(body.as_deref().unwrap_or_default()), &mut cache);
    }
    out.line("decision (Engine::decide):");
    let audit_reason = decision.audit().reason;
    let mut fields = json!({});
    let outcome = match &decision {
        Decision::Deny { response, .. } => {
            out.line(format!("  refused: HTTP {}", response.status));
            fields = json!({
                "decision": "refused",
                "status": response.status,
                "response_headers": response.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "response_body": String::from_utf8_lossy(&response.body),
            });
            for (name, value) in &response.headers {
                out.line(format!("  {name}: {value}"));
            }
            out.line(format!(
                "  body: {}",
                String::from_utf8_lossy(&response.body)
            ));
            // Keys that could not be fetched decide nothing about the policy.
            if audit_reason == Some(Reason::KeysUnavailable.as_str()) {
                Outcome::KeysUnavailable
            } else {
                Outcome::Refused
            }
        }
        Decision::Allow {
            mutations,
            upstream,
            audit,
        } => {
            let would_deny = audit.decision == WOULD_DENY;
            fields = json!({
                "decision": if would_deny { "would_deny" } else { "allowed" },
                "status": audit.status,
                "sets": mutations.headers_set().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "removes": mutations.remove_headers,
                "path_becomes": mutations.set_path,
                "upstream": match upstream {
                    UpstreamAction::Forward => json!("forward"),
                    UpstreamAction::Fetch(request) => json!({
                        "fetch_token_from": format!("{}{}", request.authority, request.path),
                        "cluster": request.cluster,
                    }),
                },
            });
            if would_deny {
                out.line(format!(
                    "  would_deny (dry-run): would answer HTTP {} ({}); the request goes on",
                    audit.status,
                    audit.reason.unwrap_or_default()
                ));
            } else {
                out.line("  allowed: forwarded upstream");
            }
            for (name, value) in mutations.headers_set() {
                out.line(format!("  sets {name}: {value}"));
            }
            for name in &mutations.remove_headers {
                out.line(format!("  removes {name}"));
            }
            if let Some(rewritten) = &mutations.set_path {
                out.line(format!("  path becomes {rewritten}"));
            }
            match upstream {
                UpstreamAction::Forward => out.line("  upstream: the request as authorised"),
                UpstreamAction::Fetch(request) => out.line(format!("  upstream: Authorization replaced by a Databricks token from {}{} (cluster {})",
                    request.authority, request.path, request.cluster
                )),
            }
            Outcome::Allowed
        }
        Decision::NeedBody { .. } => return Err("the decision still needs a body".to_string()),
    };
    // Bounded as the plugin writes it (`Record`).
    let mut audit = decision.audit().clone();
    audit.bound_client_fields();
    let audit_json = audit.to_json();
    out.line(format!("audit: {audit_json}"));
    if let Some(object) = fields.as_object_mut() {
        object.insert("reason".into(), json!(audit_reason));
    }
    out.set("decision", fields);
    out.set(
        "audit",
        serde_json::from_str(&audit_json).unwrap_or(Value::String(audit_json)),
    );
    out.set("exit_code", json!(outcome.exit_code()));
    Ok(outcome)
}
