//! brickgate: a proxy-wasm filter that verifies bearer JWTs and enforces per-route scope rules.
//!
//! This crate is the pure core: it takes headers, bytes, events and `now`, and returns
//! decisions and host actions as data. It does not depend on `proxy-wasm`, so the compiler
//! keeps host calls out of it on every target; the `brickgate` crate (the wasm module) is the
//! thin adapter.
//!
//! Production code of top-level modules imports only downwards (`module_graph_tests` fails
//! on a cycle):
//! - leaves, below everything: `error`, `metrics`, `alg`, `encoding`, `header_name`,
//!   `shared_data`, then `policy` (rule matching) and `request_hygiene`;
//! - the request path: `token` → `jwks` → `verify` → `identity` (and `access_log`, which
//!   renders identity's audit record), with `databricks` beside them;
//! - `config`, which parses the plugin JSON once and compiles it into the types of the modules
//!   below it (so none of them imports `config`);
//! - `cache` → `engine` → `stream` → `worker` (the orchestration every adapter drives), and
//!   `header_map` for adapters on top.
//!
//! Each request flows token → jwks → verify → policy → identity → engine → stream.

pub mod access_log;
pub mod alg;
pub mod cache;
pub mod config;
pub mod databricks;
pub mod encoding;
pub mod engine;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_properties;
pub mod header_map;
pub mod header_name;
pub mod identity;
pub mod jwks;
pub mod metrics;
#[cfg(test)]
mod module_graph_tests;
pub mod policy;
pub mod request_hygiene;
pub mod shared_data;
pub mod stream;
pub mod token;
pub mod verify;
pub mod worker;

/// Version string reported in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The user agent of brickgate's own requests (key fetches, Databricks token calls).
pub const USER_AGENT: &str = concat!("brickgate/", env!("CARGO_PKG_VERSION"));

/// Seconds since the Unix epoch. The core never reads a clock: callers pass `now` in.
pub type UnixTime = u64;

/// Milliseconds since the Unix epoch, as the host's clock reports them.
pub type UnixMillis = u64;
