//! `body_rules: buffer_filter`: the body verdict without holding the headers (Istio and Envoy
//! Gateway cannot set `allow_on_headers_stop_iteration`, docs/LIFECYCLE.md).
//!
//! At the headers the request is judged as in the held path (credentials first). When only the
//! body can decide it, the header changes of the rule that admits it there (identity headers,
//! removals, the Databricks token) are made at once and the headers go on, to Envoy's buffer
//! filter, which must sit right after brickgate and holds the whole request from the upstream.
//! The stream then reads the body (`StreamingBody`), letting each chunk on to that buffer, and
//! decides at the end of the body (or at the trailers) with the whole request: an allow covering
//! exactly the header changes made lets the end of the body go on; anything else is a local
//! reply, and the upstream receives nothing. Each answered stream writes one record, at that
//! verdict. Same limits, budget and deadline as a held body.

use super::body::{BodyRead, Held};
use super::record::{self, Record};
use super::verdict::{self, refuse, refuse_internal};
use super::{Context, Env, HostAction, Reply, State, Step, Stream, TokenWait};
use crate::engine::{Decision, Passage, ReadLimit, UpstreamAction};
use crate::identity::AuditRecord;
use crate::metrics::UPSTREAM_TOKEN_CACHE_HIT;

/// A request whose headers went on to the buffer filter, and whose body brickgate reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streaming {
    /// The headers as they arrived, and the body so far (always `Some`).
    pub held: Held,
    /// The header changes already made: the verdict with the body must cover them.
    pub passage: Passage,
    /// Counted with the verdict (the Databricks token's cache hit).
    pub counters: Vec<&'static str>,
}

impl Stream {
    /// The engine needs the body and gave the passage to make first: make it, let the headers
    /// go on (after the Databricks token, if one is needed) and read the body as it passes.
    pub(super) fn stream_body(
        &mut self,
        env: &mut Env<'_>,
        held: Held,
        limit: ReadLimit,
        passage: Passage,
        audit: AuditRecord,
        context: Context,
    ) -> (State, Step) {
        let mut streaming = Streaming {
            held: Held {
                headers: held.headers,
                body: Some(BodyRead::new(env, limit)),
            },
            passage,
            counters: Vec::new(),
        };
        let request = match &streaming.passage.upstream {
            UpstreamAction::Forward => return go_on(streaming, None, context),
            UpstreamAction::Fetch(request) => request.clone(),
        };
        if let Some(token) = env
            .upstream_tokens
            .get(env.shared, &request.cache_key, env.now_ms)
        {
            streaming.counters.push(UPSTREAM_TOKEN_CACHE_HIT);
            return go_on(streaming, Some(&token), context);
        }
        let state = State::WaitingForToken(Box::new(TokenWait {
            headers: streaming.held.headers.clone(),
            mutations: streaming.passage.mutations.clone(),
            audit,
            counters: Vec::new(),
            cache_key: request.cache_key.clone(),
            then_stream: Some(Box::new(streaming)),
        }));
        let step = Step {
            reply: Reply::Pause,
            actions: vec![HostAction::FetchUpstreamToken(request)],
        };
        (state, step)
    }

    /// The Databricks token for a request that streams its body arrived (from outside its
    /// callbacks). A host that delivered the body meanwhile (the flag is set anyway) may have
    /// delivered all of it: then decide now, before anything goes on.
    pub(super) fn stream_after_token(
        &mut self,
        env: &mut Env<'_>,
        streaming: Streaming,
        token: &str,
    ) -> (State, Step) {
        if !self.request_complete {
            return go_on(streaming, Some(token), Context::Outside);
        }
        match final_verdict(env, &streaming) {
            Ok((audit, counters)) => verdict::allow(
                streaming.held.headers,
                streaming.passage.mutations,
                Some(token),
                audit,
                counters,
                Context::Outside,
            ),
            Err(refused) => *refused,
        }
    }

    /// A body chunk (or its end) of a streaming request.
    pub(super) fn streamed_chunk(
        &mut self,
        env: &mut Env<'_>,
        mut streaming: Box<Streaming>,
        bytes: &[u8],
        end_of_stream: bool,
    ) -> (State, Step) {
        let body = streaming.held.body.as_mut();
        if let Err(error) = self.take_chunk(env, body, bytes, end_of_stream) {
            return refuse(env, &streaming.held.headers, error);
        }
        if end_of_stream {
            finish(env, &streaming)
        } else {
            // The buffer filter after brickgate holds it from the upstream.
            (State::StreamingBody(streaming), Step::proceed())
        }
    }

    /// Trailers end a streaming request: decide, and strip them if it goes on.
    pub(super) fn streamed_trailers(
        &mut self,
        env: &mut Env<'_>,
        streaming: &Streaming,
        trailers: &super::Headers,
    ) -> (State, Step) {
        self.request_complete = true;
        let mut step = finish(env, streaming);
        super::trailers::strip_into(&mut step.1, trailers, env.engine);
        step
    }
}

/// Sets the passage's headers (and the Databricks token) and lets the headers go on; the body
/// is read next.
fn go_on(streaming: Streaming, token: Option<&str>, context: Context) -> (State, Step) {
    let mut mutations = streaming.passage.mutations.clone();
    if let Some(token) = token {
        mutations
            .set_headers
            .push(("authorization".to_string(), format!("Bearer {token}")));
    }
    let mut actions =
        super::verdict::changes_before_going_on(streaming.held.headers.clone(), mutations);
    let reply = match context {
        Context::Callback => Reply::Continue,
        Context::Outside => {
            actions.push(HostAction::Resume);
            Reply::Pause
        }
    };
    (
        State::StreamingBody(Box::new(streaming)),
        Step { reply, actions },
    )
}

/// The end of a streamed body, inside its callback: let it go on, recorded, or refuse.
fn finish(env: &mut Env<'_>, streaming: &Streaming) -> (State, Step) {
    match final_verdict(env, streaming) {
        Ok((audit, counters)) => (
            State::Allowed,
            Step {
                reply: Reply::Continue,
                actions: vec![HostAction::Record(Box::new(Record::allowed(
                    audit, counters,
                )))],
            },
        ),
        Err(refused) => *refused,
    }
}

/// A refusal's next state and step (boxed: the allow is the common case).
type Refused = Box<(State, Step)>;

/// The decision with the whole request: its allow (audit and counters) when it covers the
/// header changes already made, otherwise the refusal.
fn final_verdict(
    env: &mut Env<'_>,
    streaming: &Streaming,
) -> Result<(AuditRecord, Vec<&'static str>), Refused> {
    let decision = verdict::run(env, &streaming.held, true);
    let mut counters = record::cache_counters(decision.audit());
    counters.extend(streaming.counters.iter().copied());
    let headers = &streaming.held.headers;
    match decision {
        Decision::Allow {
            mutations,
            upstream,
            audit,
        } => {
            let rule_header = env.engine.config.identity.rule_header.as_deref();
            if streaming.passage.covers(&mutations, &upstream, rule_header) {
                return Ok((audit, counters));
            }
            let why = format!(
                "the rule the body selects ({}) changes the request's headers differently from the rule that admitted it at its headers, which were already sent on (body_rules: buffer_filter); give the rules a body may choose between the same providers, token sources and upstream mode",
                audit.rule.as_deref().unwrap_or("none")
            );
            let (state, mut step) = refuse_internal(headers, env, why.clone());
            step.actions
                .push(HostAction::Warn(format!("brickgate: {why}")));
            Err(Box::new((state, step)))
        }
        Decision::Deny { response, audit } => Err(Box::new((
            State::Refused,
            Step {
                reply: Reply::Pause,
                actions: vec![
                    HostAction::SendResponse(response),
                    HostAction::Record(Box::new(Record::denied(audit, counters))),
                ],
            },
        ))),
        Decision::NeedBody { .. } => Err(Box::new(refuse_internal(
            headers,
            env,
            "brickgate asked for a body it already had".to_string(),
        ))),
    }
}
