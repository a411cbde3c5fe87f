//! The native cost of a decision as the policy grows: `RULES` serving-endpoint rules plus the
//! Databricks route catalogue, `PROVIDERS` providers accepted by every rule, `REQUESTS`
//! decisions of one request on a warm verified-token cache. Run under callgrind for
//! repeatable instruction counts (`make bench-scale`, bench/scale.py):
//!
//!     valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*decide_loop*' \
//!         target/release/examples/decision_cost
//!
//! Environment: RULES (default 10), PROVIDERS (1), REQUESTS (1000), REQUEST (`clusters`:
//! GET /api/2.0/clusters/list, matched by the catalogue after every endpoint rule; `serving`:
//! POST to the last endpoint rule's invocations). Prints start-up time and heap in use after
//! the configuration is compiled.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use brickgate_core::cache::TokenCache;
use brickgate_core::config::Config;
use brickgate_core::engine::{Decision, Engine, Request};
use brickgate_core::jwks::JwksStore;
use brickgate_core::verify::InWasmVerifier;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

const NOW: u64 = 1_800_000_000;
const RSA_1: &str = include_str!("../../tests/keys/rsa-1.pem");
const PUBLIC_JWKS: &str = include_str!("../../tests/keys/public-jwks.json");

/// Counts live heap bytes, to report the memory a compiled configuration holds.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn issuer(index: usize) -> String {
    format!("https://idp-{index}.bench.test")
}

fn config_json(rules: usize, providers: usize) -> Value {
    let jwks: Value = serde_json::from_str(PUBLIC_JWKS).unwrap_or(Value::Null);
    let names: Vec<String> = (0..providers).map(|i| format!("p{i}")).collect();
    let provider_map: serde_json::Map<String, Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let provider =
                json!({"issuer": issuer(i), "audiences": ["api"], "jwks": {"inline": jwks}});
            (name.clone(), provider)
        })
        .collect();
    let rule_list: Vec<Value> = (0..rules)
        .map(|i| {
            // Short: 10,000 of them must fit in the 1 MiB configuration limit.
            json!({"name": format!("e{i}"), "match": {"serving_endpoint": format!("e{i}")},
                   "providers": names})
        })
        .collect();
    json!({
        "providers": provider_map,
        "rules": rule_list,
        "databricks": {"route_catalogue": true, "catalogue_providers": names}
    })
}

/// A token of the last provider: a linear search by issuer would look at every provider.
fn token(providers: usize) -> String {
    let claims = json!({"iss": issuer(providers.saturating_sub(1)), "aud": "api",
                        "sub": "bench@example.com", "scope": "all-apis model-serving",
                        "iat": NOW - 10, "exp": NOW + 3600, "jti": "bench"});
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let key = EncodingKey::from_rsa_pem(RSA_1.as_bytes());
    key.and_then(|key| encode(&header, &claims, &key))
        .unwrap_or_default()
}

#[inline(never)]
fn build_engine(bytes: &[u8]) -> Option<(Engine, JwksStore)> {
    let config = Config::from_json(bytes)
        .map_err(|error| eprintln!("config refused: {error}"))
        .ok()?;
    let store = JwksStore::new(&config, 1);
    Some((Engine::new(config, Box::new(InWasmVerifier)), store))
}

#[inline(never)]
fn decide_loop(
    engine: &Engine,
    store: &JwksStore,
    cache: &mut TokenCache,
    request: &Request<'_>,
    n: usize,
) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        let decision = engine.decide(request, store, cache, NOW * 1000);
        allowed += usize::from(matches!(decision, Decision::Allow { .. }));
        std::hint::black_box(&decision);
    }
    allowed
}

fn main() {
    let rules = env("RULES", 10);
    let providers = env("PROVIDERS", 1).max(1);
    let requests = env("REQUESTS", 1000);
    let serving = std::env::var("REQUEST").is_ok_and(|v| v == "serving");
    let bytes = config_json(rules, providers).to_string().into_bytes();

    let heap_before = LIVE_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    let Some((engine, store)) = build_engine(&bytes) else {
        std::process::exit(2);
    };
    let startup = started.elapsed();
    let heap = LIVE_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(heap_before);

    let auth = format!("Bearer {}", token(providers));
    let (method, path) = if serving {
        let last = rules.saturating_sub(1);
        ("POST", format!("/serving-endpoints/e{last}/invocations"))
    } else {
        ("GET", "/api/2.0/clusters/list".to_string())
    };
    let headers: Vec<(String, String)> = [
        (":method", method),
        (":path", path.as_str()),
        (":authority", "workspace.test"),
        ("authorization", auth.as_str()),
        ("user-agent", "wrk"),
        ("x-request-id", "abc"),
        // A serving request's size is checked against its endpoint's limit before it is
        // decided; with a declared length nothing waits for the body.
        ("content-length", "2"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let request = Request {
        method,
        path: &path,
        headers: &headers,
        body: None,
        fingerprint: false,
    };
    let mut cache = TokenCache::new(64, 1 << 20);
    // The first decision verifies the token and fills the cache: every measured one is a hit.
    let first = engine.decide(&request, &store, &mut cache, NOW * 1000);
    if !matches!(first, Decision::Allow { .. }) {
        eprintln!("the bench request is not allowed: {first:?}");
        std::process::exit(3);
    }
    let timed = Instant::now();
    let allowed = decide_loop(&engine, &store, &mut cache, &request, requests);
    let per_decision = timed.elapsed() / u32::try_from(requests.max(1)).unwrap_or(u32::MAX);
    println!(
        "rules={rules} (+catalogue: {} in all) providers={providers} request={} requests={requests} \
         allowed={allowed} startup_ms={:.1} config_heap_bytes={heap} wall_per_decision_ns={}",
        engine.config.rules.len(),
        if serving { "serving" } else { "clusters" },
        startup.as_secs_f64() * 1000.0,
        per_decision.as_nanos()
    );
}
