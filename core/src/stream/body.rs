//! A request held whole, and the body it reads before its verdict: how much, by when.
//!
//! Deadlines run from the request's headers. Until the first body callback, the
//! `databricks.first_body_wait_ms` detects a host that never delivers bodies to a stream
//! paused at its headers (503 and a warning); the `databricks.body_deadline_ms` bounds how
//! long any held body may take to arrive (408 `body_timeout`), so that a slow or stalled
//! client gives its bytes back to the VM's budget.

use super::{Env, Headers, HostAction, State, Step};
use crate::config::BodyRules;
use crate::config::held_bodies::{BODY_DEADLINE_MS, FIRST_BODY_WAIT_MS};
use crate::engine::ReadLimit;
use crate::error::{AuthError, Reason};
use crate::jwks::UnixMillis;

pub use super::body_budget::HeldBody;

/// A request held whole: its headers as they arrived and, for a rule that depends on it, its
/// body so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub headers: Headers,
    pub body: Option<BodyRead>,
}

/// A body being read for the verdict, and how much of it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRead {
    pub bytes: HeldBody,
    pub limit: ReadLimit,
}

impl BodyRead {
    pub fn new(env: &Env<'_>, limit: ReadLimit) -> Self {
        BodyRead {
            bytes: HeldBody::new(env.body_budget),
            limit,
        }
    }

    /// Appends a chunk, or the refusal: past the read limit (413), or past the VM's budget
    /// (503 `overloaded`).
    pub fn append(&mut self, env: &Env<'_>, chunk: &[u8]) -> Result<(), AuthError> {
        if self.bytes.len().saturating_add(chunk.len()) > self.limit.max_bytes {
            return Err(self.limit.too_large.clone());
        }
        if !self.bytes.extend(chunk) {
            return Err(overloaded(env));
        }
        Ok(())
    }
}

/// When a stream's held body must have shown up, and arrived whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadlines {
    pub first_body_ms: UnixMillis,
    pub whole_body_ms: UnixMillis,
}

impl Deadlines {
    pub fn from_headers(env: &Env<'_>) -> Self {
        let (first, whole) = env
            .engine
            .config
            .databricks
            .as_ref()
            .map_or((FIRST_BODY_WAIT_MS, BODY_DEADLINE_MS), |d| {
                (d.first_body_wait_ms, d.body_deadline_ms)
            });
        // `buffer_filter` is for hosts that hold bodies back from paused headers: a stream still
        // at its headers (waiting for keys or a token) sees no body by design there, and its
        // wait has its own bound; once its headers go on, only the whole body's deadline counts.
        let first_body_ms = match env.engine.config.body_rules {
            BodyRules::BufferFilter => UnixMillis::MAX,
            BodyRules::HoldHeaders | BodyRules::Off => env.now_ms.saturating_add(first),
        };
        Deadlines {
            first_body_ms,
            whole_body_ms: env.now_ms.saturating_add(whole),
        }
    }

    /// What is overdue for a stream reading its body, if anything.
    pub fn overdue(&self, body_seen: bool, now_ms: UnixMillis) -> Option<Overdue> {
        if !body_seen && now_ms >= self.first_body_ms {
            Some(Overdue::FirstBody)
        } else if now_ms >= self.whole_body_ms {
            Some(Overdue::WholeBody)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdue {
    /// No body callback at all: the host, not the client, is the likely cause.
    FirstBody,
    WholeBody,
}

/// The refusal of a stream whose body is overdue.
pub fn refuse_overdue(env: &Env<'_>, state: &State, overdue: Overdue) -> (State, Step) {
    let headers = state.headers();
    match overdue {
        Overdue::FirstBody => {
            let wait = env
                .engine
                .config
                .databricks
                .as_ref()
                .map_or(FIRST_BODY_WAIT_MS, |d| d.first_body_wait_ms);
            let why = format!(
                "no request body reached brickgate within {wait} ms of the headers of a request whose rule depends on its body; \
                 if this happens to every such request, the Envoy Wasm filter lacks `allow_on_headers_stop_iteration: true`; where it cannot be set (Istio, Envoy Gateway), use `body_rules: buffer_filter` (docs/LIFECYCLE.md)"
            );
            let (state, mut step) = super::verdict::refuse_internal(headers, env, why.clone());
            step.actions
                .push(HostAction::Warn(format!("brickgate: {why}")));
            (state, step)
        }
        Overdue::WholeBody => {
            let deadline = env
                .engine
                .config
                .databricks
                .as_ref()
                .map_or(BODY_DEADLINE_MS, |d| d.body_deadline_ms);
            let error = AuthError::new(
                Reason::BodyTimeout,
                format!(
                    "the request body did not arrive whole within {deadline} ms of its headers (databricks.body_deadline_ms); send it faster, or in a smaller request"
                ),
            );
            super::verdict::refuse(env, headers, error)
        }
    }
}

/// 503 `overloaded`: the VM holds as many body bytes as it may.
fn overloaded(env: &Env<'_>) -> AuthError {
    let budget = env.body_budget;
    AuthError::new(
        Reason::Overloaded,
        format!(
            "brickgate holds {} bytes of request bodies on this worker, its limit (databricks.max_held_body_bytes {}); retry shortly",
            budget.held(),
            budget.limit()
        ),
    )
}
