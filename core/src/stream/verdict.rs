//! Turning the engine's decision into a state and host actions: allow (header changes, the
//! Databricks token, the resume, then the record), refuse (a local reply and its record), or
//! hold (for the body, for keys, for a Databricks token).

use super::body::{BodyRead, Held};
use super::keys::{self, KeyWait, Parked};
use super::record::{self, Record};
use super::{Context, Env, Headers, HostAction, Reply, State, Step, Stream, TokenWait};
use crate::engine::{Decision, HeaderRewrite, Mutations, ReadLimit, Request, UpstreamAction};
use crate::error::AuthError;
use crate::identity::AuditRecord;

impl Stream {
    /// Runs the decision for a request held whole, and turns its verdict into a state. The
    /// engine sees the body only once the client has sent all of it; until then it judges the
    /// headers, and asks for the body only when some rule could admit the request.
    pub(super) fn decide(
        &mut self,
        env: &mut Env<'_>,
        mut held: Held,
        wait: keys::Wait,
        context: Context,
    ) -> (State, Step) {
        let mut decision = run(env, &held, self.request_complete);
        match keys::should_wait(env, &decision, wait) {
            KeyWait::Park {
                provider,
                deadline_ms,
            } => {
                // Its body may end while it waits, and the host delivers each byte once: a
                // request that will need it reads it meanwhile (its credential named a
                // provider, which is all that can be checked without keys).
                if held.body.is_none() && !self.request_complete {
                    let request = request_of(&held, None, false);
                    held.body = env
                        .engine
                        .body_read_limit(&request)
                        .map(|limit| BodyRead::new(env, limit));
                }
                let parked = Parked::new(held, provider, deadline_ms, env.store);
                return (State::WaitingForKeys(parked), Step::pause());
            }
            KeyWait::DecideAgain => decision = run(env, &held, self.request_complete),
            KeyWait::Answer => {}
        }
        let mut counters = record::cache_counters(decision.audit());
        match decision {
            Decision::Allow {
                mutations,
                upstream: UpstreamAction::Forward,
                audit,
            } => allow(held.headers, mutations, None, audit, counters, context),
            Decision::Allow {
                mutations,
                upstream: UpstreamAction::Fetch(request),
                audit,
            } => {
                if let Some(token) =
                    env.upstream_tokens
                        .get(env.shared, &request.cache_key, env.now_ms)
                {
                    counters.push(crate::metrics::UPSTREAM_TOKEN_CACHE_HIT);
                    return allow(
                        held.headers,
                        mutations,
                        Some(&token),
                        audit,
                        counters,
                        context,
                    );
                }
                let state = State::WaitingForToken(Box::new(TokenWait {
                    headers: held.headers,
                    mutations,
                    audit,
                    counters,
                    cache_key: request.cache_key.clone(),
                    then_stream: None,
                }));
                let step = Step {
                    reply: Reply::Pause,
                    actions: vec![HostAction::FetchUpstreamToken(request)],
                };
                (state, step)
            }
            Decision::Deny { response, audit } => {
                let mut step = Step::pause();
                step.actions.push(HostAction::SendResponse(response));
                step.actions
                    .push(HostAction::Record(Box::new(Record::denied(
                        audit, counters,
                    ))));
                (State::Refused, step)
            }
            // With `body_rules: buffer_filter`, a body still to come is streamed past the
            // headers. One a host delivered to the paused headers (the flag is set anyway) is
            // read on as held; none at all is decided as held (on an empty body).
            Decision::NeedBody {
                limit,
                passage: Some(passage),
                audit,
            } if !self.body_seen && !self.request_complete => {
                self.stream_body(env, held, limit, *passage, audit, context)
            }
            // Also after keys adopted at the headers (`KeyWait::DecideAgain`).
            Decision::NeedBody { limit, .. } => self.hold_for_body(env, held, limit, wait, context),
        }
    }

    /// The engine asks for the body: read it (`ReadingBody`), or decide on an empty one when
    /// the client has sent everything without one.
    fn hold_for_body(
        &mut self,
        env: &mut Env<'_>,
        mut held: Held,
        limit: ReadLimit,
        wait: keys::Wait,
        context: Context,
    ) -> (State, Step) {
        match (&held.body, self.request_complete) {
            (Some(_), true) => {
                // The engine asks for a body only when it has none: a bug, refuse.
                return refuse_internal(
                    &held.headers,
                    env,
                    "brickgate asked for a body it already had".to_string(),
                );
            }
            (None, true) => {
                // No body will come: decide on an empty one.
                held.body = Some(BodyRead::new(env, limit));
                return self.decide(env, held, wait, context);
            }
            (Some(_), false) => {}
            (None, false) => held.body = Some(BodyRead::new(env, limit)),
        }
        (State::ReadingBody(held), Step::pause())
    }
}

/// The request as the engine sees it; the body only once it is whole.
fn request_of<'a>(held: &'a Held, fingerprint: Option<bool>, complete: bool) -> Request<'a> {
    let pseudo = |name: &str| {
        held.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    Request {
        method: pseudo(":method"),
        path: pseudo(":path"),
        headers: &held.headers,
        body: held
            .body
            .as_ref()
            .filter(|_| complete)
            .map(|body| body.bytes.bytes()),
        fingerprint: fingerprint.unwrap_or(false),
    }
}

pub(super) fn run(env: &mut Env<'_>, held: &Held, complete: bool) -> Decision {
    let request = request_of(held, Some(env.fingerprint), complete);
    env.engine
        .decide(&request, env.store, env.cache, env.now_ms)
}

/// The verdict allows: set the headers it covers (and the Databricks token), record it, and
/// let the request go on.
pub(super) fn allow(
    headers: Headers,
    mut mutations: Mutations,
    token: Option<&str>,
    audit: AuditRecord,
    counters: Vec<&'static str>,
    context: Context,
) -> (State, Step) {
    if let Some(token) = token {
        mutations
            .set_headers
            .push(("authorization".to_string(), format!("Bearer {token}")));
    }
    let mut actions = changes_before_going_on(headers, mutations);
    let reply = match context {
        Context::Callback => Reply::Continue,
        Context::Outside => {
            actions.push(HostAction::Resume);
            Reply::Pause
        }
    };
    // Last, after every host call that may fail: a failure is refused and recorded instead.
    actions.push(HostAction::Record(Box::new(Record::allowed(
        audit, counters,
    ))));
    (State::Allowed, Step { reply, actions })
}

/// The host calls that make an allowed request what goes on to the next filter: its header
/// changes, then the principal published to the filters after brickgate.
pub(super) fn changes_before_going_on(
    headers: Headers,
    mut mutations: Mutations,
) -> Vec<HostAction> {
    let publish = mutations.publish.take();
    let mut actions = Vec::with_capacity(4);
    if !mutations.is_empty() {
        actions.push(HostAction::SetRequestHeaders(Box::new(HeaderRewrite {
            original: headers,
            mutations,
        })));
    }
    actions.extend(publish.map(HostAction::Publish));
    actions
}

/// A refusal with its audit record.
pub(super) fn refuse(
    env: &Env<'_>,
    headers: &[(String, String)],
    error: AuthError,
) -> (State, Step) {
    let response = error.to_response(&env.engine.config.realm);
    let audit = record::refusal_audit(headers, &error, response.status);
    let step = Step {
        reply: Reply::Pause,
        actions: vec![
            HostAction::SendResponse(response),
            HostAction::Record(Box::new(Record::denied(audit, Vec::new()))),
        ],
    };
    (State::Refused, step)
}

/// An allowed, recorded stream that must not go on (a later host call failed, or its trailers
/// cannot be read): cut it (Envoy resets the upstream request) without a second record; the
/// warning says why.
pub(super) fn cut_after_allow(env: &Env<'_>, why: &str, error: AuthError) -> (State, Step) {
    let response = error.to_response(&env.engine.config.realm);
    let warning = format!(
        "brickgate: {why} after the request was allowed; the request is cut with {} (its audit record is the allow)",
        response.status
    );
    let step = Step {
        reply: Reply::Pause,
        actions: vec![
            HostAction::SendResponse(response),
            HostAction::Warn(warning),
        ],
    };
    (State::Refused, step)
}

/// 400 `bad_header`: `what` (a request header or trailer) named `name` is not UTF-8 text.
pub(super) fn unreadable(what: &str, name: &str) -> AuthError {
    AuthError::new(
        crate::error::Reason::BadHeader,
        format!(
            "{what} {name} is not UTF-8 text; brickgate cannot tell how the upstream would read it"
        ),
    )
}

/// Internal trouble: fail closed with 503, never the upstream, never blaming the client.
pub(super) fn refuse_internal(
    headers: &[(String, String)],
    env: &Env<'_>,
    why: String,
) -> (State, Step) {
    refuse(env, headers, AuthError::internal(why))
}

/// The caller was verified, but Databricks would not give brickgate a token for it.
pub(super) fn refuse_after_allow(
    env: &Env<'_>,
    error: &AuthError,
    mut audit: AuditRecord,
    counters: Vec<&'static str>,
) -> (State, Step) {
    let response = error.to_response(&env.engine.config.realm);
    audit.decision = "deny";
    audit.reason = Some(error.reason.as_str());
    audit.status = response.status;
    audit.detail = Some(error.detail.clone());
    let step = Step {
        reply: Reply::Pause,
        actions: vec![
            HostAction::SendResponse(response),
            HostAction::Record(Box::new(Record::denied(audit, counters))),
        ],
    };
    (State::Refused, step)
}
