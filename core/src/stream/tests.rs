//! The lifecycle driven through every order of host events by a fake host that models Envoy's
//! pause semantics (with `allow_on_headers_stop_iteration: true`): what a callback pauses is
//! buffered, what it continues (or a resume releases) goes upstream. The fake records exactly
//! what the upstream received, and each run checks that nothing went upstream before an allow
//! record covered it, that every answered stream has exactly one record, and that the verdict
//! is the one the policy gives.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::cache::TokenCache;
use crate::config::Config;
use crate::databricks::exchange::UpstreamTokens;
use crate::engine::Engine;
use crate::error::Reason;
use crate::error::{AuthError, DenyResponse};
use crate::jwks::{FetchOutcome, JwksStore};
use crate::shared_data::InMemorySharedData;
use crate::verify::InWasmVerifier;

mod buffer_filter;
mod credentials_first;

const NOW_S: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");
const ISSUER: &str = "https://okta.test";

/// How the provider gets its keys and how allowed requests authenticate upstream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Setup {
    InlineKeys,
    RemoteKeys,
    Exchange,
}

fn engine(setup: Setup) -> Engine {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let keys = match setup {
        Setup::RemoteKeys => {
            json!({"remote": {"cluster": "idp", "uri": "https://okta.test/keys", "wait_for_keys_ms": 5000}})
        }
        Setup::InlineKeys | Setup::Exchange => json!({"inline": jwks}),
    };
    let upstream = match setup {
        Setup::Exchange => {
            json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://adb-1.azuredatabricks.net", "scopes": ["all-apis"]})
        }
        Setup::InlineKeys | Setup::RemoteKeys => json!({"mode": "pass_through"}),
    };
    let config = json!({
        "providers": {"okta": {"issuer": ISSUER, "audiences": ["api"], "jwks": keys, "upstream": upstream}},
        "rules": [
            {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["okta"], "require": {"groups_any": ["fraud"]}},
            {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["okta"]}
        ],
        "databricks": {"route_catalogue": false}
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    Engine::new(config, Box::new(InWasmVerifier))
}

fn token(claims: Value) -> String {
    let mut all = json!({"iss": ISSUER, "aud": "api", "sub": "alice@example.com", "iat": NOW_S, "exp": NOW_S + 600});
    for (k, v) in claims.as_object().unwrap() {
        all[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    encode(
        &header,
        &all,
        &EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// One host event, as the fake host delivers it.
#[derive(Clone, Debug, PartialEq)]
enum HostEvent {
    Body(&'static str, bool),
    Trailers(Vec<(&'static str, &'static str)>),
    /// The provider's keys arrive (remote setup), then the root wakes held streams.
    KeysArrive,
    /// The Databricks token call answers.
    TokenAnswer(Result<&'static str, ()>),
    Wake,
}

/// What reached the upstream, and what the client got.
#[derive(Default, Debug)]
struct FakeHost {
    /// Held by the host: headers, body bytes, trailers not yet released.
    pending_headers: Option<Headers>,
    pending_body: Vec<u8>,
    pending_trailers: Option<Headers>,
    /// Released to the upstream.
    upstream_headers: Option<Headers>,
    upstream_body: Vec<u8>,
    upstream_trailers: Option<Headers>,
    local_reply: Option<DenyResponse>,
    records: Vec<Record>,
    token_requests: usize,
    /// Set once the client has got an answer: the host stops delivering events.
    over: bool,
}

impl FakeHost {
    fn release(&mut self) {
        assert!(
            self.records.iter().any(Record::is_allowed),
            "released to the upstream without an allow record: {self:?}"
        );
        assert!(self.local_reply.is_none(), "released after a local reply");
        if let Some(headers) = self.pending_headers.take() {
            self.upstream_headers = Some(headers);
        }
        self.upstream_body.append(&mut self.pending_body);
        if let Some(trailers) = self.pending_trailers.take() {
            self.upstream_trailers = Some(trailers);
        }
    }

    fn apply(&mut self, step: Step, in_callback: bool) {
        // The record of an allow comes after the resume that carries it out (a failed resume
        // is refused instead): what was released is checked once the step's actions are done.
        let mut resumed = false;
        for action in step.actions {
            match action {
                HostAction::SetRequestHeaders(headers) => {
                    assert!(
                        self.upstream_headers.is_none(),
                        "headers changed after release"
                    );
                    self.pending_headers = Some(headers.to_headers());
                }
                HostAction::SetRequestTrailers(trailers) => self.pending_trailers = Some(trailers),
                HostAction::SendResponse(response) => {
                    assert!(self.local_reply.is_none(), "two local replies");
                    assert!(self.upstream_headers.is_none(), "local reply after release");
                    self.local_reply = Some(response);
                    self.over = true;
                }
                HostAction::Resume => {
                    assert!(!in_callback, "resume from inside a callback");
                    resumed = true;
                }
                HostAction::FetchUpstreamToken(_) => self.token_requests += 1,
                HostAction::Record(record) => self.records.push(*record),
                HostAction::Warn(_) => {}
            }
        }
        if resumed || (in_callback && step.reply == Reply::Continue) {
            self.release();
        }
    }
}

struct World {
    engine: Engine,
    store: JwksStore,
    cache: TokenCache,
    tokens: UpstreamTokens,
    shared: InMemorySharedData,
    now_ms: u64,
    budget: BodyBudget,
}

impl World {
    fn new(setup: Setup) -> World {
        let engine = engine(setup);
        let store = JwksStore::new(&engine.config, 1);
        World {
            budget: BodyBudget::new(BodyBudget::limit_of(&engine.config)),
            engine,
            store,
            cache: TokenCache::new(64, 1 << 20),
            tokens: UpstreamTokens::default(),
            shared: InMemorySharedData::default(),
            now_ms: NOW_S * 1000,
        }
    }

    fn step(&mut self, stream: &mut Stream, event: Event<'_>) -> Step {
        let mut env = Env {
            engine: &self.engine,
            store: &mut self.store,
            cache: &mut self.cache,
            upstream_tokens: &mut self.tokens,
            shared: &self.shared,
            now_ms: self.now_ms,
            fingerprint: true,
            body_budget: &self.budget,
        };
        stream.step(&mut env, event)
    }

    fn keys_arrive(&mut self) {
        let (fetches, _) = self.store.tick(&self.shared, self.now_ms);
        assert!(!fetches.is_empty() || self.store.generation(0).is_some());
        let outcome = FetchOutcome::Response {
            status: 200,
            body: PUBLIC_JWKS.as_bytes().to_vec(),
            max_age_s: None,
        };
        self.store
            .on_fetch_outcome(&self.shared, 0, outcome, self.now_ms);
    }
}

fn headers(method: &str, path: &str, authorization: &str) -> Headers {
    vec![
        (":method".into(), method.into()),
        (":path".into(), path.into()),
        (":authority".into(), "gw.test".into()),
        ("authorization".into(), authorization.into()),
        ("x-brickgate-subject".into(), "spoofed".into()),
    ]
}

/// Runs one stream: headers (with `end_of_stream` when `events` holds no body or trailers),
/// then `events` in order. Returns the fake host.
fn run(setup: Setup, request: Headers, events: &[HostEvent]) -> FakeHost {
    let mut world = World::new(setup);
    let mut host = FakeHost::default();
    let mut stream = Stream::new();
    let has_body = events
        .iter()
        .any(|e| matches!(e, HostEvent::Body(..) | HostEvent::Trailers(_)));
    host.pending_headers = Some(request.clone());
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: request,
            end_of_stream: !has_body,
        },
    );
    host.apply(step, true);
    let mut token_answer = None;
    for event in events {
        world.now_ms += 10;
        if host.over {
            break;
        }
        match event {
            HostEvent::Body(chunk, end) => {
                host.pending_body.extend_from_slice(chunk.as_bytes());
                let bytes: &[u8] = if stream.wants_body_bytes() {
                    chunk.as_bytes()
                } else {
                    &[]
                };
                let step = world.step(
                    &mut stream,
                    Event::RequestBody {
                        bytes,
                        end_of_stream: *end,
                    },
                );
                host.apply(step, true);
            }
            HostEvent::Trailers(trailers) => {
                let trailers: Headers = trailers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                host.pending_trailers = Some(trailers.clone());
                let step = world.step(&mut stream, Event::RequestTrailers { trailers });
                host.apply(step, true);
            }
            HostEvent::KeysArrive => {
                if setup == Setup::RemoteKeys {
                    world.keys_arrive();
                }
                if stream.wants_wake(&world.store, world.now_ms) {
                    let step = world.step(&mut stream, Event::Wake);
                    host.apply(step, false);
                }
            }
            // The workspace answers; the answer reaches the stream once it has asked.
            HostEvent::TokenAnswer(answer) => token_answer = Some(*answer),

            HostEvent::Wake => {
                let step = world.step(&mut stream, Event::Wake);
                host.apply(step, false);
            }
        }
        if let Some(answer) = token_answer
            && stream.waits_for_token().is_some()
            && !host.over
        {
            token_answer = None;
            let result = answer
                .map(str::to_string)
                .map_err(|()| AuthError::new(Reason::ExchangeFailed, "workspace down"));
            let step = world.step(&mut stream, Event::UpstreamToken(result));
            host.apply(step, false);
        }
    }
    host
}

/// All merges of `client` and `outside` that keep each list's own order.
fn interleavings(client: &[HostEvent], outside: &[HostEvent]) -> Vec<Vec<HostEvent>> {
    if client.is_empty() {
        return vec![outside.to_vec()];
    }
    if outside.is_empty() {
        return vec![client.to_vec()];
    }
    let mut all = Vec::new();
    for mut rest in interleavings(&client[1..], outside) {
        rest.insert(0, client[0].clone());
        all.push(rest);
    }
    for mut rest in interleavings(client, &outside[1..]) {
        rest.insert(0, outside[0].clone());
        all.push(rest);
    }
    all
}

fn with_wakes(events: Vec<HostEvent>) -> Vec<HostEvent> {
    events
        .into_iter()
        .flat_map(|event| [event, HostEvent::Wake])
        .collect()
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The body-ending variants of a chat request: end of stream on the last chunk, or trailers.
fn chat_bodies(model: &str) -> Vec<Vec<HostEvent>> {
    let body: &'static str =
        Box::leak(format!(r#"{{"model": "{model}", "messages": []}}"#).into_boxed_str());
    let (first, second) = body.split_at(10);
    vec![
        vec![HostEvent::Body(first, false), HostEvent::Body(second, true)],
        vec![
            HostEvent::Body(first, false),
            HostEvent::Body(second, false),
            HostEvent::Trailers(vec![("x-trace", "1"), ("x-brickgate-subject", "spoofed")]),
        ],
        vec![
            HostEvent::Body(body, false),
            HostEvent::Trailers(vec![("x-trace", "1")]),
        ],
    ]
}

const CHAT: &str = "/serving-endpoints/chat/completions";

#[test]
fn a_body_decided_request_reaches_the_upstream_only_after_its_verdict() {
    let outsider = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    type Case = (&'static str, Option<&'static str>, &'static str);
    let cases: [Case; 3] = [
        ("churn", None, "per-endpoint"),
        ("fraud", Some("group_not_allowed"), "fraud-team"),
        ("other", Some("insufficient_scope"), "per-endpoint"),
    ];
    for (setup, outside) in [
        (Setup::InlineKeys, vec![]),
        (Setup::RemoteKeys, vec![HostEvent::KeysArrive]),
        (
            Setup::Exchange,
            vec![HostEvent::TokenAnswer(Ok("dbx-token"))],
        ),
    ] {
        for (model, refusal, rule) in cases {
            for body in chat_bodies(model) {
                for order in interleavings(&body, &outside) {
                    let events = with_wakes(order.clone());
                    let host = run(setup, headers("POST", CHAT, &outsider), &events);
                    let context = format!("{setup:?} {model} {order:?}");
                    assert_eq!(host.records.len(), 1, "{context}: {:?}", host.records);
                    let record = &host.records[0];
                    assert_eq!(record.audit.rule.as_deref(), Some(rule), "{context}");
                    match refusal {
                        Some(reason) => {
                            assert_eq!(record.audit.reason, Some(reason), "{context}");
                            assert!(host.upstream_headers.is_none(), "{context}");
                            assert!(host.upstream_body.is_empty(), "{context}");
                            assert!(host.local_reply.is_some(), "{context}");
                        }
                        None => {
                            let sent = host.upstream_headers.as_ref().expect(&context);
                            assert_eq!(
                                header(sent, "x-brickgate-subject"),
                                Some("alice@example.com"),
                                "{context}"
                            );
                            assert_eq!(header(sent, "x-brickgate-rule"), Some(rule), "{context}");
                            if setup == Setup::Exchange {
                                assert_eq!(
                                    header(sent, "authorization"),
                                    Some("Bearer dbx-token"),
                                    "{context}"
                                );
                            }
                            let body = String::from_utf8(host.upstream_body.clone()).unwrap();
                            assert!(body.contains(model), "{context}");
                            if let Some(trailers) = &host.upstream_trailers {
                                assert_eq!(
                                    header(trailers, "x-brickgate-subject"),
                                    None,
                                    "{context}"
                                );
                                assert_eq!(header(trailers, "x-trace"), Some("1"), "{context}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_header_decided_request_waits_for_keys_and_holds_its_body() {
    let member = format!("Bearer {}", token(json!({})));
    let client = vec![
        HostEvent::Body("abc", false),
        HostEvent::Body("def", false),
        HostEvent::Trailers(vec![("x-trace", "1")]),
    ];
    for order in interleavings(&client, &[HostEvent::KeysArrive]) {
        let events = with_wakes(order.clone());
        let host = run(
            Setup::RemoteKeys,
            headers("POST", "/api/2.1/jobs/run-now", &member),
            &events,
        );
        assert_eq!(host.records.len(), 1, "{order:?}");
        assert!(
            host.records[0].is_allowed(),
            "{order:?}: {:?}",
            host.records
        );
        assert_eq!(host.upstream_body, b"abcdef", "{order:?}");
        let sent = host.upstream_headers.as_ref().unwrap();
        assert_eq!(
            header(sent, "x-brickgate-subject"),
            Some("alice@example.com")
        );
    }
}

#[test]
fn keys_that_never_come_refuse_at_the_deadline_and_release_nothing() {
    let member = format!("Bearer {}", token(json!({})));
    let mut world = World::new(Setup::RemoteKeys);
    let mut host = FakeHost::default();
    let mut stream = Stream::new();
    let request = headers("POST", "/api/2.1/jobs/run-now", &member);
    host.pending_headers = Some(request.clone());
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: request,
            end_of_stream: false,
        },
    );
    host.apply(step, true);
    assert_eq!(stream.phase(), "waiting_for_keys");
    // The body (even its end) does not release a stream waiting for keys.
    let step = world.step(
        &mut stream,
        Event::RequestBody {
            bytes: b"",
            end_of_stream: true,
        },
    );
    assert_eq!(step.reply, Reply::Pause);
    assert!(!stream.wants_wake(&world.store, world.now_ms + 4_000));
    world.now_ms += 5_000;
    assert!(stream.wants_wake(&world.store, world.now_ms));
    let step = world.step(&mut stream, Event::Wake);
    host.apply(step, false);
    assert!(host.upstream_headers.is_none());
    assert_eq!(host.records[0].audit.reason, Some("keys_unavailable"));
    assert_eq!(host.local_reply.as_ref().unwrap().status, 503);
}

#[test]
fn a_failed_token_exchange_refuses_with_everything_held() {
    let member = format!("Bearer {}", token(json!({})));
    let client = vec![HostEvent::Body("abc", true)];
    for order in interleavings(&client, &[HostEvent::TokenAnswer(Err(()))]) {
        let host = run(
            Setup::Exchange,
            headers("POST", "/api/2.1/jobs/run-now", &member),
            &with_wakes(order.clone()),
        );
        assert_eq!(host.token_requests, 1, "{order:?}");
        assert!(host.upstream_headers.is_none(), "{order:?}");
        assert_eq!(host.records.len(), 1);
        assert_eq!(host.records[0].audit.reason, Some("exchange_failed"));
        assert_eq!(host.local_reply.as_ref().unwrap().status, 502);
    }
}

#[test]
fn a_body_over_the_limit_is_refused_counted_and_audited() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let big: &'static str = Box::leak("x".repeat((16 << 20) + 1).into_boxed_str());
    let host = run(
        Setup::InlineKeys,
        headers("POST", CHAT, &member),
        &[HostEvent::Body(big, true)],
    );
    assert!(host.upstream_headers.is_none());
    assert_eq!(host.local_reply.as_ref().unwrap().status, 413);
    let record = &host.records[0];
    assert_eq!(record.audit.reason, Some("body_too_large"));
    let counters: Vec<String> = record.counters().map(|c| c.into_owned()).collect();
    assert!(counters.contains(&"brickgate.denied.body_too_large".to_string()));
}

#[test]
fn a_host_that_never_delivers_the_body_is_detected_and_refused() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = World::new(Setup::InlineKeys);
    let mut stream = Stream::new();
    let mut host = FakeHost::default();
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", CHAT, &member),
            end_of_stream: false,
        },
    );
    host.apply(step, true);
    assert_eq!(stream.phase(), "reading_body");
    world.now_ms += crate::config::held_bodies::FIRST_BODY_WAIT_MS;
    assert!(stream.wants_wake(&world.store, world.now_ms));
    let step = world.step(&mut stream, Event::Wake);
    assert!(step.actions.iter().any(
        |a| matches!(a, HostAction::Warn(line) if line.contains("allow_on_headers_stop_iteration"))
    ));
    host.apply(step, false);
    assert!(host.upstream_headers.is_none());
    assert_eq!(host.local_reply.as_ref().unwrap().status, 503);
    // The gateway's fault, with its own reason and counter: not the IdP's keys.
    assert_eq!(host.records[0].audit.reason, Some("internal_error"));
}

#[test]
fn callbacks_out_of_order_never_release_an_undecided_stream() {
    let engine_world = || World::new(Setup::InlineKeys);
    // Body or trailers before headers.
    for event in [
        Event::RequestBody {
            bytes: b"x",
            end_of_stream: true,
        },
        Event::RequestTrailers {
            trailers: Vec::new(),
        },
        Event::Wake,
    ] {
        let mut world = engine_world();
        let mut stream = Stream::new();
        let step = world.step(&mut stream, event);
        assert_eq!(step.reply, Reply::Pause);
        assert_eq!(stream.phase(), "refused");
    }
    // Headers twice while reading a body.
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = engine_world();
    let mut stream = Stream::new();
    for _ in 0..2 {
        let step = world.step(
            &mut stream,
            Event::RequestHeaders {
                headers: headers("POST", CHAT, &member),
                end_of_stream: false,
            },
        );
        assert_eq!(step.reply, Reply::Pause);
    }
    assert_eq!(stream.phase(), "refused");
    // A host failure while carrying out an allow refuses the stream.
    let mut world = engine_world();
    let mut stream = Stream::new();
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("GET", "/api/2.1/jobs/list", &member),
            end_of_stream: true,
        },
    );
    assert_eq!(step.reply, Reply::Continue);
    let step = world.step(&mut stream, Event::HostFailure("set_map failed".into()));
    assert_eq!(step.reply, Reply::Pause);
    assert!(step.actions.iter().any(
        |a| matches!(a, HostAction::SendResponse(r) if r.status == 503
                && r.header("x-brickgate-reason") == Some("internal_error"))
    ));
    assert!(
        step.actions
            .iter()
            .any(|a| matches!(a, HostAction::Record(record)
        if record.audit.reason == Some("internal_error") && record.audit.subject.is_none()))
    );
}

#[test]
fn a_request_without_a_body_on_a_body_route_is_decided_on_an_empty_body() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let host = run(Setup::InlineKeys, headers("POST", CHAT, &member), &[]);
    assert!(host.upstream_headers.is_none());
    assert_eq!(host.records[0].audit.reason, Some("bad_body"));
}

/// Found by the lifecycle fuzzer: a refusal decided at the trailers also stripped them, first;
/// when that host call failed, the failure met a refused stream and the client got no answer.
#[test]
fn a_refusal_at_the_trailers_is_answered_without_touching_them() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = World::new(Setup::InlineKeys);
    let mut stream = Stream::new();
    world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", CHAT, &member),
            end_of_stream: false,
        },
    );
    world.step(
        &mut stream,
        Event::RequestBody {
            bytes: br#"{"model": "other"}"#,
            end_of_stream: false,
        },
    );
    let trailers = vec![("authorization".to_string(), "Bearer smuggled".to_string())];
    let step = world.step(&mut stream, Event::RequestTrailers { trailers });
    assert!(matches!(
        step.actions.as_slice(),
        [HostAction::SendResponse(_), HostAction::Record(_)]
    ));
}

/// Found by the lifecycle fuzzer: a host call failing after the allow was recorded (stripping
/// trailers) wrote a second, denying record. The stream is cut with 503 and a warning instead.
#[test]
fn a_host_failure_after_the_allow_cuts_the_stream_with_its_one_record() {
    let member = format!("Bearer {}", token(json!({})));
    let mut world = World::new(Setup::InlineKeys);
    let mut stream = Stream::new();
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", "/api/2.1/jobs/run-now", &member),
            end_of_stream: false,
        },
    );
    assert_eq!(step.reply, Reply::Continue);
    let trailers = vec![("authorization".to_string(), "Bearer smuggled".to_string())];
    let step = world.step(&mut stream, Event::RequestTrailers { trailers });
    assert!(matches!(
        step.actions.as_slice(),
        [HostAction::SetRequestTrailers(_)]
    ));
    let step = world.step(&mut stream, Event::HostFailure("set_map failed".into()));
    assert_eq!(step.reply, Reply::Pause);
    assert!(matches!(
        step.actions.as_slice(),
        [HostAction::SendResponse(r), HostAction::Warn(_)] if r.status == 503
    ));
}

/// An allow from outside the stream's callbacks resumes it before recording it: a resume that
/// fails is refused and recorded as the refusal, never as an allow.
#[test]
fn a_failed_resume_is_recorded_as_the_refusal_only() {
    let member = format!("Bearer {}", token(json!({})));
    let mut world = World::new(Setup::Exchange);
    let mut stream = Stream::new();
    world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("GET", "/api/2.1/jobs/list", &member),
            end_of_stream: true,
        },
    );
    let step = world.step(&mut stream, Event::UpstreamToken(Ok("dbx-token".into())));
    let kinds: Vec<&str> = step
        .actions
        .iter()
        .map(|action| match action {
            HostAction::SetRequestHeaders(_) => "set_headers",
            HostAction::Resume => "resume",
            HostAction::Record(_) => "record",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["set_headers", "resume", "record"]);
    let step = world.step(&mut stream, Event::HostFailure("resume failed".into()));
    let records: Vec<&Record> = step
        .actions
        .iter()
        .filter_map(|action| match action {
            HostAction::Record(record) => Some(record.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].audit.reason, Some("internal_error"));
}

/// The host calls an allowed cache hit costs (docs/BENCHMARKS.md, "Where the time goes"): one
/// write of the header map, one record moving two counters, and the callback continues.
#[test]
fn an_allowed_cache_hit_writes_the_headers_once_and_moves_two_counters() {
    let mut world = World::new(Setup::InlineKeys);
    let auth = format!("Bearer {}", token(json!({})));
    let mut steps = Vec::new();
    for _ in 0..2 {
        let mut stream = Stream::new();
        steps.push(world.step(
            &mut stream,
            Event::RequestHeaders {
                headers: headers("GET", "/api/2.1/jobs/list", &auth),
                end_of_stream: true,
            },
        ));
    }
    let hit = steps.pop().unwrap();
    assert_eq!(hit.reply, Reply::Continue);
    let [HostAction::SetRequestHeaders(_), HostAction::Record(record)] = hit.actions.as_slice()
    else {
        panic!(
            "expected one header write and one record: {:?}",
            hit.actions
        )
    };
    let counters: Vec<String> = record.counters().map(|c| c.into_owned()).collect();
    assert_eq!(
        counters,
        [crate::metrics::TOKEN_CACHE_HIT, crate::metrics::ALLOWED]
    );
}

#[test]
fn an_agent_body_of_unknown_length_is_held_and_refused_past_its_limit() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:agents_a-b-c"})));
    let path = "/serving-endpoints/agents_a-b-c/invocations";
    let chunk: &'static str = Box::leak("x".repeat(1 << 20).into_boxed_str());
    // (chunks of 1 MiB then one byte, refused): 4 MiB passes, 4 MiB + 1 does not.
    for (chunks, extra, refused) in [(4, false, false), (4, true, true)] {
        let mut events: Vec<HostEvent> =
            (0..chunks).map(|_| HostEvent::Body(chunk, false)).collect();
        events.push(HostEvent::Body(if extra { "y" } else { "" }, true));
        let host = run(Setup::InlineKeys, headers("POST", path, &member), &events);
        if refused {
            assert!(host.upstream_headers.is_none());
            assert!(host.upstream_body.is_empty());
            let reply = host.local_reply.as_ref().unwrap();
            assert_eq!(reply.status, 413);
            let detail = host.records[0].audit.detail.as_deref().unwrap_or_default();
            assert!(detail.contains("agent endpoint `agents_a-b-c`"), "{detail}");
            assert!(
                detail.contains("databricks.serving_body_limits"),
                "{detail}"
            );
        } else {
            assert!(host.local_reply.is_none());
            assert_eq!(host.upstream_body.len(), 4 << 20);
        }
    }
}

/// A header or trailer that is not UTF-8 (the adapter's `UnreadableHeaders` /
/// `UnreadableTrailers`): 400 `bad_header` naming it, recorded once, never released; after an
/// allow, the stream is cut (the trailers must not follow) and the allow stays its one record.
#[test]
fn a_header_or_trailer_that_is_not_utf8_is_refused_in_every_state() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let bad_header = |step: &Step, name: &str| {
        assert_eq!(step.reply, Reply::Pause);
        let response = step.actions.iter().find_map(|a| match a {
            HostAction::SendResponse(r) => Some(r),
            _ => None,
        });
        let response = response.expect("no local reply");
        assert_eq!(response.status, 400);
        assert_eq!(response.header("x-brickgate-reason"), Some("bad_header"));
        let body = String::from_utf8_lossy(&response.body);
        assert!(body.contains(name) && !body.contains("smuggled"), "{body}");
    };
    let records = |step: &Step| -> Vec<Option<&'static str>> {
        step.actions
            .iter()
            .filter_map(|a| match a {
                HostAction::Record(r) => Some(r.audit.reason),
                _ => None,
            })
            .collect()
    };

    // At the headers: refused, recorded with the path read lossily.
    let mut world = World::new(Setup::InlineKeys);
    let mut stream = Stream::new();
    let step = world.step(
        &mut stream,
        Event::UnreadableHeaders {
            name: "x-note".into(),
            headers: headers("GET", "/api/2.1/jobs/list", &member),
        },
    );
    bad_header(&step, "request header x-note");
    assert_eq!(records(&step), [Some("bad_header")]);
    assert_eq!(stream.phase(), "refused");

    // The headers arrive (leaving the stream in `phase`), then a trailer that is not UTF-8.
    let garbled_trailer_after = |setup, method, path, phase: &str| {
        let mut world = World::new(setup);
        let mut stream = Stream::new();
        let at_headers = world.step(
            &mut stream,
            Event::RequestHeaders {
                headers: headers(method, path, &member),
                end_of_stream: false,
            },
        );
        assert_eq!(stream.phase(), phase);
        let step = world.step(&mut stream, garbled_trailer());
        (world, stream, at_headers, step)
    };

    // While reading a body (held at the headers): refused before anything went upstream.
    let (_, _, _, step) = garbled_trailer_after(Setup::InlineKeys, "POST", CHAT, "reading_body");
    bad_header(&step, "request trailer x-trace");
    assert_eq!(records(&step), [Some("bad_header")]);

    // While waiting for keys.
    let (_, stream, _, step) = garbled_trailer_after(
        Setup::RemoteKeys,
        "GET",
        "/api/2.1/jobs/list",
        "waiting_for_keys",
    );
    bad_header(&step, "request trailer x-trace");
    assert_eq!(records(&step), [Some("bad_header")]);
    assert!(!stream.is_held());

    // Allowed at the headers: the trailers cut the stream, with no second record.
    let (mut world, mut stream, at_headers, step) = garbled_trailer_after(
        Setup::InlineKeys,
        "POST",
        "/api/2.1/jobs/run-now",
        "allowed",
    );
    assert_eq!(at_headers.reply, Reply::Continue);
    bad_header(&step, "request trailer x-trace");
    assert!(records(&step).is_empty());
    assert!(
        step.actions
            .iter()
            .any(|a| matches!(a, HostAction::Warn(_)))
    );
    assert_eq!(stream.phase(), "refused");

    // Refused already: nothing more.
    let step = world.step(&mut stream, garbled_trailer());
    assert_eq!(step.reply, Reply::Pause);
    assert!(step.actions.is_empty());
}

fn garbled_trailer() -> Event<'static> {
    Event::UnreadableTrailers {
        name: "x-trace".into(),
    }
}

/// Bodies held by all streams of a VM are bounded (`databricks.max_held_body_bytes`): the stream
/// that would go over is refused with 503 `overloaded` and Retry-After, nothing of it reaches the
/// upstream, and every held body's bytes come back when its stream ends, however it ends.
#[test]
fn held_bodies_are_bounded_per_vm_and_given_back_when_streams_end() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = World::new(Setup::InlineKeys);
    world.budget = BodyBudget::new(40);
    let start = |world: &mut World, stream: &mut Stream| {
        world.step(
            stream,
            Event::RequestHeaders {
                headers: headers("POST", CHAT, &member),
                end_of_stream: false,
            },
        );
        assert_eq!(stream.phase(), "reading_body");
    };
    let chunk = |world: &mut World, stream: &mut Stream, bytes: &[u8], end: bool| {
        world.step(
            stream,
            Event::RequestBody {
                bytes,
                end_of_stream: end,
            },
        )
    };
    let (mut first, mut second, mut third) = (Stream::new(), Stream::new(), Stream::new());
    start(&mut world, &mut first);
    start(&mut world, &mut second);
    chunk(&mut world, &mut first, br#"{"model": "churn", "#, false);
    assert_eq!(world.budget.held(), 19);
    let step = chunk(
        &mut world,
        &mut second,
        br#"{"model": "churn", "messages": []}"#,
        true,
    );
    assert_eq!(step.reply, Reply::Pause);
    let response = step.actions.iter().find_map(|a| match a {
        HostAction::SendResponse(r) => Some(r),
        _ => None,
    });
    let response = response.expect("not refused");
    assert_eq!(
        (response.status, response.header("x-brickgate-reason")),
        (503, Some("overloaded"))
    );
    assert_eq!(response.header("retry-after"), Some("5"));
    assert!(String::from_utf8_lossy(&response.body).contains("databricks.max_held_body_bytes"));
    assert_eq!(world.budget.held(), 19, "the refused stream holds nothing");
    // The first one finishes and is allowed: its body goes upstream, and out of the budget.
    let step = chunk(&mut world, &mut first, br#""messages": []}"#, true);
    assert_eq!(step.reply, Reply::Continue);
    assert_eq!(world.budget.held(), 0);
    // A stream refused mid-body, or dropped by the host mid-body, gives its bytes back too.
    start(&mut world, &mut third);
    chunk(&mut world, &mut third, b"{", false);
    assert_eq!(world.budget.held(), 1);
    drop(third);
    assert_eq!(world.budget.held(), 0);
}
