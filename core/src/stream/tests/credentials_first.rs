//! Credentials before bodies, the body deadline, and one record per request, through the
//! lifecycle: what the VM holds, what the client gets, how many records a stream writes.

use serde_json::{Value, json};

use super::*;

/// The records and the local reply of one stream's steps.
#[derive(Default)]
struct Outcome {
    records: Vec<Record>,
    replies: Vec<u32>,
}

impl Outcome {
    fn take(&mut self, step: &Step) {
        for action in &step.actions {
            match action {
                HostAction::Record(record) => self.records.push(record.as_ref().clone()),
                HostAction::SendResponse(response) => self.replies.push(response.status),
                _ => {}
            }
        }
    }
}

fn start(world: &mut World, stream: &mut Stream, path: &str, authorization: &str) -> Step {
    let mut request = headers("POST", path, authorization);
    if authorization.is_empty() {
        request.retain(|(name, _)| name != "authorization");
    }
    world.step(
        stream,
        Event::RequestHeaders {
            headers: request,
            end_of_stream: false,
        },
    )
}

fn body(world: &mut World, stream: &mut Stream, bytes: &[u8], end: bool) -> Step {
    world.step(
        stream,
        Event::RequestBody {
            bytes,
            end_of_stream: end,
        },
    )
}

const CHURN_BODY: &[u8] = br#"{"model": "churn", "messages": []}"#;

/// Issue 16, point 5: streams no rule could admit used to be held for their body, so that they
/// could fill `max_held_body_bytes` and every authenticated serving request got 503
/// `overloaded`. They are now refused at their headers and hold nothing.
#[test]
fn unauthenticated_streams_cannot_make_an_authenticated_request_overloaded() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let forged = {
        let real = token(json!({"scope": "serving:churn", "groups": ["fraud"]}));
        let (signed, _) = real.rsplit_once('.').unwrap();
        format!("Bearer {signed}.c2lnbmF0dXJl")
    };
    let expired = format!(
        "Bearer {}",
        token(json!({"scope": "serving:churn", "iat": NOW_S - 7200, "exp": NOW_S - 3600}))
    );
    let no_scope = format!("Bearer {}", token(json!({"scope": "jobs:read"})));
    let attackers: [(&str, &str, &str); 5] = [
        ("no token", "", "missing_token"),
        ("not a JWT", "Bearer garbage", "malformed_token"),
        ("forged", &forged, "bad_signature"),
        ("expired", &expired, "expired"),
        (
            "no scope or group any rule accepts",
            &no_scope,
            "group_not_allowed",
        ),
    ];
    let mut world = World::new(Setup::InlineKeys);
    // Room for exactly one chat body.
    world.budget = BodyBudget::new(CHURN_BODY.len());
    let mut held_open = Vec::new();
    for round in 0..20 {
        for (what, authorization, reason) in attackers {
            let mut stream = Stream::new();
            let mut outcome = Outcome::default();
            outcome.take(&start(&mut world, &mut stream, CHAT, authorization));
            assert_eq!(stream.phase(), "refused", "{what}");
            assert!(!stream.wants_body_bytes(), "{what}");
            assert_eq!(outcome.records.len(), 1, "{what}");
            assert_eq!(outcome.records[0].audit.reason, Some(reason), "{what}");
            // The client goes on sending: nothing is read, nothing is held.
            outcome.take(&body(&mut world, &mut stream, &CHURN_BODY[..10], false));
            assert_eq!(outcome.records.len(), 1, "{what}: one record");
            assert_eq!(
                world.budget.held(),
                0,
                "{what} (round {round}) holds body bytes"
            );
            held_open.push(stream);
        }
    }
    let mut stream = Stream::new();
    start(&mut world, &mut stream, CHAT, &member);
    assert_eq!(stream.phase(), "reading_body");
    let step = body(&mut world, &mut stream, CHURN_BODY, true);
    assert_eq!(step.reply, Reply::Continue, "{:?}", step.actions);
    assert_eq!(stream.phase(), "allowed");
}

/// A held body must arrive whole within `databricks.body_deadline_ms` of the headers: 408
/// `body_timeout`, one record, and its bytes go back to the VM's budget.
#[test]
fn a_body_not_whole_by_its_deadline_is_refused_and_given_back() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let deadline = crate::config::held_bodies::BODY_DEADLINE_MS;
    let mut world = World::new(Setup::InlineKeys);
    let mut stream = Stream::new();
    let headers_at = world.now_ms;
    start(&mut world, &mut stream, CHAT, &member);
    body(&mut world, &mut stream, &CHURN_BODY[..10], false);
    assert!(world.budget.held() > 0);
    // A trickle keeps arriving: not a first-body stall, and not yet late.
    world.now_ms = headers_at + deadline - 1;
    body(&mut world, &mut stream, &CHURN_BODY[10..12], false);
    assert!(!stream.wants_wake(&world.store, world.now_ms));
    world.now_ms = headers_at + deadline;
    assert!(stream.wants_wake(&world.store, world.now_ms));
    let mut outcome = Outcome::default();
    outcome.take(&world.step(&mut stream, Event::Wake));
    assert_eq!(outcome.replies, [408]);
    assert_eq!(outcome.records.len(), 1);
    assert_eq!(outcome.records[0].audit.reason, Some("body_timeout"));
    let counters: Vec<String> = outcome.records[0]
        .counters()
        .map(|c| c.into_owned())
        .collect();
    assert!(counters.contains(&"brickgate.denied.body_timeout".to_string()));
    assert_eq!(
        world.budget.held(),
        0,
        "the refused stream's bytes are given back"
    );
    // The rest of the body changes nothing.
    outcome.take(&body(&mut world, &mut stream, &CHURN_BODY[12..], true));
    assert_eq!(outcome.records.len(), 1);
}

/// Keys not fetched yet: the request waits at its headers, reading the body its rule needs
/// (the host delivers each byte once), and is judged with it once the keys arrive. A forged
/// token is refused then, and gives its bytes back.
#[test]
fn a_request_waiting_for_keys_reads_its_body_and_is_judged_when_they_arrive() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let forged = {
        let (signed, _) = member.rsplit_once('.').unwrap();
        format!("{signed}.c2lnbmF0dXJl")
    };
    for (authorization, allowed) in [(&member, true), (&forged, false)] {
        let mut world = World::new(Setup::RemoteKeys);
        let mut stream = Stream::new();
        let mut outcome = Outcome::default();
        outcome.take(&start(&mut world, &mut stream, CHAT, authorization));
        assert_eq!(stream.phase(), "waiting_for_keys");
        assert!(stream.wants_body_bytes());
        outcome.take(&body(&mut world, &mut stream, CHURN_BODY, true));
        assert_eq!(
            stream.phase(),
            "waiting_for_keys",
            "keys, not the body, move it on"
        );
        assert!(!stream.wants_body_bytes(), "the whole body is read");
        world.keys_arrive();
        assert!(stream.wants_wake(&world.store, world.now_ms));
        let step = world.step(&mut stream, Event::Wake);
        outcome.take(&step);
        assert_eq!(outcome.records.len(), 1);
        assert_eq!(
            outcome.records[0].is_allowed(),
            allowed,
            "{:?}",
            outcome.records
        );
        if allowed {
            assert!(step.actions.contains(&HostAction::Resume));
        } else {
            assert_eq!(outcome.records[0].audit.reason, Some("bad_signature"));
        }
        assert_eq!(world.budget.held(), 0);
    }
}

/// Issue 16, point 7g: a host call failing in a later callback (reading the trailers of an
/// allowed stream) wrote a second record. In every state, a read failure now leaves exactly
/// one record per request.
#[test]
fn a_read_failure_leaves_one_record_in_every_state() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let read_failure = || Event::ReadFailure("cannot read the request trailers: NotFound".into());
    type Reach = fn(&mut World, &mut Stream, &str, &mut Outcome);
    let states: [(&str, Setup, Reach); 6] = [
        ("reading_body", Setup::InlineKeys, |w, s, auth, o| {
            o.take(&start(w, s, CHAT, auth));
        }),
        ("waiting_for_keys", Setup::RemoteKeys, |w, s, auth, o| {
            o.take(&start(w, s, "/api/2.1/jobs/run-now", auth));
        }),
        ("waiting_for_token", Setup::Exchange, |w, s, auth, o| {
            o.take(&start(w, s, "/api/2.1/jobs/run-now", auth));
        }),
        // Allowed in its own callback: the next event is a later callback's.
        ("allowed", Setup::InlineKeys, |w, s, auth, o| {
            o.take(&start(w, s, "/api/2.1/jobs/run-now", auth));
        }),
        // Allowed from outside its callbacks (the token arrived, the resume went through).
        ("allowed", Setup::Exchange, |w, s, auth, o| {
            o.take(&start(w, s, "/api/2.1/jobs/run-now", auth));
            o.take(&w.step(s, Event::UpstreamToken(Ok("dbx-token".into()))));
        }),
        ("refused", Setup::InlineKeys, |w, s, _, o| {
            o.take(&start(w, s, "/api/2.1/jobs/run-now", ""));
        }),
    ];
    for (phase, setup, reach) in states {
        let mut world = World::new(setup);
        let mut stream = Stream::new();
        let mut outcome = Outcome::default();
        reach(&mut world, &mut stream, &member, &mut outcome);
        assert_eq!(stream.phase(), phase, "{setup:?}");
        outcome.take(&world.step(&mut stream, read_failure()));
        // And once more, as a host that keeps failing would.
        outcome.take(&world.step(&mut stream, read_failure()));
        assert_eq!(stream.phase(), "refused", "{phase} {setup:?}");
        assert_eq!(
            outcome.records.len(),
            1,
            "{phase} {setup:?}: {:?}",
            outcome.records
        );
        assert_eq!(outcome.replies.len(), 1, "{phase} {setup:?}");
        let refused_before = phase != "allowed";
        assert_eq!(
            !outcome.records[0].is_allowed(),
            refused_before,
            "{phase} {setup:?}"
        );
    }
}

/// A `kid` this worker lacks, which another worker's newer keys (in shared data) have: the keys
/// are adopted and the request judged again at once, and it goes on to read its body (not an
/// internal error for asking for it).
#[test]
fn keys_adopted_at_the_headers_lead_to_reading_the_body() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = World::new(Setup::RemoteKeys);
    let all: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let without_rsa_1: Vec<Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["kid"] != "test-rsa-1")
        .cloned()
        .collect();
    let answer = |keys: Value| FetchOutcome::Response {
        status: 200,
        body: keys.to_string().into_bytes(),
        max_age_s: None,
    };
    // Another worker fetches keys without `test-rsa-1`, and this one adopts them; then the IdP
    // rotates, a refetch over there publishes the new set.
    let mut other = JwksStore::new(&world.engine.config, 2);
    let t = world.now_ms;
    other.tick(&world.shared, t);
    other.on_fetch_outcome(
        &world.shared,
        0,
        answer(json!({ "keys": without_rsa_1 })),
        t,
    );
    world.store.tick(&world.shared, t + 10);
    let t = t + 61_000;
    assert_eq!(
        other.on_unknown_kid(&world.shared, 0, t),
        crate::jwks::KidMiss::Wait
    );
    other.tick(&world.shared, t);
    other.on_fetch_outcome(&world.shared, 0, answer(all), t + 50);
    world.now_ms = t + 60;
    let mut stream = Stream::new();
    let mut outcome = Outcome::default();
    outcome.take(&start(&mut world, &mut stream, CHAT, &member));
    assert!(outcome.records.is_empty(), "{:?}", outcome.records);
    assert_eq!(stream.phase(), "reading_body");
    outcome.take(&body(&mut world, &mut stream, CHURN_BODY, true));
    assert_eq!(outcome.records.len(), 1);
    assert!(outcome.records[0].is_allowed(), "{:?}", outcome.records);
}
