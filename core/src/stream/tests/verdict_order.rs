//! Nothing reaches the upstream before its verdict, in every order of host events: body and
//! header decisions, callbacks out of order, a body route without a body, and the host calls
//! an allowed cache hit costs.

use super::*;

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
    let [
        HostAction::SetRequestHeaders(_),
        HostAction::Publish(_),
        HostAction::Record(record),
    ] = hit.actions.as_slice()
    else {
        panic!(
            "expected one header write, the principal and one record: {:?}",
            hit.actions
        )
    };
    let counters: Vec<String> = record.counters().map(|c| c.into_owned()).collect();
    assert_eq!(
        counters,
        [crate::metrics::TOKEN_CACHE_HIT, crate::metrics::ALLOWED]
    );
}
