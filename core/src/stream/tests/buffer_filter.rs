//! `body_rules: buffer_filter`, step by step: what each callback answers, which header changes
//! are made before the headers go on, and the one record at the end of the body. The host is
//! Envoy without `allow_on_headers_stop_iteration`, with its buffer filter after brickgate
//! (shared/design/mesh-facts.md §2, §3): a `Continue` sends to that filter, not upstream.

use serde_json::{Value, json};

use super::*;

fn buffered_world(setup: Setup, rules: Value) -> World {
    let upstream = match setup {
        Setup::Exchange => {
            json!({"mode": "exchange", "cluster": "ws", "workspace_url": "https://adb-1.azuredatabricks.net", "scopes": ["all-apis"]})
        }
        Setup::InlineKeys | Setup::RemoteKeys => json!({"mode": "pass_through"}),
    };
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let keys = match setup {
        Setup::RemoteKeys => {
            json!({"remote": {"cluster": "idp", "uri": "https://okta.test/keys", "wait_for_keys_ms": 5000}})
        }
        Setup::InlineKeys | Setup::Exchange => json!({"inline": jwks}),
    };
    let config = json!({
        "body_rules": "buffer_filter",
        "providers": {"okta": {"issuer": ISSUER, "audiences": ["api"], "jwks": keys, "upstream": upstream}},
        "rules": rules,
        "databricks": {"route_catalogue": false, "max_body_bytes": 1024, "serving_body_limits": [],
                       "first_body_wait_ms": 1000, "body_deadline_ms": 5000}
    });
    let engine = Engine::new(
        Config::from_json(config.to_string().as_bytes()).unwrap(),
        Box::new(InWasmVerifier),
    );
    let mut world = World::new(setup);
    world.store = JwksStore::new(&engine.config, 1);
    world.budget = BodyBudget::new(BodyBudget::limit_of(&engine.config));
    world.engine = engine;
    world
}

fn endpoint_rules() -> Value {
    json!([
        {"name": "fraud-team", "match": {"serving_endpoint": "fraud"}, "providers": ["okta"], "require": {"groups_any": ["fraud"]}},
        {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}}
    ])
}

/// What one stream did, step by step.
#[derive(Default, Debug)]
struct Seen {
    replies: Vec<Reply>,
    /// The headers as set before they went on (the only time they may be).
    headers_set: Option<Headers>,
    resumed: bool,
    token_calls: usize,
    records: Vec<Record>,
    local_reply: Option<u32>,
    trailers_set: Option<Headers>,
    published: Option<Principal>,
}

impl Seen {
    fn take(&mut self, step: Step) {
        self.replies.push(step.reply);
        for action in step.actions {
            match action {
                HostAction::SetRequestHeaders(rewrite) => {
                    assert!(self.headers_set.is_none(), "headers set twice");
                    assert!(
                        !self.replies[..self.replies.len() - 1].contains(&Reply::Continue)
                            && !self.resumed,
                        "headers edited after they went on"
                    );
                    self.headers_set = Some(rewrite.to_headers());
                }
                HostAction::Publish(principal) => {
                    assert!(
                        !self.resumed,
                        "principal published after the headers went on"
                    );
                    self.published = Some(*principal);
                }
                HostAction::Resume => self.resumed = true,
                HostAction::FetchUpstreamToken(_) => self.token_calls += 1,
                HostAction::Record(record) => self.records.push(*record),
                HostAction::SendResponse(response) => self.local_reply = Some(response.status),
                HostAction::SetRequestTrailers(trailers) => self.trailers_set = Some(trailers),
                HostAction::Warn(_) => {}
            }
        }
    }
}

fn chat(model: &str) -> String {
    format!(r#"{{"model": "{model}", "messages": []}}"#)
}

/// Headers, then the body in two chunks (ending with trailers when `trailers`).
fn stream_chat(
    world: &mut World,
    authorization: &str,
    body: &str,
    trailers: bool,
) -> (Stream, Seen) {
    let mut stream = Stream::new();
    let mut seen = Seen::default();
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", CHAT, authorization),
            end_of_stream: false,
        },
    );
    seen.take(step);
    if stream.waits_for_token().is_some() {
        let step = world.step(&mut stream, Event::UpstreamToken(Ok("dbx-token".into())));
        seen.take(step);
    }
    let (first, second) = body.split_at(body.len() / 2);
    for (chunk, last) in [(first, false), (second, !trailers)] {
        if seen.local_reply.is_some() {
            return (stream, seen);
        }
        assert!(stream.wants_body_bytes(), "{}", stream.phase());
        let step = world.step(
            &mut stream,
            Event::RequestBody {
                bytes: chunk.as_bytes(),
                end_of_stream: last,
            },
        );
        seen.take(step);
    }
    if trailers && seen.local_reply.is_none() {
        let trailers = vec![
            ("x-trace".to_string(), "1".to_string()),
            ("authorization".to_string(), "Bearer smuggled".to_string()),
        ];
        let step = world.step(&mut stream, Event::RequestTrailers { trailers });
        seen.take(step);
    }
    (stream, seen)
}

#[test]
fn the_headers_go_on_with_their_changes_and_the_body_alone_decides() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    // (setup, model, trailers, expected status (None: allowed), reason, rule)
    type Case = (
        Setup,
        &'static str,
        bool,
        Option<u32>,
        Option<&'static str>,
        &'static str,
    );
    let mut cases: Vec<Case> = Vec::new();
    for setup in [Setup::InlineKeys, Setup::Exchange] {
        for trailers in [false, true] {
            cases.push((setup, "churn", trailers, None, None, "per-endpoint"));
            cases.push((
                setup,
                "fraud",
                trailers,
                Some(403),
                Some("group_not_allowed"),
                "fraud-team",
            ));
            cases.push((
                setup,
                "other",
                trailers,
                Some(403),
                Some("insufficient_scope"),
                "per-endpoint",
            ));
        }
    }
    for (setup, model, trailers, status, reason, rule) in cases {
        let context = format!("{setup:?} {model} trailers={trailers}");
        let mut world = buffered_world(setup, endpoint_rules());
        let (stream, seen) = stream_chat(&mut world, &member, &chat(model), trailers);
        // At the headers: the credential's changes, then on (in exchange mode after the token).
        let sent = seen.headers_set.as_ref().expect(&context);
        assert_eq!(
            header(sent, "x-brickgate-subject"),
            Some("alice@example.com"),
            "{context}"
        );
        assert_eq!(
            header(sent, "x-brickgate-rule"),
            None,
            "{context}: the body picks the rule"
        );
        match setup {
            Setup::Exchange => {
                assert_eq!(seen.token_calls, 1, "{context}");
                assert!(seen.resumed, "{context}");
                assert_eq!(
                    header(sent, "authorization"),
                    Some("Bearer dbx-token"),
                    "{context}"
                );
            }
            _ => assert_eq!(seen.replies[0], Reply::Continue, "{context}"),
        }
        // One record, at the end of the body (or at the trailers).
        assert_eq!(seen.records.len(), 1, "{context}: {:?}", seen.records);
        let record = &seen.records[0];
        assert_eq!(record.audit.rule.as_deref(), Some(rule), "{context}");
        assert_eq!(record.audit.reason, reason, "{context}");
        assert_eq!(seen.local_reply, status, "{context}");
        let last = *seen.replies.last().unwrap();
        match status {
            // The end of the request goes on; a forbidden trailer is removed first.
            None => {
                assert_eq!(last, Reply::Continue, "{context}");
                assert_eq!(stream.phase(), "allowed", "{context}");
                if trailers {
                    let kept = seen.trailers_set.as_ref().expect(&context);
                    assert_eq!(header(kept, "authorization"), None, "{context}");
                }
            }
            // The end of the request never passes a refusal.
            Some(_) => {
                assert_eq!(last, Reply::Pause, "{context}");
                assert_eq!(stream.phase(), "refused", "{context}");
            }
        }
        assert_eq!(world.budget.held(), 0, "{context}: bytes still counted");
    }
}

#[test]
fn a_body_over_the_limit_is_refused_at_the_chunk_that_crosses_it() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = buffered_world(Setup::InlineKeys, endpoint_rules());
    let body = format!(r#"{{"model": "churn", "pad": "{}"}}"#, "x".repeat(1100));
    let (stream, seen) = stream_chat(&mut world, &member, &body, false);
    assert_eq!(seen.local_reply, Some(413));
    assert_eq!(seen.records.len(), 1);
    assert_eq!(seen.records[0].audit.reason, Some("body_too_large"));
    assert_eq!(stream.phase(), "refused");
    assert_eq!(world.budget.held(), 0);
}

#[test]
fn no_credential_is_refused_at_the_headers_before_anything_goes_on() {
    let mut world = buffered_world(Setup::InlineKeys, endpoint_rules());
    let mut stream = Stream::new();
    let mut request = headers("POST", CHAT, "");
    request.retain(|(name, _)| name != "authorization");
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: request,
            end_of_stream: false,
        },
    );
    let mut seen = Seen::default();
    seen.take(step);
    assert_eq!(seen.replies, [Reply::Pause]);
    assert_eq!(seen.local_reply, Some(401));
    assert!(seen.headers_set.is_none());
    assert!(!stream.wants_body_bytes());
}

/// The rule that admits the request at its headers (anonymous, here) sends other headers than
/// the rule its body selects would: the headers already went on, so the request is refused.
#[test]
fn a_body_rule_that_would_change_the_headers_otherwise_is_refused() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let rules = json!([
        {"name": "public", "match": {"serving_endpoint": "public"}, "allow_anonymous": true},
        {"name": "per-endpoint", "match": {"serving_endpoint": "{name}"}, "providers": ["okta"], "require": {"scopes_any": ["serving:{name}"]}}
    ]);
    for (model, status) in [("public", None), ("churn", Some(503))] {
        let mut world = buffered_world(Setup::InlineKeys, rules.clone());
        let (_, seen) = stream_chat(&mut world, &member, &chat(model), false);
        assert_eq!(seen.local_reply, status, "{model}");
        assert_eq!(seen.records.len(), 1, "{model}");
        if status.is_some() {
            let detail = seen.records[0].audit.detail.clone().unwrap_or_default();
            assert!(detail.contains("body_rules: buffer_filter"), "{detail}");
        }
    }
}

/// The headers went on, so a missing body is the client's: the first-body wait does not apply,
/// the whole-body deadline does.
#[test]
fn a_streamed_body_has_the_body_deadline_but_not_the_first_body_wait() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = buffered_world(Setup::InlineKeys, endpoint_rules());
    let mut stream = Stream::new();
    let step = world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", CHAT, &member),
            end_of_stream: false,
        },
    );
    assert_eq!(step.reply, Reply::Continue);
    world.now_ms += 1500;
    assert!(!stream.wants_wake(&world.store, world.now_ms));
    assert_eq!(stream.phase(), "streaming_body");
    world.now_ms += 3500;
    assert!(stream.wants_wake(&world.store, world.now_ms));
    let mut seen = Seen::default();
    seen.take(world.step(&mut stream, Event::Wake));
    assert_eq!(seen.local_reply, Some(408));
    assert_eq!(seen.records[0].audit.reason, Some("body_timeout"));
}

/// Issue 18 follow-up: a host without the flag holds bodies back from paused headers by design
/// in this mode, so a request whose headers wait for keys past `first_body_wait_ms` is not
/// refused as if the host lacked the flag; it waits for its keys, then streams and decides.
#[test]
fn a_request_waiting_for_keys_at_its_headers_has_no_first_body_wait() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let mut world = buffered_world(Setup::RemoteKeys, endpoint_rules());
    let mut stream = Stream::new();
    let mut seen = Seen::default();
    seen.take(world.step(
        &mut stream,
        Event::RequestHeaders {
            headers: headers("POST", CHAT, &member),
            end_of_stream: false,
        },
    ));
    assert_eq!(stream.phase(), "waiting_for_keys");
    // Past the first-body wait (1000 ms), within `wait_for_keys_ms` (5000 ms): no body came,
    // as none can on this host, and nothing is due.
    world.now_ms += 1500;
    assert!(!stream.wants_wake(&world.store, world.now_ms));
    assert_eq!(seen.local_reply, None);
    world.keys_arrive();
    assert!(stream.wants_wake(&world.store, world.now_ms));
    seen.take(world.step(&mut stream, Event::Wake));
    assert!(seen.resumed, "the headers go on to the buffer filter");
    assert_eq!(stream.phase(), "streaming_body");
    seen.take(world.step(
        &mut stream,
        Event::RequestBody {
            bytes: chat("churn").as_bytes(),
            end_of_stream: true,
        },
    ));
    assert_eq!(seen.local_reply, None);
    assert_eq!(seen.records.len(), 1);
    assert!(seen.records[0].is_allowed(), "{:?}", seen.records);
}

/// Envoy picked the route, and so whether its buffer filter holds the request, on the path as
/// sent; brickgate reads (and forwards) the canonical path. A request whose body brickgate
/// reads on a path it would rewrite may have been routed past the buffer (`//serving-endpoints/`
/// on a route table that buffers `/serving-endpoints` only): it is refused at its headers,
/// before anything goes on. The canonical path streams as before; a path-named endpoint whose
/// size waits for the body is held to the same.
#[test]
fn a_body_read_on_a_path_brickgate_would_rewrite_is_refused_before_anything_goes_on() {
    let member = format!("Bearer {}", token(json!({"scope": "serving:churn"})));
    let aliases = [
        ("//serving-endpoints/chat/completions", 400),
        ("/x/../serving-endpoints/chat/completions", 400),
        ("/%73erving-endpoints/chat/completions", 400),
        ("/serving-endpoints//chat/completions", 400),
        ("//ai-gateway/mlflow/v1/chat/completions", 400),
        ("/serving-endpoints//churn/invocations", 400),
        (CHAT, 0),
        ("/serving-endpoints/chat/completions/", 0),
        ("/serving-endpoints/churn/invocations", 0),
    ];
    for (path, status) in aliases {
        let mut world = buffered_world(Setup::InlineKeys, endpoint_rules());
        let mut stream = Stream::new();
        let mut seen = Seen::default();
        seen.take(world.step(
            &mut stream,
            Event::RequestHeaders {
                headers: headers("POST", path, &member),
                end_of_stream: false,
            },
        ));
        if status == 0 {
            assert_eq!(seen.replies, [Reply::Continue], "{path}");
            assert_eq!(stream.phase(), "streaming_body", "{path}");
            continue;
        }
        assert_eq!(seen.replies, [Reply::Pause], "{path}");
        assert_eq!(seen.local_reply, Some(status), "{path}");
        assert!(seen.headers_set.is_none(), "{path}");
        assert_eq!(seen.records.len(), 1, "{path}");
        assert_eq!(seen.records[0].audit.reason, Some("bad_path"), "{path}");
        let detail = seen.records[0].audit.detail.clone().unwrap_or_default();
        assert!(detail.contains("body_rules: buffer_filter"), "{detail}");
    }
}
