//! brickgate's proxy-wasm module: the thin adapter between the host and `brickgate_core`.
//!
//! It translates host callbacks into the core's stream events and carries out the host actions
//! the core returns. It holds no policy: every decision is made in `brickgate_core`.

#[cfg(target_arch = "wasm32")]
mod adapter;

pub use brickgate_core::VERSION;
