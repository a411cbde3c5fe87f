//! Failures around the verdict: a failed token exchange, refusals at the trailers, host calls
//! and resumes that fail, and headers or trailers that are not UTF-8; each stream keeps its
//! one record.

use super::*;

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
            HostAction::Publish(_) => "publish",
            HostAction::Resume => "resume",
            HostAction::Record(_) => "record",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["set_headers", "publish", "resume", "record"]);
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
