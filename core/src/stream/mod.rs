//! One request's lifecycle, as an explicit state machine.
//!
//! The adapter turns each host callback into an [`Event`] and carries out the [`HostAction`]s
//! and the [`Reply`] that [`Stream::step`] returns. Every state says what the upstream has
//! received so far, and the matches below are exhaustive, so a state that forgets an event
//! does not compile:
//!
//! | state             | upstream has received        | left by                                   |
//! |-------------------|------------------------------|-------------------------------------------|
//! | `Idle`            | nothing                      | request headers                           |
//! | `ReadingBody`     | nothing (headers held)       | end of body, trailers, body limit, timer  |
//! | `WaitingForKeys`  | nothing (everything held)    | keys changed, fetch attempt ended, timer  |
//! | `WaitingForToken` | nothing (everything held)    | the Databricks token arrives or fails     |
//! | `Allowed`         | what the verdict covers      | (final)                                   |
//! | `Refused`         | nothing, ever                | (final)                                   |
//!
//! Nothing reaches the upstream before the verdict that covers it: a request whose rule depends
//! on its body is held at its headers until the body (and any trailers) has arrived, which needs
//! Envoy's `allow_on_headers_stop_iteration: true` (see `docs/LIFECYCLE.md`); a held stream
//! answers every body and trailers callback with `Pause`.

pub mod body_budget;
pub mod calls;
mod keys;
mod record;
mod trailers;

#[cfg(test)]
mod tests;

pub use body_budget::{BodyBudget, HeldBody};
pub use calls::TokenCalls;
pub use record::Record;

use crate::databricks::exchange::{TokenRequest, UpstreamTokens};
use crate::engine::{
    Decision, Engine, HeaderRewrite, Mutations, ReadLimit, Request, UpstreamAction,
};
use crate::error::{AuthError, DenyResponse};
use crate::identity::AuditRecord;
use crate::jwks::{JwksStore, UnixMillis};
use crate::shared_data::SharedData;
use keys::{KeyWait, Parked};

/// Request headers (or trailers) as the host delivers them: names in lower case.
pub type Headers = Vec<(String, String)>;

/// How long a request held for its body may wait for the first body callback. A host that
/// never delivers the body of a stream paused at its headers (Envoy without
/// `allow_on_headers_stop_iteration: true`) is detected here and refused, never released.
pub const FIRST_BODY_WAIT_MS: u64 = 10_000;

/// The request-body bytes all streams of one VM may hold at once, by default
/// (`databricks.max_held_body_bytes`): sixteen of Databricks' largest serving bodies, a quarter
/// of the 1 GiB proxy-wasm hosts give a VM.
pub const MAX_HELD_BODY_BYTES: usize = 256 * 1024 * 1024;

/// What a step may use: the compiled policy, the key store, the caches, shared data and the
/// host's clock.
pub struct Env<'a> {
    pub engine: &'a Engine,
    pub store: &'a mut JwksStore,
    pub cache: &'a mut crate::cache::TokenCache,
    pub upstream_tokens: &'a mut UpstreamTokens,
    pub shared: &'a dyn SharedData,
    pub now_ms: UnixMillis,
    /// Fill the audit record's token fingerprint (only worth it when records are kept).
    pub fingerprint: bool,
    /// The bodies this VM's streams hold ([`body_budget`]).
    pub body_budget: &'a BodyBudget,
}

/// A host event for one stream.
#[derive(Debug)]
pub enum Event<'a> {
    RequestHeaders {
        headers: Headers,
        end_of_stream: bool,
    },
    /// Body bytes that arrived since the last body event. The adapter reads them from the host
    /// only while [`Stream::wants_body_bytes`] is true (otherwise `bytes` is empty: the host
    /// keeps buffering what a held stream does not read).
    RequestBody {
        bytes: &'a [u8],
        end_of_stream: bool,
    },
    /// The request's trailers (their arrival ends the request).
    RequestTrailers { trailers: Headers },
    /// The request headers, one of which is not UTF-8 text (`header_map::MapError::NotUtf8`):
    /// `name` is that header's (printable) name, `headers` the map read lossily, for the audit
    /// record only.
    UnreadableHeaders { name: String, headers: Headers },
    /// The request's trailers, one of which (`name`) is not UTF-8 text.
    UnreadableTrailers { name: String },
    /// From the root context: keys changed, a fetch attempt ended, or time passed.
    Wake,
    /// The Databricks token this stream waited for, or why there is none.
    UpstreamToken(Result<String, AuthError>),
    /// A host call that carries out this stream's verdict failed (for example replacing its
    /// headers): whatever the verdict was, the request must not go on.
    HostFailure(String),
}

/// What the callback that delivered the event returns to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Let what this callback delivered (and everything held before it) go on.
    Continue,
    /// Hold it (or it was answered locally).
    Pause,
}

/// Host calls to make, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// Replace the request's headers with these (one host call).
    SetRequestHeaders(Box<HeaderRewrite>),
    /// Replace the request's trailers with these.
    SetRequestTrailers(Headers),
    /// Answer locally; the upstream never receives the request.
    SendResponse(DenyResponse),
    /// Let a held stream go on (from outside its own callbacks).
    Resume,
    /// Obtain a Databricks token; answer with [`Event::UpstreamToken`].
    FetchUpstreamToken(TokenRequest),
    /// Count the decision and write its audit record (one per answered stream).
    Record(Box<Record>),
    /// A line for the operator (the adapter logs it at warning level).
    Warn(String),
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub reply: Reply,
    pub actions: Vec<HostAction>,
}

impl Step {
    fn pause() -> Step {
        Step {
            reply: Reply::Pause,
            actions: Vec::new(),
        }
    }

    fn proceed() -> Step {
        Step {
            reply: Reply::Continue,
            actions: Vec::new(),
        }
    }
}

/// A request held whole: its headers as they arrived and, for a rule that depends on it, its
/// body so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    headers: Headers,
    body: Option<HeldBody>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    ReadingBody {
        held: Held,
        limit: ReadLimit,
        /// Until the first body callback arrives (host detection); none after it.
        first_body_deadline_ms: Option<UnixMillis>,
    },
    WaitingForKeys(Parked),
    WaitingForToken(Box<TokenWait>),
    Allowed,
    Refused,
}

impl State {
    /// The request headers a state still holds (for records of refusals).
    fn headers(&self) -> &[(String, String)] {
        match self {
            State::ReadingBody { held, .. } => &held.headers,
            State::WaitingForKeys(parked) => &parked.held.headers,
            State::WaitingForToken(wait) => &wait.headers,
            State::Idle | State::Allowed | State::Refused => &[],
        }
    }
}

/// An allowed request held until its Databricks token arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenWait {
    headers: Headers,
    mutations: Mutations,
    audit: AuditRecord,
    /// Counted with the token's outcome.
    counters: Vec<&'static str>,
    cache_key: String,
}

/// One stream's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    state: State,
    /// The client has sent everything (end of stream or trailers).
    request_complete: bool,
    /// The last step allowed the stream: if its host calls fail, the adapter's very next event
    /// is that failure, and the allow was never recorded.
    allow_unconfirmed: bool,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::new()
    }
}

/// Where a step runs: inside the stream's own callback (its reply lets it go on) or outside
/// it (it must be resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Callback,
    Outside,
}

impl Stream {
    pub fn new() -> Stream {
        Stream {
            state: State::Idle,
            request_complete: false,
            allow_unconfirmed: false,
        }
    }

    /// The state's name, for logs and tests.
    pub fn phase(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::ReadingBody { .. } => "reading_body",
            State::WaitingForKeys(_) => "waiting_for_keys",
            State::WaitingForToken(_) => "waiting_for_token",
            State::Allowed => "allowed",
            State::Refused => "refused",
        }
    }

    /// Whether the adapter should read body bytes from the host and pass them in.
    pub fn wants_body_bytes(&self) -> bool {
        matches!(self.state, State::ReadingBody { .. })
    }

    /// Whether the stream is held and waits for something outside its callbacks (the root
    /// context keeps a list of these and wakes them).
    pub fn is_held(&self) -> bool {
        match self.state {
            State::ReadingBody { .. } | State::WaitingForKeys(_) | State::WaitingForToken(_) => {
                true
            }
            State::Idle | State::Allowed | State::Refused => false,
        }
    }

    /// Whether a [`Event::Wake`] would make progress now.
    pub fn wants_wake(&self, store: &JwksStore, now_ms: UnixMillis) -> bool {
        match &self.state {
            State::WaitingForKeys(parked) => parked.ready(store, now_ms),
            State::ReadingBody {
                first_body_deadline_ms: Some(deadline),
                ..
            } => now_ms >= *deadline,
            State::ReadingBody { .. }
            | State::Idle
            | State::WaitingForToken(_)
            | State::Allowed
            | State::Refused => false,
        }
    }

    /// The upstream-token cache key this stream waits for, if any.
    pub fn waits_for_token(&self) -> Option<&str> {
        match &self.state {
            State::WaitingForToken(wait) => Some(&wait.cache_key),
            State::Idle
            | State::ReadingBody { .. }
            | State::WaitingForKeys(_)
            | State::Allowed
            | State::Refused => None,
        }
    }

    pub fn step(&mut self, env: &mut Env<'_>, event: Event<'_>) -> Step {
        let was_allowed = matches!(self.state, State::Allowed);
        let state = std::mem::replace(&mut self.state, State::Refused);
        let (state, step) = self.advance(env, state, event);
        self.allow_unconfirmed = !was_allowed && matches!(state, State::Allowed);
        self.state = state;
        step
    }

    fn advance(&mut self, env: &mut Env<'_>, state: State, event: Event<'_>) -> (State, Step) {
        match (state, event) {
            (State::Refused, Event::HostFailure(_)) => (State::Refused, Step::pause()),
            // Allowed and recorded as such, then a later host call (stripping trailers) failed:
            // cut the stream (Envoy resets the upstream request) without a second record; the
            // warning says why. A failure while carrying out the allow itself comes before its
            // record (see `allow`) and is refused below like any other.
            (State::Allowed, Event::HostFailure(why)) if !self.allow_unconfirmed => {
                cut_after_allow(env, &why, internal_error(why.clone()))
            }
            (state, Event::HostFailure(why)) => {
                let headers = state.headers().to_vec();
                let (state, mut step) = refuse_internal(&headers, env, why.clone());
                step.actions
                    .push(HostAction::Warn(format!("brickgate: {why}")));
                (state, step)
            }
            (State::Idle, Event::UnreadableHeaders { name, headers }) => {
                refuse(env, &headers, unreadable("request header", &name))
            }
            (
                State::Idle,
                Event::RequestHeaders {
                    headers,
                    end_of_stream,
                },
            ) => {
                self.request_complete = end_of_stream;
                let held = Held {
                    headers,
                    body: None,
                };
                self.decide(env, held, keys::Wait::Fresh, Context::Callback)
            }
            // A host never delivers these first; if one does, nothing has been decided.
            (State::Idle, event) => {
                let what = event_name(&event);
                refuse_internal(
                    &[],
                    env,
                    format!("brickgate received the request's {what} before its headers"),
                )
            }
            // Headers twice: the host broke its contract; refuse rather than guess.
            (
                state,
                Event::RequestHeaders { headers, .. } | Event::UnreadableHeaders { headers, .. },
            ) => match state {
                State::Allowed | State::Refused => (state, Step::pause()),
                _ => refuse_internal(
                    &headers,
                    env,
                    "brickgate received the request headers twice".to_string(),
                ),
            },
            (
                State::ReadingBody {
                    mut held,
                    limit,
                    first_body_deadline_ms: _,
                },
                Event::RequestBody {
                    bytes,
                    end_of_stream,
                },
            ) => {
                self.request_complete |= end_of_stream;
                let body = held
                    .body
                    .get_or_insert_with(|| HeldBody::new(env.body_budget));
                if body.len().saturating_add(bytes.len()) > limit.max_bytes {
                    return refuse(env, &held.headers, limit.too_large);
                }
                if !body.extend(bytes) {
                    let error = overloaded(env.body_budget);
                    return refuse(env, &held.headers, error);
                }
                if end_of_stream {
                    self.decide(env, held, keys::Wait::Fresh, Context::Callback)
                } else {
                    let state = State::ReadingBody {
                        held,
                        limit,
                        first_body_deadline_ms: None,
                    };
                    (state, Step::pause())
                }
            }
            // A trailer brickgate cannot read is one it cannot strip: refuse while nothing has
            // gone upstream.
            (
                state @ (State::ReadingBody { .. }
                | State::WaitingForKeys(_)
                | State::WaitingForToken(_)),
                Event::UnreadableTrailers { name },
            ) => refuse(env, state.headers(), unreadable("request trailer", &name)),
            // Allowed and recorded; the headers (and body) went upstream but the trailers must
            // not.
            (State::Allowed, Event::UnreadableTrailers { name }) => {
                let error = unreadable("request trailer", &name);
                cut_after_allow(env, &error.detail.clone(), error)
            }
            (State::Refused, Event::UnreadableTrailers { .. }) => (State::Refused, Step::pause()),
            (State::ReadingBody { held, .. }, Event::RequestTrailers { trailers }) => {
                self.request_complete = true;
                let mut step = self.decide(env, held, keys::Wait::Fresh, Context::Callback);
                trailers::strip_into(&mut step.1, &trailers, env.engine);
                step
            }
            (
                State::ReadingBody {
                    held,
                    limit,
                    first_body_deadline_ms,
                },
                Event::Wake,
            ) => match first_body_deadline_ms {
                Some(deadline) if env.now_ms >= deadline => {
                    let wait = first_body_wait_ms(env);
                    let why = format!(
                        "no request body reached brickgate within {wait} ms of the headers of a request whose rule depends on its body; \
                         if this happens to every such request, the Envoy Wasm filter lacks `allow_on_headers_stop_iteration: true` (docs/LIFECYCLE.md)"
                    );
                    let (state, mut step) = refuse_internal(&held.headers, env, why.clone());
                    step.actions
                        .push(HostAction::Warn(format!("brickgate: {why}")));
                    (state, step)
                }
                _ => {
                    let state = State::ReadingBody {
                        held,
                        limit,
                        first_body_deadline_ms,
                    };
                    (state, Step::pause())
                }
            },
            (State::WaitingForKeys(parked), Event::Wake) => {
                if parked.ready(env.store, env.now_ms) {
                    let deadline = parked.deadline_ms;
                    self.decide(
                        env,
                        parked.held,
                        keys::Wait::Until(deadline),
                        Context::Outside,
                    )
                } else {
                    (State::WaitingForKeys(parked), Step::pause())
                }
            }
            (State::WaitingForToken(wait), Event::UpstreamToken(result)) => {
                let TokenWait {
                    headers,
                    mutations,
                    audit,
                    counters,
                    cache_key: _,
                } = *wait;
                match result {
                    Ok(token) => allow(
                        headers,
                        mutations,
                        Some(&token),
                        audit,
                        counters,
                        Context::Outside,
                    ),
                    Err(error) => refuse_after_allow(env, &error, audit, counters),
                }
            }
            // Held: the host keeps buffering; the verdict will cover what arrives meanwhile.
            (
                state @ (State::WaitingForKeys(_) | State::WaitingForToken(_)),
                Event::RequestBody { end_of_stream, .. },
            ) => {
                self.request_complete |= end_of_stream;
                (state, Step::pause())
            }
            (
                state @ (State::WaitingForKeys(_) | State::WaitingForToken(_)),
                Event::RequestTrailers { trailers },
            ) => {
                self.request_complete = true;
                let mut step = Step::pause();
                trailers::strip_into(&mut step, &trailers, env.engine);
                (state, step)
            }
            // Nothing to do for these until their own event comes.
            (
                state @ (State::WaitingForKeys(_)
                | State::WaitingForToken(_)
                | State::ReadingBody { .. }),
                Event::Wake | Event::UpstreamToken(_),
            ) => (state, Step::pause()),
            (State::Allowed, Event::RequestBody { .. }) => (State::Allowed, Step::proceed()),
            (State::Allowed, Event::RequestTrailers { trailers }) => {
                let mut step = Step::proceed();
                trailers::strip_into(&mut step, &trailers, env.engine);
                (State::Allowed, step)
            }
            (State::Allowed, Event::Wake | Event::UpstreamToken(_)) => {
                (State::Allowed, Step::proceed())
            }
            (
                State::Refused,
                Event::RequestBody { .. }
                | Event::RequestTrailers { .. }
                | Event::Wake
                | Event::UpstreamToken(_),
            ) => (State::Refused, Step::pause()),
        }
    }

    /// Runs the decision for a request held whole, and turns its verdict into a state.
    fn decide(
        &mut self,
        env: &mut Env<'_>,
        held: Held,
        wait: keys::Wait,
        context: Context,
    ) -> (State, Step) {
        let mut decision = run(env, &held);
        if let Decision::NeedBody { limit, .. } = decision {
            if held.body.is_some() {
                // The engine asks for a body only when it has none: a bug, refuse.
                return refuse_internal(
                    &held.headers,
                    env,
                    "brickgate asked for a body it already had".to_string(),
                );
            }
            if self.request_complete {
                // No body will come: decide on an empty one.
                let held = Held {
                    headers: held.headers,
                    body: Some(HeldBody::new(env.body_budget)),
                };
                return self.decide(env, held, wait, context);
            }
            let state = State::ReadingBody {
                held: Held {
                    headers: held.headers,
                    body: Some(HeldBody::new(env.body_budget)),
                },
                limit,
                first_body_deadline_ms: Some(env.now_ms.saturating_add(first_body_wait_ms(env))),
            };
            return (state, Step::pause());
        }
        match keys::should_wait(env, &decision, wait) {
            KeyWait::Park {
                provider,
                deadline_ms,
            } => {
                let parked = Parked::new(held, provider, deadline_ms, env.store);
                return (State::WaitingForKeys(parked), Step::pause());
            }
            KeyWait::DecideAgain => decision = run(env, &held),
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
            Decision::NeedBody { .. } => refuse_internal(
                &held.headers,
                env,
                "brickgate asked for a body after deciding without one".to_string(),
            ),
        }
    }
}

fn first_body_wait_ms(env: &Env<'_>) -> u64 {
    env.engine
        .config
        .databricks
        .as_ref()
        .map_or(FIRST_BODY_WAIT_MS, |d| d.first_body_wait_ms)
}

fn event_name(event: &Event<'_>) -> &'static str {
    match event {
        Event::RequestHeaders { .. } => "headers",
        Event::RequestBody { .. } => "body",
        Event::RequestTrailers { .. } | Event::UnreadableTrailers { .. } => "trailers",
        Event::UnreadableHeaders { .. } => "headers",
        Event::Wake => "wake-up",
        Event::UpstreamToken(_) => "upstream token",
        Event::HostFailure(_) => "host failure",
    }
}

fn run(env: &mut Env<'_>, held: &Held) -> Decision {
    let pseudo = |name: &str| {
        held.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let request = Request {
        method: pseudo(":method"),
        path: pseudo(":path"),
        headers: &held.headers,
        body: held.body.as_ref().map(HeldBody::bytes),
        fingerprint: env.fingerprint,
    };
    env.engine
        .decide(&request, env.store, env.cache, env.now_ms)
}

/// The verdict allows: set the headers it covers (and the Databricks token), record it, and
/// let the request go on.
fn allow(
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
    let mut actions = Vec::with_capacity(3);
    if !mutations.is_empty() {
        actions.push(HostAction::SetRequestHeaders(Box::new(HeaderRewrite {
            original: headers,
            mutations,
        })));
    }
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

/// A refusal with its audit record.
fn refuse(env: &Env<'_>, headers: &[(String, String)], error: AuthError) -> (State, Step) {
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
fn cut_after_allow(env: &Env<'_>, why: &str, error: AuthError) -> (State, Step) {
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

/// 503 `overloaded`: the VM holds as many body bytes as it may.
fn overloaded(budget: &BodyBudget) -> AuthError {
    AuthError::new(
        crate::error::Reason::Overloaded,
        format!(
            "brickgate holds {} bytes of request bodies on this worker, its limit (databricks.max_held_body_bytes {}); retry shortly",
            budget.held(),
            budget.limit()
        ),
    )
}

/// 400 `bad_header`: `what` (a request header or trailer) named `name` is not UTF-8 text.
fn unreadable(what: &str, name: &str) -> AuthError {
    AuthError::new(
        crate::error::Reason::BadHeader,
        format!(
            "{what} {name} is not UTF-8 text; brickgate cannot tell how the upstream would read it"
        ),
    )
}

/// Internal trouble: fail closed with 503, never the upstream, never blaming the client.
fn refuse_internal(headers: &[(String, String)], env: &Env<'_>, why: String) -> (State, Step) {
    refuse(env, headers, internal_error(why))
}

/// The error for a gateway-side failure: `internal_error`, its own reason and counter.
pub fn internal_error(why: String) -> AuthError {
    AuthError::internal(why)
}

/// The caller was verified, but Databricks would not give brickgate a token for it.
fn refuse_after_allow(
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
