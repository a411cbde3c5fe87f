//! brickgate: a proxy-wasm filter that verifies bearer JWTs and enforces per-route scope rules.
//!
//! The core (everything but `adapter`) is pure: it takes headers, bytes and `now`, and returns
//! decisions as data. Only `adapter`, compiled for wasm32 alone, talks to the proxy-wasm host.
//! Data flows config → token → jwks → verify → policy → identity → engine → adapter.

pub mod alg;
pub mod cache;
pub mod config;
pub mod databricks;
pub mod encoding;
pub mod engine;
pub mod error;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod policy;
pub mod token;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod adapter;

/// Version string reported in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Seconds since the Unix epoch. The core never reads a clock: callers pass `now` in.
pub type UnixTime = u64;
