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
use crate::identity::Principal;
use crate::jwks::{FetchOutcome, JwksStore};
use crate::shared_data::InMemorySharedData;
use crate::verify::InWasmVerifier;

mod buffer_filter;
mod credentials_first;
mod host_failures;
mod limits_and_deadlines;
mod verdict_order;

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
        "databricks": {"route_catalogue": false},
        "identity": {"publish": ["sub", "rule"]}
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
    /// The principal published before the headers went on.
    published: Option<Principal>,
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
                HostAction::Publish(principal) => {
                    assert!(
                        self.upstream_headers.is_none(),
                        "principal published after release"
                    );
                    self.published = Some(*principal);
                }
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
/// The principal is published before the request goes on (`FakeHost::apply` checks the order),
/// whether decided at once or after the keys arrived; a refusal publishes nothing.
#[test]
fn only_an_allowed_request_publishes_its_principal_before_it_goes_on() {
    let allowed = Principal {
        subject: Some("alice@example.com".into()),
        rule: Some("jobs".into()),
        ..Principal::default()
    };
    let bearer = format!("Bearer {}", token(json!({})));
    let cases = [
        (
            Setup::InlineKeys,
            bearer.as_str(),
            vec![],
            Some(allowed.clone()),
        ),
        (
            Setup::RemoteKeys,
            bearer.as_str(),
            vec![HostEvent::KeysArrive, HostEvent::Wake],
            Some(allowed),
        ),
        (Setup::InlineKeys, "Bearer not-a-token", vec![], None),
        (Setup::InlineKeys, "", vec![], None),
    ];
    for (setup, authorization, events, expected) in cases {
        let host = run(
            setup,
            headers("GET", "/api/2.1/jobs/list", authorization),
            &events,
        );
        assert_eq!(host.published, expected, "{setup:?} {authorization:.20}");
        assert_eq!(host.upstream_headers.is_some(), expected.is_some());
    }
}

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
