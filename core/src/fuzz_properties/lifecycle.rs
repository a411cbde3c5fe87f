//! The lifecycle fuzzer: random sequences of host events for several streams on two workers
//! (VMs) that share keys and Databricks tokens through shared data, with the IdP rotating its
//! keys, fetches and token calls answering (or failing) in any order, time passing and host
//! calls failing, and the host failing to read a callback's input. A fake host models Envoy's
//! pause semantics (with `allow_on_headers_stop_iteration: true`) and the adapter's `drive` (an
//! action that fails stops the step and feeds the failure back). Checked on every run:
//!
//! - nothing reaches the upstream unless an allow record of that stream covers it, and what it
//!   receives is what the policy allows for exactly those bytes (an independent oracle: token
//!   kind, route, the `model` of the body the upstream got);
//! - no stream is still held once its deadline has passed and the root has woken it (keys,
//!   first body callback, whole body), and every stream is answered once the client has sent
//!   everything and every call has ended;
//! - credentials before bodies: a stream with no credential, or one that is not a JWT, never
//!   waits for anything, and only a credential some rule admits has its body read after its keys
//!   are known (`reading_body`);
//! - every stream has at most one audit record at any time, and exactly one once answered,
//!   whose decision is the answer (a host failure in a later callback included).
//!
//! Every input runs twice: once as above, and once with `body_rules: buffer_filter` against a
//! host modelled as Istio and Envoy Gateway render the filter (no
//! `allow_on_headers_stop_iteration`) with Envoy's buffer filter right after brickgate
//! (`Host::BufferFilter`): headers paused by brickgate get no body or trailers callback until
//! they go on (what the client sent meanwhile is delivered then); what brickgate lets on goes
//! to the buffer filter, which lets the request reach the upstream only once its end has gone
//! past brickgate, and drops it on a local reply; a header edit after the headers went on fails
//! (mesh-facts §3). The same properties hold: in particular the end of the body never passes a
//! refusal, and nothing reaches the upstream without exactly one allow record.

use std::collections::BTreeSet;

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::Input;
use crate::cache::TokenCache;
use crate::config::Config;
use crate::databricks::exchange::UpstreamTokens;
use crate::engine::Engine;
use crate::error::DenyResponse;
use crate::jwks::shared::InMemorySharedData;
use crate::jwks::{FetchOutcome, FetchRequest, JwksStore};
use crate::stream::{
    BodyBudget, Env, Event, Headers, HostAction, Record, Reply, Stream, TokenCalls,
};
use crate::verify::InWasmVerifier;

const NOW_MS: u64 = 1_800_000_000_000;
const ISSUER: &str = "https://idp.fuzz";
const WAIT_FOR_KEYS_MS: u64 = 2_000;
const FIRST_BODY_WAIT_MS: u64 = 3_000;
const BODY_DEADLINE_MS: u64 = 5_000;
const MAX_BODY_BYTES: usize = 1024;
/// Per VM: two chat bodies held at once fit, a third does not (503 `overloaded`).
const MAX_HELD_BODY_BYTES: usize = 100;
const MAX_STREAMS: usize = 4;
const MAX_EVENTS: usize = 64;
const SUBJECT: &str = "fuzz-user";
const CHAT: &str = "/serving-endpoints/chat/completions";
/// Trailers a client sends: credentials and identity in them never reach the upstream.
const TRAILERS: [(&str, &str); 3] = [
    ("x-trace", "1"),
    ("authorization", "Bearer smuggled"),
    ("x-brickgate-subject", "spoofed"),
];

/// How the host runs brickgate (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Host {
    /// `allow_on_headers_stop_iteration: true`, `body_rules: hold_headers`.
    HoldHeaders,
    /// No flag; Envoy's buffer filter after brickgate; `body_rules: buffer_filter`.
    BufferFilter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    InlineKeys,
    RemoteKeys,
    Exchange,
}

/// Signing keys: two the IdP publishes (in turn), one it never does.
const K1: [u8; 32] = [1; 32];
const K2: [u8; 32] = [2; 32];
const ATTACKER: [u8; 32] = [3; 32];

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn keypair(seed: &[u8; 32]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(seed).unwrap()
}

fn jwk(kid: &str, seed: &[u8; 32]) -> Value {
    let public = keypair(seed).public_key().as_ref().to_vec();
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn jwks(published: &[&str]) -> Vec<u8> {
    let keys: Vec<Value> = published
        .iter()
        .map(|kid| jwk(kid, if *kid == "k1" { &K1 } else { &K2 }))
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

fn mint(seed: &[u8; 32], kid: &str, claims: Value) -> String {
    let header = b64(json!({"alg": "EdDSA", "kid": kid, "typ": "JWT"})
        .to_string()
        .as_bytes());
    let payload = b64(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let signature = keypair(seed).sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

/// What a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Signed with k1: scope `serving:churn`.
    Member,
    /// Signed with k2 (published after a rotation): group `fraud`.
    FraudAnalyst,
    /// Signed by a key never published, naming k1.
    Forged,
    /// Signed with k1, expired.
    Expired,
    /// Signed with k1 for another audience.
    OtherAudience,
    /// No credential.
    Anonymous,
    /// Not a JWT.
    Garbage,
    /// Signed by a key never published, naming a kid nobody has.
    UnknownKid,
}

const KINDS: [Kind; 8] = [
    Kind::Member,
    Kind::FraudAnalyst,
    Kind::Forged,
    Kind::Expired,
    Kind::OtherAudience,
    Kind::Anonymous,
    Kind::Garbage,
    Kind::UnknownKid,
];

fn claims(extra: Value) -> Value {
    let now_s = NOW_MS / 1000;
    let mut all =
        json!({"iss": ISSUER, "aud": "api", "sub": SUBJECT, "iat": now_s, "exp": now_s + 3600});
    for (key, value) in extra.as_object().unwrap() {
        all[key] = value.clone();
    }
    all
}

fn authorization(kind: Kind) -> Option<String> {
    let now_s = NOW_MS / 1000;
    let token = match kind {
        Kind::Member => mint(&K1, "k1", claims(json!({"scope": "serving:churn"}))),
        Kind::FraudAnalyst => mint(&K2, "k2", claims(json!({"groups": ["fraud"]}))),
        Kind::Forged => mint(
            &ATTACKER,
            "k1",
            claims(json!({"scope": "serving:churn", "groups": ["fraud"]})),
        ),
        Kind::Expired => mint(
            &K1,
            "k1",
            claims(json!({"scope": "serving:churn", "iat": now_s - 7200, "exp": now_s - 3600})),
        ),
        Kind::OtherAudience => mint(
            &K1,
            "k1",
            claims(json!({"aud": "other", "scope": "serving:churn"})),
        ),
        Kind::Anonymous => return None,
        Kind::Garbage => "not-a-jwt".to_string(),
        Kind::UnknownKid => mint(&ATTACKER, "k9", claims(json!({"scope": "serving:churn"}))),
    };
    Some(format!("Bearer {token}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Decided on the headers.
    JobsList,
    /// Decided on the body's `model`.
    Chat,
    /// Decided on the headers; has a body.
    JobsRunNow,
}

const MODELS: [&str; 4] = ["churn", "fraud", "other", "big"];

fn body_of(route: Route, model: &str) -> Vec<u8> {
    match (route, model) {
        (Route::JobsList, _) => Vec::new(),
        (Route::JobsRunNow, _) => br#"{"job_id": 7}"#.to_vec(),
        (Route::Chat, "big") => format!(
            r#"{{"model": "churn", "pad": "{}"}}"#,
            "x".repeat(MAX_BODY_BYTES)
        )
        .into_bytes(),
        (Route::Chat, model) => format!(r#"{{"model": "{model}", "messages": []}}"#).into_bytes(),
    }
}

/// Whether the policy allows `kind` on `route` for a body whose `model` is `model`, and the
/// rule that decides.
fn oracle(kind: Kind, route: Route, model: Option<&str>) -> (bool, &'static str) {
    let member = kind == Kind::Member;
    let analyst = kind == Kind::FraudAnalyst;
    match route {
        Route::JobsList | Route::JobsRunNow => (member || analyst, "jobs"),
        Route::Chat => match model {
            Some("fraud") => (analyst, "fraud-team"),
            Some("churn") => (member, "per-endpoint"),
            _ => (false, "per-endpoint"),
        },
    }
}

fn config(setup: Setup, host: Host) -> Config {
    let keys = match setup {
        Setup::InlineKeys => {
            json!({"inline": serde_json::from_slice::<Value>(&jwks(&["k1", "k2"])).unwrap()})
        }
        Setup::RemoteKeys | Setup::Exchange => json!({"remote": {
            "cluster": "idp", "uri": "https://idp.fuzz/keys", "wait_for_keys_ms": WAIT_FOR_KEYS_MS,
            "refetch_min_interval_s": 1
        }}),
    };
    let upstream = match setup {
        Setup::Exchange => json!({"mode": "exchange", "cluster": "ws",
            "workspace_url": "https://adb-1.azuredatabricks.net", "scopes": ["all-apis"]}),
        Setup::InlineKeys | Setup::RemoteKeys => json!({"mode": "pass_through"}),
    };
    let body_rules = match host {
        Host::HoldHeaders => "hold_headers",
        Host::BufferFilter => "buffer_filter",
    };
    let config = json!({
        "body_rules": body_rules,
        "providers": {"idp": {"issuer": ISSUER, "audiences": ["api"], "algorithms": ["EdDSA"],
            "jwks": keys, "upstream": upstream}},
        "rules": [
            {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["idp"], "require": {"groups_any": ["fraud"]}},
            {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["idp"], "require": {"scopes_any": ["serving:{name}"]}},
            {"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["idp"]}
        ],
        "databricks": {"route_catalogue": false, "max_body_bytes": MAX_BODY_BYTES, "first_body_wait_ms": FIRST_BODY_WAIT_MS, "body_deadline_ms": BODY_DEADLINE_MS}
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

/// How the client ends its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    EndOfStream,
    Trailers,
}

/// One stream as the fake host sees it.
#[derive(Debug)]
struct Client {
    worker: usize,
    kind: Kind,
    route: Route,
    authorization: Option<String>,
    /// The body, and how much of it the client has sent.
    body: Vec<u8>,
    chunks: Vec<usize>,
    sent_chunks: usize,
    ending: Ending,
    trailers_sent: bool,
    /// Held by the host, not yet released.
    pending_headers: Option<Headers>,
    pending_body: Vec<u8>,
    pending_trailers: Option<Headers>,
    /// Released to the upstream.
    upstream_headers: Option<Headers>,
    upstream_body: Vec<u8>,
    upstream_trailers: Option<Headers>,
    /// `Host::BufferFilter`: what brickgate let on, held by the buffer filter until the
    /// request's end has gone past brickgate.
    in_buffer: (Option<Headers>, Vec<u8>, Option<Headers>),
    /// `Host::BufferFilter`: the headers went on (later header edits fail), and the callback
    /// carrying the request's end reached brickgate.
    headers_went_on: bool,
    end_delivered: bool,
    /// `Host::BufferFilter`: sent by the client while brickgate held the headers; the host
    /// delivers it once they go on (body bytes, then the trailers, garbled or not).
    queued_body: Option<Vec<u8>>,
    queued_trailers: Option<(Headers, bool)>,
    local_reply: Option<DenyResponse>,
    records: Vec<Record>,
    /// When it was first seen waiting for keys, and when its headers arrived.
    keys_wait_since: Option<u64>,
    headers_at: u64,
    body_events: usize,
    /// Allowed, then cut by a host call that failed (or by trailers it could not read).
    cut: bool,
    /// A fuzzed host call or read failed for it: the only reason besides a body that never
    /// came for brickgate to answer `internal_error`.
    host_failed: bool,
    /// Its headers, or its trailers, held a value that is not UTF-8 (the adapter's
    /// `UnreadableHeaders` / `UnreadableTrailers`).
    garbled_headers: bool,
    garbled_trailers: bool,
    stream: Stream,
}

impl Client {
    fn complete(&self) -> bool {
        self.sent_chunks == self.chunks.len()
            && (self.ending == Ending::EndOfStream || self.trailers_sent)
    }

    /// Answered locally, or allowed: passed on to the upstream, or (`Host::BufferFilter`) to
    /// the buffer filter, which passes it on with the request's end.
    fn answered(&self) -> bool {
        self.local_reply.is_some()
            || self.upstream_headers.is_some()
            || (self.in_buffer.0.is_some() && self.stream.phase() == "allowed")
    }
}

struct Worker {
    store: JwksStore,
    cache: TokenCache,
    tokens: UpstreamTokens,
    calls: TokenCalls,
    fetch: Option<FetchRequest>,
    in_flight: Vec<u32>,
    /// The VM's held bodies: small, so that streams run into it.
    budget: BodyBudget,
}

struct World {
    setup: Setup,
    host: Host,
    engine: Engine,
    shared: InMemorySharedData,
    workers: Vec<Worker>,
    clients: Vec<Client>,
    now_ms: u64,
    /// Key sets the IdP publishes in turn; `published` indexes the current one.
    published: usize,
    ever_published: BTreeSet<&'static str>,
    /// The next host call that carries out a verdict fails.
    fail_next_call: bool,
    /// The next headers or trailers a client sends hold a value that is not UTF-8.
    garble_next: bool,
    next_callout: u32,
    issued: usize,
}

const ROTATION: [&[&str]; 3] = [&["k1"], &["k1", "k2"], &["k2"]];

impl World {
    fn new(setup: Setup, host: Host) -> World {
        let config = config(setup, host);
        let workers = (0..2)
            .map(|vm| Worker {
                store: JwksStore::new(&config, vm + 1),
                cache: TokenCache::new(16, 1 << 16),
                tokens: UpstreamTokens::default(),
                calls: TokenCalls::default(),
                fetch: None,
                in_flight: Vec::new(),
                budget: BodyBudget::new(MAX_HELD_BODY_BYTES),
            })
            .collect();
        let mut ever_published = BTreeSet::new();
        if setup == Setup::InlineKeys {
            ever_published.extend(["k1", "k2"]);
        } else {
            ever_published.insert("k1");
        }
        World {
            setup,
            host,
            engine: Engine::new(config, Box::new(InWasmVerifier)),
            shared: InMemorySharedData::default(),
            workers,
            clients: Vec::new(),
            now_ms: NOW_MS,
            published: 0,
            ever_published,
            fail_next_call: false,
            garble_next: false,
            next_callout: 1,
            issued: 0,
        }
    }

    /// The adapter's `drive`: step, carry out the actions in order; a host call that fails
    /// stops them and is fed back as [`Event::HostFailure`]. `in_callback`: the event is the
    /// stream's own callback, whose reply the host acts on.
    fn drive(&mut self, id: usize, event: Event<'_>, in_callback: bool) {
        let mut event = Some(event);
        let mut reply = Reply::Pause;
        let mut released = false;
        for _ in 0..2 {
            let Some(current) = event.take() else { break };
            let client = &mut self.clients[id];
            let worker = &mut self.workers[client.worker];
            let mut env = Env {
                engine: &self.engine,
                store: &mut worker.store,
                cache: &mut worker.cache,
                upstream_tokens: &mut worker.tokens,
                shared: &self.shared,
                now_ms: self.now_ms,
                fingerprint: true,
                body_budget: &worker.budget,
            };
            let step = client.stream.step(&mut env, current);
            reply = step.reply;
            for action in step.actions {
                let host_call = matches!(
                    action,
                    HostAction::SetRequestHeaders(_)
                        | HostAction::SetRequestTrailers(_)
                        | HostAction::Resume
                );
                if host_call && std::mem::take(&mut self.fail_next_call) {
                    client.host_failed = true;
                    event = Some(Event::HostFailure("fuzzed host call failure".into()));
                    break;
                }
                match action {
                    HostAction::SetRequestHeaders(headers) => {
                        assert!(
                            client.upstream_headers.is_none() && !client.headers_went_on,
                            "headers changed after release"
                        );
                        client.pending_headers = Some(headers.to_headers());
                    }
                    HostAction::SetRequestTrailers(trailers) => {
                        if client.pending_trailers.is_some() {
                            client.pending_trailers = Some(trailers);
                        }
                    }
                    HostAction::SendResponse(response) => {
                        assert!(client.local_reply.is_none(), "two local replies");
                        if client.upstream_headers.is_some() || released {
                            // Only an allowed stream whose verdict could not be carried out is
                            // cut after release (Envoy resets the upstream request).
                            assert!(
                                client.records.iter().any(Record::is_allowed),
                                "local reply after release"
                            );
                            assert!(
                                response.status >= 500
                                    || (client.garbled_trailers && response.status == 400),
                                "a cut stream blames the client"
                            );
                            client.cut = true;
                        } else if client.headers_went_on
                            && client.records.iter().any(Record::is_allowed)
                        {
                            // Allowed, its headers in the buffer filter: the reply drops them.
                            client.cut = true;
                        }
                        client.local_reply = Some(response);
                    }
                    HostAction::Resume => {
                        assert!(!in_callback, "resume from inside a callback");
                        released |= release(client, self.host);
                    }
                    HostAction::FetchUpstreamToken(request) => {
                        // A new call is sent at once from the stream's context.
                        if let Some(request) = worker.calls.wait_for(request, id as u32) {
                            let callout = self.next_callout;
                            self.next_callout += 1;
                            let sender = crate::stream::calls::Sender::Stream(id as u32);
                            worker.calls.sent(callout, request, vec![id as u32], sender);
                            worker.in_flight.push(callout);
                        }
                    }
                    HostAction::Record(record) => client.records.push(*record),
                    HostAction::Warn(_) => {}
                }
            }
        }
        let client = &mut self.clients[id];
        if in_callback && reply == Reply::Continue && client.local_reply.is_none() {
            released |= release(client, self.host);
        }
        if client.stream.phase() == "waiting_for_keys" && client.keys_wait_since.is_none() {
            client.keys_wait_since = Some(self.now_ms);
        }
        if released {
            self.check_release(id);
        }
        self.check_records(id);
        self.check_credentials_first(id);
        self.deliver_queued(id);
    }

    /// `Host::BufferFilter`: once the headers went on, the host delivers what the client sent
    /// while they were held: its body so far in one callback, then its trailers.
    fn deliver_queued(&mut self, id: usize) {
        let client = &mut self.clients[id];
        if !client.headers_went_on || client.local_reply.is_some() {
            return;
        }
        if let Some(bytes) = client.queued_body.take() {
            let end_of_stream = client.complete()
                && client.ending == Ending::EndOfStream
                && client.queued_trailers.is_none();
            client.end_delivered |= end_of_stream;
            let bytes = if client.stream.wants_body_bytes() {
                bytes
            } else {
                Vec::new()
            };
            let event = Event::RequestBody {
                bytes: &bytes,
                end_of_stream,
            };
            self.drive(id, event, true);
            return;
        }
        if let Some((trailers, garbled)) = client.queued_trailers.take() {
            client.end_delivered = true;
            let event = if garbled {
                Event::UnreadableTrailers {
                    name: "x-trace".to_string(),
                }
            } else {
                Event::RequestTrailers { trailers }
            };
            self.drive(id, event, true);
        }
    }

    /// `Host::BufferFilter`: brickgate holds the headers, so the host holds back every later
    /// callback.
    fn held_back(&self, id: usize) -> bool {
        let client = &self.clients[id];
        self.host == Host::BufferFilter && !client.headers_went_on
    }

    /// Only a credential that could be admitted is held: without one (or with one that is not
    /// a JWT) a stream is answered at its headers; in `reading_body` its token has verified.
    fn check_credentials_first(&self, id: usize) {
        let client = &self.clients[id];
        let phase = client.stream.phase();
        if matches!(client.kind, Kind::Anonymous | Kind::Garbage) {
            assert!(
                !client.stream.is_held(),
                "{:?} held in {phase}",
                client.kind
            );
        }
        if phase == "reading_body" || phase == "streaming_body" {
            assert!(
                matches!(client.kind, Kind::Member | Kind::FraudAnalyst),
                "{:?} reads its body",
                client.kind
            );
        }
    }

    /// The host cannot read what the client sends next (its body chunk or trailers): the
    /// adapter sends [`Event::ReadFailure`] in place of that callback's event.
    fn read_failure(&mut self, id: usize) {
        let client = &self.clients[id];
        if client.local_reply.is_some() || client.complete() || self.held_back(id) {
            return;
        }
        self.clients[id].host_failed = true;
        let event = Event::ReadFailure("fuzzed read failure".into());
        self.drive(id, event, true);
    }

    /// What reached the upstream is covered by an allow record, and is what the policy allows.
    fn check_release(&self, id: usize) {
        let client = &self.clients[id];
        assert!(!client.garbled_headers, "released with unreadable headers");
        let allows = client.records.iter().filter(|r| r.is_allowed()).count();
        assert_eq!(
            allows, 1,
            "released without exactly one allow record: {client:?}"
        );
        assert!(
            client.local_reply.is_none() || client.cut,
            "released and answered locally"
        );
        let sent = client
            .upstream_headers
            .as_ref()
            .expect("released without headers");
        let header = |name: &str| {
            sent.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let model = (client.route == Route::Chat).then(|| {
            assert_eq!(
                client.upstream_body, client.body,
                "a body-decided request released before its whole body"
            );
            crate::databricks::serving::model_from_body(&client.upstream_body, MAX_BODY_BYTES).ok()
        });
        let (allowed, rule) = oracle(
            client.kind,
            client.route,
            model.clone().flatten().as_deref(),
        );
        assert!(
            allowed,
            "admitted: {:?} on {:?} (model {model:?})",
            client.kind, client.route
        );
        let record = client.records.iter().find(|r| r.is_allowed()).unwrap();
        assert_eq!(record.audit.rule.as_deref(), Some(rule));
        let kid = if client.kind == Kind::Member {
            "k1"
        } else {
            "k2"
        };
        assert!(
            self.ever_published.contains(kid),
            "admitted with a key never published"
        );
        assert_eq!(
            header("x-brickgate-subject"),
            Some(SUBJECT),
            "identity not from the token"
        );
        let authorization = header("authorization");
        match self.setup {
            Setup::Exchange => assert!(
                authorization.is_some_and(|a| a.starts_with("Bearer dbx-")),
                "the client's token went upstream in exchange mode"
            ),
            Setup::InlineKeys | Setup::RemoteKeys => {
                assert_eq!(authorization, client.authorization.as_deref())
            }
        }
    }

    fn check_records(&self, id: usize) {
        let client = &self.clients[id];
        let expected = usize::from(client.answered());
        assert_eq!(
            client.records.len(),
            expected,
            "records for one stream: {:?}",
            client.records
        );
        if let (Some(reply), Some(record), false) =
            (&client.local_reply, client.records.first(), client.cut)
        {
            assert!(
                !record.is_allowed(),
                "answered locally with an allow record"
            );
            assert_eq!(record.audit.status, reply.status);
        }
        for record in &client.records {
            if record.audit.reason == Some("internal_error") {
                let detail = record.audit.detail.as_deref().unwrap_or_default();
                assert!(
                    client.host_failed || detail.contains("no request body reached brickgate"),
                    "internal_error without a host failure: {detail}"
                );
            }
        }
        assert!(
            !(client.garbled_trailers && client.upstream_trailers.is_some()),
            "unreadable trailers reached the upstream"
        );
        if let Some(trailers) = &client.upstream_trailers {
            for (name, _) in trailers {
                assert!(
                    name != "authorization" && !name.starts_with("x-brickgate-"),
                    "trailer {name} reached the upstream"
                );
            }
        }
    }

    fn start(&mut self, input: &mut Input<'_>) {
        if self.clients.len() >= MAX_STREAMS {
            return;
        }
        let worker = input.below(2);
        let kind = *input.choose(&KINDS);
        let route = *input.choose(&[Route::JobsList, Route::Chat, Route::JobsRunNow]);
        let model = *input.choose(&MODELS);
        let body = body_of(route, model);
        let pieces = if body.is_empty() {
            0
        } else {
            1 + input.below(3)
        };
        let mut chunks = Vec::new();
        let mut left = body.len();
        for piece in 0..pieces {
            let size = if piece + 1 == pieces {
                left
            } else {
                left.min(1 + input.below(40))
            };
            chunks.push(size);
            left -= size;
        }
        let ending = if !body.is_empty() && input.byte().is_multiple_of(3) {
            Ending::Trailers
        } else {
            Ending::EndOfStream
        };
        let path = match route {
            Route::JobsList => "/api/2.1/jobs/list",
            Route::Chat => CHAT,
            Route::JobsRunNow => "/api/2.1/jobs/run-now",
        };
        let method = if route == Route::JobsList {
            "GET"
        } else {
            "POST"
        };
        let authorization = authorization(kind);
        let mut headers: Headers = vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
            (":authority".into(), "gw.test".into()),
            ("x-brickgate-subject".into(), "spoofed".into()),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization".into(), value.clone()));
        }
        let end_of_stream = chunks.is_empty() && ending == Ending::EndOfStream;
        self.clients.push(Client {
            worker,
            kind,
            route,
            authorization,
            body,
            chunks,
            sent_chunks: 0,
            ending,
            trailers_sent: false,
            pending_headers: Some(headers.clone()),
            pending_body: Vec::new(),
            pending_trailers: None,
            upstream_headers: None,
            upstream_body: Vec::new(),
            upstream_trailers: None,
            in_buffer: (None, Vec::new(), None),
            headers_went_on: false,
            end_delivered: false,
            queued_body: None,
            queued_trailers: None,
            local_reply: None,
            records: Vec::new(),
            keys_wait_since: None,
            headers_at: self.now_ms,
            body_events: 0,
            cut: false,
            host_failed: false,
            garbled_headers: false,
            garbled_trailers: false,
            stream: Stream::new(),
        });
        let id = self.clients.len() - 1;
        if std::mem::take(&mut self.garble_next) {
            self.clients[id].garbled_headers = true;
            let name = "x-note".to_string();
            self.drive(id, Event::UnreadableHeaders { name, headers }, true);
            return;
        }
        self.drive(
            id,
            Event::RequestHeaders {
                headers,
                end_of_stream,
            },
            true,
        );
    }

    /// The client sends its next body chunk (or, with everything sent, its trailers).
    fn send_next(&mut self, id: usize) {
        let held_back = self.held_back(id);
        let client = &mut self.clients[id];
        if client.local_reply.is_some() || client.complete() {
            return;
        }
        if client.sent_chunks == client.chunks.len() {
            client.trailers_sent = true;
            let trailers: Headers = TRAILERS
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            client.pending_trailers = Some(trailers.clone());
            if held_back {
                let garbled = std::mem::take(&mut self.garble_next);
                client.garbled_trailers |= garbled;
                client.queued_trailers = Some((trailers, garbled));
                return;
            }
            client.end_delivered = true;
            if std::mem::take(&mut self.garble_next) {
                // Had the stream gone on, the host would pass these on as they came.
                client.garbled_trailers = true;
                let name = "x-trace".to_string();
                self.drive(id, Event::UnreadableTrailers { name }, true);
                return;
            }
            self.drive(id, Event::RequestTrailers { trailers }, true);
            return;
        }
        let start: usize = client.chunks[..client.sent_chunks].iter().sum();
        let size = client.chunks[client.sent_chunks];
        client.sent_chunks += 1;
        let chunk = client.body[start..start + size].to_vec();
        let end_of_stream =
            client.sent_chunks == client.chunks.len() && client.ending == Ending::EndOfStream;
        client.pending_body.extend_from_slice(&chunk);
        client.body_events += 1;
        if held_back {
            client
                .queued_body
                .get_or_insert_with(Vec::new)
                .extend_from_slice(&chunk);
            return;
        }
        client.end_delivered |= end_of_stream;
        let bytes = if client.stream.wants_body_bytes() {
            chunk
        } else {
            Vec::new()
        };
        self.drive(
            id,
            Event::RequestBody {
                bytes: &bytes,
                end_of_stream,
            },
            true,
        );
    }

    /// The root context's tick on one worker: adopt and start fetches, send token calls, wake.
    fn tick(&mut self, w: usize) {
        let worker = &mut self.workers[w];
        let (fetches, _) = worker.store.tick(&self.shared, self.now_ms);
        if let Some(fetch) = fetches.into_iter().next() {
            assert!(
                worker.fetch.is_none(),
                "two fetches in flight on one worker"
            );
            worker.fetch = Some(fetch);
        }
        for (request, waiting) in worker.calls.take_queued() {
            let callout = self.next_callout;
            self.next_callout += 1;
            worker.calls.sent(
                callout,
                request,
                waiting,
                crate::stream::calls::Sender::Root,
            );
            worker.in_flight.push(callout);
        }
        self.wake(w);
    }

    /// Wakes the held streams of a worker for which something happened, then checks that none
    /// is left past its deadline.
    fn wake(&mut self, w: usize) {
        for id in 0..self.clients.len() {
            let client = &self.clients[id];
            if client.worker == w
                && client.local_reply.is_none()
                && client
                    .stream
                    .wants_wake(&self.workers[w].store, self.now_ms)
            {
                self.drive(id, Event::Wake, false);
            }
        }
        for client in self.clients.iter().filter(|c| c.worker == w) {
            if let Some(since) = client.keys_wait_since
                && client.stream.phase() == "waiting_for_keys"
            {
                assert!(
                    self.now_ms < since + WAIT_FOR_KEYS_MS,
                    "held for keys past its deadline"
                );
            }
            if client.stream.phase() == "reading_body"
                && client.body_events == 0
                && self.host == Host::HoldHeaders
            {
                assert!(
                    self.now_ms < client.headers_at + FIRST_BODY_WAIT_MS,
                    "held for a body that never came past its deadline"
                );
            }
            if client.stream.wants_body_bytes() {
                assert!(
                    self.now_ms < client.headers_at + BODY_DEADLINE_MS,
                    "held for a body past its deadline"
                );
            }
        }
    }

    fn answer_fetch(&mut self, w: usize, choice: u8) {
        let Some(fetch) = self.workers[w].fetch.take() else {
            return;
        };
        let current = ROTATION[self.published];
        let outcome = match choice % 5 {
            0 | 1 => FetchOutcome::Response {
                status: 200,
                body: jwks(current),
                max_age_s: None,
            },
            2 => FetchOutcome::Response {
                status: 500,
                body: b"oops".to_vec(),
                max_age_s: None,
            },
            3 => FetchOutcome::Response {
                status: 200,
                body: b"{\"keys\": 7".to_vec(),
                max_age_s: None,
            },
            _ => FetchOutcome::TransportFailure("reset".into()),
        };
        let worker = &mut self.workers[w];
        let (more, _) =
            worker
                .store
                .on_fetch_outcome(&self.shared, fetch.provider, outcome, self.now_ms);
        worker.fetch = more.into_iter().next();
        self.wake(w);
    }

    fn answer_token_call(&mut self, w: usize, choice: u8) {
        if self.workers[w].in_flight.is_empty() {
            return;
        }
        let callout = self.workers[w].in_flight.remove(0);
        self.issued += 1;
        let ok = format!(
            r#"{{"access_token": "dbx-{}", "expires_in": 3600}}"#,
            self.issued
        );
        let (status, body): (u32, &[u8]) = match choice % 4 {
            0 | 1 => (200, ok.as_bytes()),
            2 => (503, b"upstream connect error"),
            _ => (0, b""),
        };
        let worker = &mut self.workers[w];
        let Some(settled) = worker.calls.settle(
            callout,
            status,
            body,
            &mut worker.tokens,
            &self.shared,
            self.now_ms,
        ) else {
            return;
        };
        for stream in settled.streams {
            let id = stream as usize;
            if self.clients[id].local_reply.is_none() {
                self.drive(id, Event::UpstreamToken(settled.result.clone()), false);
            }
        }
    }

    /// The client finishes, the IdP and the workspace stop answering, time runs out: every
    /// stream must then be answered.
    fn drain(&mut self) {
        for id in 0..self.clients.len() {
            while !self.clients[id].complete() && self.clients[id].local_reply.is_none() {
                self.send_next(id);
            }
        }
        for _ in 0..6 {
            self.now_ms += FIRST_BODY_WAIT_MS.max(WAIT_FOR_KEYS_MS);
            for w in 0..self.workers.len() {
                self.tick(w);
                self.answer_fetch(w, 4);
                while !self.workers[w].in_flight.is_empty() {
                    self.answer_token_call(w, 3);
                }
                self.tick(w);
                while !self.workers[w].in_flight.is_empty() {
                    self.answer_token_call(w, 3);
                }
            }
        }
        for (id, client) in self.clients.iter().enumerate() {
            assert!(
                client.answered(),
                "stream {id} never answered: phase {}, {client:?}",
                client.stream.phase()
            );
            // A cut stream's upstream request is reset: what it got is not a request.
            if client.upstream_headers.is_some() && !client.cut {
                assert_eq!(
                    client.upstream_body, client.body,
                    "the upstream got another body"
                );
            }
            self.check_records(id);
        }
        // Every stream has ended: no body is still counted against its VM.
        for (w, worker) in self.workers.iter().enumerate() {
            assert_eq!(
                worker.budget.held(),
                0,
                "worker {w} still counts held body bytes"
            );
        }
    }
}

/// What brickgate held goes on: to the upstream, or (`Host::BufferFilter`) to the buffer
/// filter, which passes the whole request on once its end has gone past brickgate. Whether
/// the upstream received something.
fn release(client: &mut Client, host: Host) -> bool {
    let (headers, body, trailers) = match host {
        Host::HoldHeaders => (
            &mut client.upstream_headers,
            &mut client.upstream_body,
            &mut client.upstream_trailers,
        ),
        Host::BufferFilter => {
            // Only what was delivered to brickgate went past it; the rest is still queued.
            let queued = client.queued_body.as_ref().map_or(0, Vec::len);
            let delivered = client.pending_body.len() - queued;
            let (buffered_headers, buffered_body, buffered_trailers) = &mut client.in_buffer;
            if let Some(headers) = client.pending_headers.take() {
                client.headers_went_on = true;
                *buffered_headers = Some(headers);
            }
            buffered_body.extend(client.pending_body.drain(..delivered));
            if client.queued_trailers.is_none()
                && let Some(trailers) = client.pending_trailers.take()
            {
                *buffered_trailers = Some(trailers);
            }
            if !client.end_delivered {
                return false;
            }
            let (headers, body, trailers) = std::mem::take(&mut client.in_buffer);
            client.upstream_headers = headers;
            client.upstream_body = body;
            client.upstream_trailers = trailers;
            return true;
        }
    };
    if let Some(sent) = client.pending_headers.take() {
        *headers = Some(sent);
    }
    body.append(&mut client.pending_body);
    if let Some(sent) = client.pending_trailers.take() {
        *trailers = Some(sent);
    }
    true
}

/// Runs one sequence of host events under both hosts (see the module's documentation for what
/// it checks).
pub fn check(data: &[u8]) {
    check_with(data, Host::HoldHeaders);
    check_with(data, Host::BufferFilter);
}

fn check_with(data: &[u8], host: Host) {
    let mut input = Input::new(data);
    let setup = *input.choose(&[Setup::InlineKeys, Setup::RemoteKeys, Setup::Exchange]);
    let mut world = World::new(setup, host);
    let mut events = 0;
    while !input.is_empty() && events < MAX_EVENTS {
        events += 1;
        match input.byte() % 14 {
            0 | 1 => world.start(&mut input),
            2 | 3 => {
                if !world.clients.is_empty() {
                    let id = input.below(world.clients.len());
                    world.send_next(id);
                }
            }
            4 => {
                let w = input.below(2);
                world.tick(w);
            }
            5 | 6 => {
                let w = input.below(2);
                let choice = input.byte();
                world.answer_fetch(w, choice);
            }
            7 => {
                if setup != Setup::InlineKeys && world.published + 1 < ROTATION.len() {
                    world.published += 1;
                    world
                        .ever_published
                        .extend(ROTATION[world.published].iter().copied());
                }
            }
            8 => world.now_ms += *input.choose(&[10u64, 300, 1_500, 2_500, 4_000]),
            9 => {
                let w = input.below(2);
                let choice = input.byte();
                world.answer_token_call(w, choice);
            }
            10 => {
                if !world.clients.is_empty() {
                    let id = input.below(world.clients.len());
                    if world.clients[id].local_reply.is_none() {
                        world.drive(id, Event::Wake, false);
                    }
                }
            }
            11 => world.fail_next_call = true,
            12 => {
                if !world.clients.is_empty() {
                    let id = input.below(world.clients.len());
                    world.read_failure(id);
                }
            }
            _ => world.garble_next = true,
        }
    }
    world.fail_next_call = false;
    world.drain();
}
