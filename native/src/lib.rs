//! brickgate as a native Envoy dynamic module (`envoy.filters.http.dynamic_modules`, Envoy 1.40).
//!
//! - `abi`: the raw ABI (C types, callbacks, exported hooks): the crate's only unsafe code;
//! - [`envoy`]: the safe binding the adapter uses (handles, schedulers, the hook traits);
//! - the factory Envoy's configs reach: [`MODULE_FACTORY`].
//!
//! The module holds no policy: that is `brickgate_core`'s, reached through the adapter.
//! See native/README.md for the ABI surface, its version and the threading rules.

// The ABI boundary needs `extern "C"` declarations, `#[unsafe(no_mangle)]` hooks and raw pointers
// from Envoy; each unsafe block there says why it is sound.
#[allow(unsafe_code)]
mod abi;
pub mod envoy;

#[cfg(not(feature = "abi-probe"))]
mod adapter;
#[cfg(feature = "abi-probe")]
mod probe;

/// The one factory this module serves, for every filter config naming it: brickgate's adapter,
/// or, in the `abi-probe` build, the ABI probe.
#[cfg(not(feature = "abi-probe"))]
pub const MODULE_FACTORY: envoy::NewConfigFn = adapter::new_config;
#[cfg(feature = "abi-probe")]
pub const MODULE_FACTORY: envoy::NewConfigFn = probe::new_config;

/// The ABI version string the module reports to Envoy.
pub fn abi_version() -> &'static str {
    abi::hooks::ABI_VERSION.to_str().unwrap_or_default()
}

pub use brickgate_core::VERSION;
