use super::*;
use crate::databricks::exchange::TokenEndpoint;
use crate::jwks::FetchLocation;
use crate::shared_data::InMemorySharedData;

fn request(scope: &str) -> TokenRequest {
    let endpoint = TokenEndpoint {
        cluster: "ws".into(),
        location: FetchLocation::parse("https://ws.example/oidc/v1/token").unwrap(),
        scopes: vec!["all-apis".into()],
        client_id: Some("sp".into()),
        client_secret: Some("secret".into()),
        timeout_ms: 1000,
    };
    endpoint.client_credentials("okta", &[scope.to_string()])
}

const ANSWER: &[u8] = br#"{"access_token": "dbx", "expires_in": 3600}"#;

fn answer(calls: &mut TokenCalls, callout: u32) -> Option<Vec<u32>> {
    let shared = InMemorySharedData::default();
    let mut tokens = UpstreamTokens::default();
    calls
        .settle(callout, 200, ANSWER, &mut tokens, &shared, 0)
        .map(|settled| {
            assert_eq!(settled.result.as_deref(), Ok("dbx"));
            settled.streams
        })
}

#[test]
fn the_first_stream_sends_at_once_and_later_ones_join() {
    let mut calls = TokenCalls::default();
    let first = calls
        .wait_for(request("sql"), 1)
        .expect("sent by its stream");
    calls.sent(7, first, vec![1], Sender::Stream(1));
    assert!(calls.wait_for(request("sql"), 2).is_none(), "joins");
    assert!(calls.wait_for(request("jobs"), 3).is_some(), "another key");
    assert!(calls.take_queued().is_empty(), "nothing waits for the tick");
    assert_eq!(answer(&mut calls, 7), Some(vec![1, 2]));
    assert!(!calls.owns(7));
}

/// The stream whose context would receive the answer gives up: the call goes back to the
/// root context, so the streams still waiting are answered.
#[test]
fn a_sender_that_gives_up_strands_nobody() {
    // (streams waiting besides the sender) → re-queued for the root with them
    let cases: [(&[u32], Option<Vec<u32>>); 2] = [(&[2, 3], Some(vec![2, 3])), (&[], None)];
    for (others, requeued) in cases {
        let mut calls = TokenCalls::default();
        let call = calls.wait_for(request("sql"), 1).unwrap();
        calls.sent(7, call, vec![1], Sender::Stream(1));
        for stream in others {
            assert!(calls.wait_for(request("sql"), *stream).is_none());
        }
        calls.forget(1);
        assert!(!calls.owns(7), "its answer would reach a gone context");
        let queued: Vec<Vec<u32>> = calls.take_queued().into_iter().map(|(_, w)| w).collect();
        assert_eq!(queued.first().cloned(), requeued, "{others:?}");
        assert_eq!(answer(&mut calls, 7), None);
    }
}

#[test]
fn a_waiter_that_gives_up_leaves_the_call_to_the_others() {
    let cases = [Sender::Root, Sender::Stream(1)];
    for sender in cases {
        let mut calls = TokenCalls::default();
        let call = calls.wait_for(request("sql"), 1).unwrap();
        calls.sent(7, call, vec![1], sender);
        assert!(calls.wait_for(request("sql"), 2).is_none());
        calls.forget(2);
        assert!(calls.take_queued().is_empty());
        assert_eq!(answer(&mut calls, 7), Some(vec![1]), "{sender:?}");
    }
    // A root call outlives every waiter: its answer still fills the cache.
    let mut calls = TokenCalls::default();
    let call = calls.wait_for(request("sql"), 1).unwrap();
    calls.sent(8, call, vec![1], Sender::Root);
    calls.forget(1);
    assert_eq!(answer(&mut calls, 8), Some(vec![]));
}

#[test]
fn a_call_that_could_not_be_sent_waits_for_the_tick_and_gathers_joiners() {
    let mut calls = TokenCalls::default();
    let call = calls.wait_for(request("sql"), 1).unwrap();
    calls.queue(call, vec![1]);
    assert!(calls.wait_for(request("sql"), 2).is_none());
    let queued = calls.take_queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].1, vec![1, 2]);
}
