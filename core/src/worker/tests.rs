//! `drive` carries out a step's actions in order through the host, feeds a failed host call
//! back to the stream at once, samples decision times, and reports held transitions.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::config::Config;
use crate::shared_data::InMemorySharedData;
use crate::verify::InWasmVerifier;

const NOW_S: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../../tests/keys/public-jwks.json");

fn worker() -> Worker {
    let jwks: serde_json::Value = serde_json::from_str(PUBLIC_JWKS).unwrap();
    let config = json!({
        "providers": {"okta": {"issuer": "https://okta.test", "audiences": ["api"], "jwks": {"inline": jwks}}},
        "rules": [{"name": "jobs", "match": {"prefix": "/api/2.1/jobs/"}, "providers": ["okta"]}],
        "databricks": {"route_catalogue": false}
    });
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let engine = Arc::new(Engine::new(config, Box::new(InWasmVerifier)));
    Worker::new(engine, 1, BodyBudget::new(1 << 20))
}

fn token() -> String {
    let claims = json!({"iss": "https://okta.test", "aud": "api", "sub": "alice@example.com", "iat": NOW_S, "exp": NOW_S + 600});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(RSA_1.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Records every host call; fails the header rewrite when told to.
#[derive(Default)]
struct FakeHost {
    calls: Vec<String>,
    fail_rewrite: bool,
    timed: Vec<Option<u64>>,
    now_ns: u64,
}

impl StreamHost for FakeHost {
    fn now_ns(&mut self) -> u64 {
        self.now_ns += 1_000;
        NOW_S * 1_000_000_000 + self.now_ns
    }
    fn rewrite_request_headers(&mut self, _: &HeaderRewrite) -> Result<(), String> {
        self.calls.push("rewrite".into());
        if self.fail_rewrite {
            return Err("cannot set the request header x".into());
        }
        Ok(())
    }
    fn publish(&mut self, _: &crate::identity::Principal) -> Result<(), String> {
        self.calls.push("publish".into());
        Ok(())
    }
    fn set_request_trailers(&mut self, _: &[(String, String)]) -> Result<(), String> {
        self.calls.push("trailers".into());
        Ok(())
    }
    fn send_response(&mut self, response: &DenyResponse) {
        self.calls.push(format!("respond {}", response.status));
    }
    fn resume(&mut self) -> Result<(), String> {
        self.calls.push("resume".into());
        Ok(())
    }
    fn fetch_upstream_token(&mut self, _: &mut Worker, _: TokenRequest) {
        self.calls.push("fetch".into());
    }
    fn record(&mut self, record: &Record, decision_us: Option<u64>) {
        self.calls
            .push(format!("record {}", record.request_labels().0));
        self.timed.push(decision_us);
    }
    fn warn(&mut self, _: &str) {}
}

fn headers(authorization: Option<String>) -> Event<'static> {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/api/2.1/jobs/list".to_string()),
        (":authority".to_string(), "ws".to_string()),
    ];
    if let Some(value) = authorization {
        headers.push(("authorization".to_string(), value));
    }
    Event::RequestHeaders {
        headers,
        end_of_stream: true,
    }
}

/// One stream with a valid bearer token, driven through `host`.
fn drive_bearer(host: &mut FakeHost) -> (Driven, Slot) {
    let mut slot = Slot::default();
    let bearer = format!("Bearer {}", token());
    let shared = InMemorySharedData::default();
    let driven = drive(
        &mut worker(),
        &shared,
        &mut slot,
        host,
        headers(Some(bearer)),
    );
    (driven, slot)
}

#[test]
fn an_allowed_stream_goes_on_after_its_rewrite_and_record() {
    let mut host = FakeHost::default();
    let (driven, slot) = drive_bearer(&mut host);
    assert_eq!(driven.reply, Reply::Continue);
    assert!(!driven.was_held && !driven.is_held);
    assert_eq!(host.calls, ["rewrite", "record allow"]);
    assert!(slot.body_released);
}

#[test]
fn a_failed_rewrite_is_fed_back_and_the_stream_is_refused_not_released() {
    let mut host = FakeHost {
        fail_rewrite: true,
        ..FakeHost::default()
    };
    let (driven, _) = drive_bearer(&mut host);
    assert_eq!(driven.reply, Reply::Pause);
    // The rewrite failed before the allow was recorded: the failure is the only record.
    assert_eq!(host.calls[0], "rewrite");
    assert!(
        host.calls.iter().any(|c| c.starts_with("respond 5")),
        "{:?}",
        host.calls
    );
    assert_eq!(
        host.calls
            .iter()
            .filter(|c| c.starts_with("record"))
            .count(),
        1
    );
    assert!(
        !host.calls.iter().any(|c| c == "record allow"),
        "{:?}",
        host.calls
    );
}

#[test]
fn one_decision_made_at_once_in_eight_is_timed() {
    let mut worker = worker();
    let shared = InMemorySharedData::default();
    let mut host = FakeHost::default();
    for _ in 0..(2 * AT_ONCE_SAMPLE) {
        let mut slot = Slot::default();
        drive(&mut worker, &shared, &mut slot, &mut host, headers(None));
    }
    let timed: Vec<bool> = host.timed.iter().map(Option::is_some).collect();
    assert_eq!(timed.iter().filter(|t| **t).count(), 2);
    assert!(timed[0] && timed[AT_ONCE_SAMPLE as usize]);
    assert!(
        host.timed[0].is_some_and(|us| us >= 1),
        "{:?}",
        host.timed[0]
    );
}

#[test]
fn store_events_are_counted_and_logged_with_the_provider_s_name() {
    #[derive(Default)]
    struct Seen(Vec<(String, u64)>, Vec<(Level, String)>);
    impl Telemetry for Seen {
        fn count(&mut self, name: &str, amount: u64) {
            self.0.push((name.to_string(), amount));
        }
        fn log(&mut self, level: Level, line: &str) {
            self.1.push((level, line.to_string()));
        }
    }
    let worker = worker();
    let mut seen = Seen::default();
    let events = [StoreEvent::FetchFailed {
        provider: 0,
        why: "status 503".into(),
    }];
    report_store_events(&worker, &events, &mut seen);
    assert_eq!(seen.0, [(metrics::JWKS_FETCH_FAILED.to_string(), 1)]);
    assert_eq!(seen.1[0].0, Level::Warn);
    assert!(
        seen.1[0]
            .1
            .contains("provider okta JWKS fetch failed: status 503")
    );
}
