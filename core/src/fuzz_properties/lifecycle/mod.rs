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
//! - the body bytes a body callback hands the core are picked out of Envoy's buffers by the
//!   native adapter's translation (`worker::BodyCursor`, modelled in `envoy_body`): the core
//!   sees every body byte exactly once and in order.
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
use std::sync::Arc;

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::Input;
use crate::cache::TokenCache;
use crate::config::Config;
use crate::databricks::exchange::UpstreamTokens;
use crate::engine::Engine;
use crate::error::DenyResponse;
use crate::jwks::shared::InMemorySharedData;
use crate::jwks::{FetchOutcome, FetchRequest};
use crate::stream::{BodyBudget, Event, Headers, Record, Reply};
use crate::verify::InWasmVerifier;
use crate::worker::{self, BodyCursor, Slot, Worker};

mod envoy_body;
mod events;
mod host;
mod model;
mod properties;

use model::*;

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
    /// Its lifecycle, as the adapters keep it for `worker::drive`.
    slot: Slot,
    /// The native adapter's place in Envoy's body buffer, and the body bytes the core was
    /// handed so far (`envoy_body`).
    body_cursor: BodyCursor,
    core_body: Vec<u8>,
    /// At its end with a buffer, Envoy hands over the buffer as the received chunk, rather
    /// than an empty chunk (`envoy_body`).
    received_is_buffer: bool,
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
            || (self.in_buffer.0.is_some() && self.slot.stream.phase() == "allowed")
    }
}

/// One VM: the production `Worker` (key store, caches, token calls, held bodies), and the
/// calls the fake host has in flight for it.
struct Vm {
    worker: Worker,
    fetch: Option<FetchRequest>,
    in_flight: Vec<u32>,
}

struct World {
    setup: Setup,
    host: Host,
    shared: InMemorySharedData,
    workers: Vec<Vm>,
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
