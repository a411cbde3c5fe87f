//! Request trailers never carry credentials, identity or a path override upstream: an upstream
//! that folds trailers into headers (some frameworks do) must not see a client-chosen identity
//! or path.

use super::{Headers, HostAction, Step};
use crate::databricks::STRIPPED_HEADERS;
use crate::engine::Engine;

/// Credentials for the upstream; proxy credentials and method overrides come from
/// `request_hygiene`, so the two lists cannot drift.
const CREDENTIAL_TRAILERS: [&str; 1] = ["authorization"];

/// Whether a trailer name (any case, `_` or `-`) is one brickgate owns or one that carries
/// credentials or identity.
pub fn forbidden(name: &str, identity_prefix: &str) -> bool {
    let folded: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let prefix = identity_prefix.to_ascii_lowercase().replace('_', "-");
    folded.starts_with(&prefix)
        || CREDENTIAL_TRAILERS.contains(&folded.as_str())
        || crate::request_hygiene::PROXY_CREDENTIAL_HEADERS.contains(&folded.as_str())
        || crate::request_hygiene::METHOD_OVERRIDE_HEADERS.contains(&folded.as_str())
        || crate::request_hygiene::PATH_OVERRIDE_HEADERS.contains(&folded.as_str())
        || crate::request_hygiene::PATH_PREFIX_HEADERS.contains(&folded.as_str())
        || STRIPPED_HEADERS.contains(&folded.as_str())
}

/// Adds the action that removes forbidden trailers, if any are present.
pub fn strip_into(step: &mut Step, trailers: &Headers, engine: &Engine) {
    // A refusal sends nothing upstream, and a host call that could fail before it would leave
    // the stream refused without its answer.
    if step
        .actions
        .iter()
        .any(|action| matches!(action, HostAction::SendResponse(_)))
    {
        return;
    }
    let prefix = &engine.config.identity.header_prefix;
    if !trailers.iter().any(|(name, _)| forbidden(name, prefix)) {
        return;
    }
    let kept: Headers = trailers
        .iter()
        .filter(|(name, _)| !forbidden(name, prefix))
        .cloned()
        .collect();
    // Before the reply (or the resume) that lets them go on.
    step.actions.insert(0, HostAction::SetRequestTrailers(kept));
}

#[cfg(test)]
mod tests {
    use super::forbidden;

    #[test]
    fn path_overrides_are_forbidden_trailers_like_credentials() {
        for name in [
            "X-Original-URL",
            "x_rewrite_url",
            "x-forwarded-uri",
            "X-Envoy-Original-Path",
            "x-forwarded-prefix",
            "authorization",
            "X_HTTP_Method_Override",
        ] {
            assert!(forbidden(name, "x-brickgate-"), "{name}");
        }
        for name in ["x-trace", "x-original-urls", "grpc-status"] {
            assert!(!forbidden(name, "x-brickgate-"), "{name}");
        }
    }
}
