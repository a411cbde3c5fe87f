//! The properties every parser of hostile input keeps, checked on arbitrary bytes.
//!
//! One function per fuzz target: it reads the bytes the way the target's parser meets them and
//! panics when a property fails (that panic is the fuzzer's finding). The cargo-fuzz targets in
//! `fuzz/` call these (with the `fuzzing` feature), and `make test` replays every committed
//! corpus file and vector through the very same checks (`replay_tests`), so a finding, once
//! its input is committed, stays a regression test on stable Rust.
// Property checks panic by design: a panic is how a fuzzer reports a violated property.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod input;
pub mod lifecycle;
mod parsers;
pub mod vectors;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod replay_tests;

pub use input::Input;
pub use parsers::{
    config, credential, discovery, header_map, jwks, jws, path, serving_body, token_response,
};

/// A property check: panics when the input breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target's name (its folder under `fuzz/corpus/`) and its property check.
pub const TARGETS: [(&str, Check); 10] = [
    ("credential", credential),
    ("jws", jws),
    ("jwks", jwks),
    ("discovery", discovery),
    ("path", path),
    ("serving_body", serving_body),
    ("token_response", token_response),
    ("config", config),
    ("lifecycle", lifecycle::check),
    ("header_map", header_map),
];
