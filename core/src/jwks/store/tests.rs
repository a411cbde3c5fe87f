//! The key lifecycle across simulated VMs sharing one `InMemorySharedData`.

use serde_json::json;

use super::*;
use crate::config::Config;
use crate::shared_data::{InMemorySharedData, SharedData};

const KEY_A: &str = r#"{"kty": "EC", "kid": "a", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
const KEY_B: &str = r#"{"kty": "EC", "kid": "b", "crv": "P-256", "x": "YaCUTfPlU1DMXTQ3DbN89_ImdUX5unqzkMqAYFuoQIo", "y": "YUIcuUUtFMzx8Xssu9vpSegUk3ZPDvwk5ouUipdz1sY"}"#;

fn jwks(keys: &[&str]) -> Vec<u8> {
    format!(r#"{{"keys": [{}]}}"#, keys.join(",")).into_bytes()
}

fn config(remote: serde_json::Value) -> Config {
    let config = json!({
        "providers": {"idp": {"issuer": "https://idp.example/tenant", "audiences": ["a"], "jwks": {"remote": remote}}},
        "rules": [{"match": {"prefix": "/"}, "allow_anonymous": true}]
    });
    Config::from_json(config.to_string().as_bytes()).unwrap()
}

fn fixed() -> Config {
    config(
        json!({"cluster": "idp", "uri": "https://idp.example/keys", "refresh_interval_s": 100, "max_stale_s": 50,
                  "refetch_min_interval_s": 10, "timeout_ms": 1000}),
    )
}

fn ok(body: Vec<u8>) -> FetchOutcome {
    FetchOutcome::Response {
        status: 200,
        body,
        max_age_s: None,
    }
}

fn kids(store: &JwksStore) -> Vec<String> {
    store.keys(0).map(|k| k.kids()).unwrap_or_default()
}

#[test]
fn four_vms_make_one_fetch_per_refresh_and_all_adopt_the_keys() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let mut vms: Vec<JwksStore> = (1..=4).map(|id| JwksStore::new(&config, id)).collect();

    let fetches: Vec<_> = vms
        .iter_mut()
        .flat_map(|vm| vm.tick(&shared, 1_000).0)
        .collect();
    assert_eq!(fetches.len(), 1, "cold start: one fetch for four VMs");
    let fetcher = vms.iter().position(|vm| vm.remote_in_flight()).unwrap();
    let (_, events) = vms[fetcher].on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 1_100);
    assert!(events.contains(&StoreEvent::FetchSucceeded { provider: 0 }));
    for vm in vms.iter_mut() {
        vm.tick(&shared, 1_200);
        assert_eq!(kids(vm), ["a"]);
        assert!(matches!(vm.availability(0, 1_200), Availability::Ready(_)));
    }

    // Refresh comes due at 75–90 % of the 100 s TTL: still one fetch in all.
    let mut refreshes = 0;
    for now in (2_000..=100_000).step_by(500) {
        for vm in vms.iter_mut() {
            let (fetches, _) = vm.tick(&shared, now);
            for fetch in fetches {
                refreshes += 1;
                vm.on_fetch_outcome(&shared, fetch.provider, ok(jwks(&[KEY_A])), now + 50);
            }
        }
    }
    assert_eq!(refreshes, 1);
    assert!(
        vms.iter().all(|vm| vm.generation(0) == Some(1)),
        "unchanged keys keep their generation"
    );
}

#[test]
fn rotation_is_adopted_everywhere_and_removed_keys_stop_being_used() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let (mut first, mut second) = (JwksStore::new(&config, 1), JwksStore::new(&config, 2));
    first.tick(&shared, 0);
    first.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);
    second.tick(&shared, 10);

    assert!(
        second.wants_refetch(&shared, 0, 1_000),
        "a new kid may trigger a refetch"
    );
    let (fetches, _) = second.tick(&shared, 1_000);
    assert_eq!(fetches.len(), 1);
    let (_, events) = second.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_B])), 1_050);
    assert!(events.iter().any(
        |e| matches!(e, StoreEvent::KeysChanged { added, removed, fetched_here: true, .. }
        if added == &["b"] && removed == &["a"])
    ));
    let (_, events) = first.tick(&shared, 1_100);
    assert!(events.iter().any(|e| matches!(
        e,
        StoreEvent::KeysChanged {
            fetched_here: false,
            ..
        }
    )));
    assert_eq!(kids(&first), ["b"]);
    assert!(
        first.generation(0) > Some(1),
        "cached verifications with the old keys are invalidated"
    );
}

#[test]
fn unknown_kid_refetches_are_rate_limited_across_vms() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let (mut first, mut second) = (JwksStore::new(&config, 1), JwksStore::new(&config, 2));
    first.tick(&shared, 0);
    first.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);
    second.tick(&shared, 10);

    assert!(first.wants_refetch(&shared, 0, 5_000));
    let (fetches, _) = first.tick(&shared, 5_000);
    first.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 5_050);
    assert_eq!(fetches.len(), 1);
    let mut more = 0;
    for now in (5_100..15_000).step_by(100) {
        assert!(!second.wants_refetch(&shared, 0, now), "{now}");
        assert!(!first.wants_refetch(&shared, 0, now), "{now}");
        more += first.tick(&shared, now).0.len() + second.tick(&shared, now).0.len();
    }
    assert_eq!(
        more, 0,
        "flood of unknown kids: no more fetches within the interval"
    );
    assert!(second.wants_refetch(&shared, 0, 15_000));
}

#[test]
fn outages_serve_stale_keys_within_grace_then_fail_closed_with_backoff() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let mut vm = JwksStore::new(&config, 1);
    vm.tick(&shared, 0);
    vm.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);

    let failures = [
        FetchOutcome::TransportFailure("connection refused".into()),
        FetchOutcome::Response {
            status: 500,
            body: jwks(&[KEY_A]),
            max_age_s: None,
        },
        ok(b"<html>".to_vec()),
        ok(vec![b' '; 300_000]),
    ];
    let mut attempts = Vec::new();
    let mut failure = failures.iter().cycle();
    for now in (0..=160_000).step_by(100) {
        for fetch in vm.tick(&shared, now).0 {
            attempts.push(now);
            let (_, events) = vm.on_fetch_outcome(
                &shared,
                fetch.provider,
                failure.next().unwrap().clone(),
                now,
            );
            assert!(matches!(events[0], StoreEvent::FetchFailed { .. }));
        }
        let state = vm.availability(0, now);
        match now {
            0..=100_000 => assert!(matches!(state, Availability::Ready(_)), "{now}"),
            100_001..=150_000 => assert!(matches!(state, Availability::Stale(_)), "{now}"),
            _ => assert!(
                matches!(state, Availability::Expired(ref why) if why.contains("could not be refreshed")),
                "{now}"
            ),
        }
        assert_eq!(kids(&vm), ["a"], "the last good keys are kept");
    }
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 4, "{attempts:?}");
    assert!(
        gaps.windows(2).take(4).all(|w| w[1] >= w[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(gaps.iter().all(|gap| *gap <= 72_000), "capped: {gaps:?}");
}

#[test]
fn cache_control_max_age_bounds_the_refresh() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let mut vm = JwksStore::new(&config, 1);
    vm.tick(&shared, 0);
    vm.on_fetch_outcome(
        &shared,
        0,
        FetchOutcome::Response {
            status: 200,
            body: jwks(&[KEY_A]),
            max_age_s: Some(20),
        },
        0,
    );
    assert!(vm.tick(&shared, 14_900).0.is_empty());
    assert_eq!(
        vm.tick(&shared, 18_100).0.len(),
        1,
        "refreshed before the 20 s max-age runs out"
    );
}

#[test]
fn discovery_finds_the_jwks_uri_with_the_rfc8414_fallback() {
    let config = config(json!({"cluster": "idp"}));
    let shared = InMemorySharedData::default();
    let mut vm = JwksStore::new(&config, 1);
    let (fetches, _) = vm.tick(&shared, 0);
    assert_eq!(fetches[0].path, "/tenant/.well-known/openid-configuration");
    let (fetches, _) = vm.on_fetch_outcome(
        &shared,
        0,
        FetchOutcome::Response {
            status: 404,
            body: vec![],
            max_age_s: None,
        },
        10,
    );
    assert_eq!(
        fetches[0].path,
        "/tenant/.well-known/oauth-authorization-server"
    );
    let document =
        br#"{"issuer": "https://idp.example/tenant", "jwks_uri": "https://keys.example/v1/keys"}"#
            .to_vec();
    let (fetches, _) = vm.on_fetch_outcome(&shared, 0, ok(document), 20);
    assert_eq!(
        (fetches[0].authority.as_str(), fetches[0].path.as_str()),
        ("keys.example", "/v1/keys")
    );
    vm.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 30);
    assert_eq!(kids(&vm), ["a"]);

    // Another VM that later holds the lease skips discovery.
    let mut other = JwksStore::new(&config, 2);
    other.tick(&shared, 40);
    assert!(other.wants_refetch(&shared, 0, 40));
    let (fetches, _) = other.tick(&shared, 50);
    assert_eq!(fetches[0].path, "/v1/keys");
}

#[test]
fn discovery_refuses_a_document_for_another_issuer() {
    let config = config(json!({"cluster": "idp"}));
    let shared = InMemorySharedData::default();
    let mut vm = JwksStore::new(&config, 1);
    vm.tick(&shared, 0);
    let document =
        br#"{"issuer": "https://evil.example", "jwks_uri": "https://evil.example/keys"}"#.to_vec();
    let (fetches, events) = vm.on_fetch_outcome(&shared, 0, ok(document), 10);
    assert!(fetches.is_empty());
    assert!(
        matches!(&events[0], StoreEvent::FetchFailed { why, .. } if why.contains("names issuer"))
    );
    assert!(matches!(vm.availability(0, 20), Availability::Cold));
}

#[test]
fn a_changed_configuration_does_not_adopt_the_old_keys() {
    let shared = InMemorySharedData::default();
    let mut old = JwksStore::new(&fixed(), 1);
    old.tick(&shared, 0);
    old.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);
    let moved = config(json!({"cluster": "idp", "uri": "https://other.example/keys"}));
    let mut new = JwksStore::new(&moved, 2);
    let (fetches, _) = new.tick(&shared, 10);
    assert!(new.keys(0).is_none());
    assert_eq!(fetches.len(), 1);
}

impl JwksStore {
    fn remote_in_flight(&self) -> bool {
        self.providers
            .iter()
            .any(|p| matches!(p, ProviderState::Remote(state) if state.in_flight.is_some()))
    }
}

impl JwksStore {
    /// The old boolean view of `on_unknown_kid`, for the tests above.
    fn wants_refetch(
        &mut self,
        shared: &dyn SharedData,
        provider: usize,
        now_ms: UnixMillis,
    ) -> bool {
        self.on_unknown_kid(shared, provider, now_ms) != KidMiss::RateLimited
    }
}

#[test]
fn an_unknown_kid_adopts_keys_another_vm_already_fetched() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let (mut first, mut second) = (JwksStore::new(&config, 1), JwksStore::new(&config, 2));
    first.tick(&shared, 0);
    first.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);
    second.tick(&shared, 10);
    assert_eq!(first.on_unknown_kid(&shared, 0, 1_000), KidMiss::Wait);
    first.tick(&shared, 1_000);
    assert_eq!(
        second.on_unknown_kid(&shared, 0, 1_010),
        KidMiss::Wait,
        "a refetch is in flight"
    );
    first.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A, KEY_B])), 1_050);
    assert_eq!(second.on_unknown_kid(&shared, 0, 1_060), KidMiss::Adopted);
    assert_eq!(kids(&second), ["a", "b"]);
    assert_eq!(
        second.on_unknown_kid(&shared, 0, 1_070),
        KidMiss::RateLimited
    );
}

#[test]
fn each_vm_asking_for_a_refetch_still_makes_one_fetch_per_interval() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let mut vms: Vec<JwksStore> = (1..=4).map(|id| JwksStore::new(&config, id)).collect();
    vms[0].tick(&shared, 0);
    vms[0].on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 0);
    for vm in vms.iter_mut() {
        vm.tick(&shared, 10);
        assert_eq!(
            vm.on_unknown_kid(&shared, 0, 1_000),
            KidMiss::Wait,
            "all ask before any refetch"
        );
    }
    let mut fetches = 0;
    for now in (1_000..9_000).step_by(100) {
        for vm in vms.iter_mut() {
            for fetch in vm.tick(&shared, now).0 {
                fetches += 1;
                vm.on_fetch_outcome(&shared, fetch.provider, ok(jwks(&[KEY_A])), now);
            }
        }
    }
    assert_eq!(fetches, 1);
}

#[test]
fn a_lease_outlived_by_its_fetch_is_taken_over_and_the_late_result_discarded() {
    let config = fixed();
    let shared = InMemorySharedData::default();
    let (mut slow, mut other) = (JwksStore::new(&config, 1), JwksStore::new(&config, 2));
    assert_eq!(
        slow.tick(&shared, 1_000).0.len(),
        1,
        "the creator holds the lease"
    );
    assert!(
        other.tick(&shared, 1_000).0.is_empty(),
        "no second lease on the new record"
    );
    // Lease: 3 × 1 s timeout + 2 s slack.
    assert!(other.tick(&shared, 5_999).0.is_empty());
    assert_eq!(
        other.tick(&shared, 6_000).0.len(),
        1,
        "taken over once it ends"
    );
    let (_, events) = slow.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_B])), 6_100);
    assert!(
        matches!(&events[..], [StoreEvent::FetchFailed { why, .. }] if why.contains("outlived its lease"))
    );
    other.on_fetch_outcome(&shared, 0, ok(jwks(&[KEY_A])), 6_200);
    slow.tick(&shared, 6_300);
    assert_eq!(
        (kids(&slow), slow.generation(0)),
        (vec!["a".to_string()], Some(1))
    );
}
