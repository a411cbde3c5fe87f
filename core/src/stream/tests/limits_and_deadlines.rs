//! Limits and deadlines through the lifecycle: keys that never come, bodies over their limit
//! or never delivered, agent bodies of unknown length, and the held-body bound per VM.

use super::*;

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
