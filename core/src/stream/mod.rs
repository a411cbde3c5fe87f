//! One request's lifecycle, as an explicit state machine.
//!
//! The adapter turns each host callback into an [`Event`] and carries out the [`HostAction`]s
//! and the [`Reply`] that [`Stream::step`] returns. Every state says what the upstream has
//! received so far, and the matches below are exhaustive, so a state that forgets an event
//! does not compile:
//!
//! | state             | upstream has received        | left by                                          |
//! |-------------------|------------------------------|--------------------------------------------------|
//! | `Idle`            | nothing                      | request headers                                  |
//! | `WaitingForKeys`  | nothing (everything held)    | keys changed, fetch attempt ended, timers        |
//! | `ReadingBody`     | nothing (headers held)       | end of body, trailers, body limit, timers        |
//! | `WaitingForToken` | nothing (everything held)    | the Databricks token arrives or fails            |
//! | `Allowed`         | what the verdict covers      | (final)                                          |
//! | `Refused`         | nothing, ever                | (final)                                          |
//!
//! Nothing reaches the upstream before the verdict that covers it. The credential is judged at
//! the headers, always: a request whose rule depends on its body is held for it only when some
//! rule the body could select might admit that credential (`engine::before_body`), and is
//! decided in full once the body (and any trailers) has arrived, which needs Envoy's
//! `allow_on_headers_stop_iteration: true` (see `docs/LIFECYCLE.md`). A request whose keys have
//! not arrived waits for them at its headers (`WaitingForKeys`), reading the body meanwhile if
//! its rule will need it (the host delivers each byte once), then reads the rest
//! (`ReadingBody`). A held body must arrive whole within `databricks.body_deadline_ms` of the
//! headers. A held stream answers every body and trailers callback with `Pause`. Each answered
//! stream writes exactly one audit record.

mod body;
pub mod body_budget;
pub mod calls;
mod events;
mod keys;
mod record;
mod streaming;
mod trailers;
mod verdict;

#[cfg(test)]
mod tests;

pub use body_budget::{BodyBudget, HeldBody};
pub use calls::TokenCalls;
pub use events::{Env, Event, HostAction, Reply, Step};
pub use record::Record;

use crate::engine::Mutations;
use crate::error::AuthError;
use crate::identity::AuditRecord;
use crate::jwks::{JwksStore, UnixMillis};
use body::{Deadlines, Held};
use keys::Parked;
use streaming::Streaming;
use verdict::{cut_after_allow, refuse, refuse_after_allow, refuse_internal, unreadable};

/// Request headers (or trailers) as the host delivers them: names in lower case.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    /// Held for its body (`held.body` is being read).
    ReadingBody(Held),
    /// `body_rules: buffer_filter`: its headers went on to Envoy's buffer filter, which holds
    /// everything from the upstream; its body is read as it passes, for the verdict.
    StreamingBody(Box<Streaming>),
    WaitingForKeys(Parked),
    WaitingForToken(Box<TokenWait>),
    Allowed,
    Refused,
}

impl State {
    /// The request headers a state still holds (for records of refusals).
    fn headers(&self) -> &[(String, String)] {
        match self {
            State::ReadingBody(held) => &held.headers,
            State::StreamingBody(streaming) => &streaming.held.headers,
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
    /// `body_rules: buffer_filter`: the token is for the headers' passage; with it, they go on
    /// and the body is streamed.
    then_stream: Option<Box<Streaming>>,
}

/// One stream's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    state: State,
    /// The client has sent everything (end of stream or trailers).
    request_complete: bool,
    /// A body callback has arrived (the host delivers bodies to a stream paused at its headers).
    body_seen: bool,
    /// The last step allowed the stream: if its host calls fail, the adapter's very next event
    /// is that failure ([`Event::HostFailure`]), and the allow was never recorded.
    allow_unconfirmed: bool,
    /// From the headers: when a held body must have shown up, and arrived whole.
    deadlines: Deadlines,
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
            body_seen: false,
            allow_unconfirmed: false,
            deadlines: Deadlines::default(),
        }
    }

    /// The state's name, for logs and tests.
    pub fn phase(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::ReadingBody(_) => "reading_body",
            State::StreamingBody(_) => "streaming_body",
            State::WaitingForKeys(_) => "waiting_for_keys",
            State::WaitingForToken(_) => "waiting_for_token",
            State::Allowed => "allowed",
            State::Refused => "refused",
        }
    }

    /// Whether the stream is reading its body for the verdict: the adapter should read body
    /// bytes from the host and pass them in.
    pub fn wants_body_bytes(&self) -> bool {
        Self::reads_body(&self.state, self.request_complete)
    }

    /// A body chunk on a held stream: noted, and kept when the verdict reads the body (`body`),
    /// within its limit and the VM's budget.
    fn take_chunk(
        &mut self,
        env: &Env<'_>,
        body: Option<&mut body::BodyRead>,
        bytes: &[u8],
        end_of_stream: bool,
    ) -> Result<(), AuthError> {
        self.body_seen = true;
        self.request_complete |= end_of_stream;
        body.map_or(Ok(()), |body| body.append(env, bytes))
    }

    fn reads_body(state: &State, request_complete: bool) -> bool {
        match state {
            State::ReadingBody(_) | State::StreamingBody(_) => true,
            State::WaitingForKeys(parked) => parked.held.body.is_some() && !request_complete,
            // Only a host that delivers bodies to paused headers sends body events here.
            State::WaitingForToken(wait) => wait.then_stream.is_some() && !request_complete,
            State::Idle | State::Allowed | State::Refused => false,
        }
    }

    /// Whether the stream is held and waits for something outside its callbacks (the root
    /// context keeps a list of these and wakes them).
    pub fn is_held(&self) -> bool {
        match self.state {
            State::ReadingBody(_)
            | State::StreamingBody(_)
            | State::WaitingForKeys(_)
            | State::WaitingForToken(_) => true,
            State::Idle | State::Allowed | State::Refused => false,
        }
    }

    /// What is overdue for a stream reading its body, if anything.
    fn body_overdue(&self, state: &State, now_ms: UnixMillis) -> Option<body::Overdue> {
        // The first-body wait detects a host that holds bodies back from paused headers; a
        // streaming request's headers went on, so only the whole body's deadline applies.
        let body_seen = self.body_seen || matches!(state, State::StreamingBody(_));
        Self::reads_body(state, self.request_complete)
            .then(|| self.deadlines.overdue(body_seen, now_ms))
            .flatten()
    }

    /// Whether a [`Event::Wake`] would make progress now.
    pub fn wants_wake(&self, store: &JwksStore, now_ms: UnixMillis) -> bool {
        if self.body_overdue(&self.state, now_ms).is_some() {
            return true;
        }
        match &self.state {
            State::WaitingForKeys(parked) => parked.ready(store, now_ms),
            State::ReadingBody(_)
            | State::StreamingBody(_)
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
            | State::ReadingBody(_)
            | State::StreamingBody(_)
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
        if let Event::Wake = event
            && let Some(overdue) = self.body_overdue(&state, env.now_ms)
        {
            return body::refuse_overdue(env, &state, overdue);
        }
        match (state, event) {
            (State::Refused, Event::HostFailure(_) | Event::ReadFailure(_)) => {
                (State::Refused, Step::pause())
            }
            // Allowed and recorded as such, then a host call failed in a later callback
            // (stripping trailers, reading them): cut the stream (Envoy resets the upstream
            // request) without a second record; the warning says why. A failure while
            // carrying out the allow itself comes right after it, before its record (see
            // `allow`), and is refused below like any other.
            (State::Allowed, Event::HostFailure(why)) if !self.allow_unconfirmed => {
                cut_after_allow(env, &why, AuthError::internal(why.clone()))
            }
            (State::Allowed, Event::ReadFailure(why)) => {
                cut_after_allow(env, &why, AuthError::internal(why.clone()))
            }
            (state, Event::HostFailure(why) | Event::ReadFailure(why)) => {
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
                self.deadlines = Deadlines::from_headers(env);
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
                State::StreamingBody(streaming),
                Event::RequestBody {
                    bytes,
                    end_of_stream,
                },
            ) => self.streamed_chunk(env, streaming, bytes, end_of_stream),
            (State::StreamingBody(streaming), Event::RequestTrailers { trailers }) => {
                self.streamed_trailers(env, &streaming, &trailers)
            }
            (
                State::ReadingBody(mut held),
                Event::RequestBody {
                    bytes,
                    end_of_stream,
                },
            ) => {
                if let Err(error) = self.take_chunk(env, held.body.as_mut(), bytes, end_of_stream) {
                    return refuse(env, &held.headers, error);
                }
                if end_of_stream {
                    self.decide(env, held, keys::Wait::Fresh, Context::Callback)
                } else {
                    (State::ReadingBody(held), Step::pause())
                }
            }
            // Waiting for keys at the headers: a body the rule will need is read meanwhile;
            // the keys, not the body's end, move it on.
            (
                State::WaitingForKeys(mut parked),
                Event::RequestBody {
                    bytes,
                    end_of_stream,
                },
            ) => {
                let body = parked.held.body.as_mut();
                if let Err(error) = self.take_chunk(env, body, bytes, end_of_stream) {
                    return refuse(env, &parked.held.headers, error);
                }
                (State::WaitingForKeys(parked), Step::pause())
            }
            // A trailer brickgate cannot read is one it cannot strip: refuse while nothing has
            // gone upstream.
            (
                state @ (State::ReadingBody(_)
                | State::StreamingBody(_)
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
            (State::ReadingBody(held), Event::RequestTrailers { trailers }) => {
                self.request_complete = true;
                let mut step = self.decide(env, held, keys::Wait::Fresh, Context::Callback);
                trailers::strip_into(&mut step.1, &trailers, env.engine);
                step
            }
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
                    then_stream,
                } = *wait;
                match (result, then_stream) {
                    (Ok(token), Some(streaming)) => {
                        self.stream_after_token(env, *streaming, &token)
                    }
                    (Ok(token), None) => verdict::allow(
                        headers,
                        mutations,
                        Some(&token),
                        audit,
                        counters,
                        Context::Outside,
                    ),
                    (Err(error), _) => refuse_after_allow(env, &error, audit, counters),
                }
            }
            // Held: the host keeps buffering; the verdict will cover what arrives meanwhile.
            // A streaming request's body is read even here (only a host that delivers bodies
            // to paused headers sends it): it will not pass brickgate again.
            (
                State::WaitingForToken(mut wait),
                Event::RequestBody {
                    bytes,
                    end_of_stream,
                },
            ) => {
                let body = wait
                    .then_stream
                    .as_mut()
                    .and_then(|streaming| streaming.held.body.as_mut());
                if let Err(error) = self.take_chunk(env, body, bytes, end_of_stream) {
                    return refuse(env, &wait.headers, error);
                }
                (State::WaitingForToken(wait), Step::pause())
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
                | State::ReadingBody(_)
                | State::StreamingBody(_)),
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
}

fn event_name(event: &Event<'_>) -> &'static str {
    match event {
        Event::RequestHeaders { .. } => "headers",
        Event::RequestBody { .. } => "body",
        Event::RequestTrailers { .. } | Event::UnreadableTrailers { .. } => "trailers",
        Event::UnreadableHeaders { .. } => "headers",
        Event::Wake => "wake-up",
        Event::UpstreamToken(_) => "upstream token",
        Event::HostFailure(_) | Event::ReadFailure(_) => "host failure",
    }
}
