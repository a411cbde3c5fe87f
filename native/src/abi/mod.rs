//! The raw ABI of Envoy's dynamic modules (HTTP filter), Envoy 1.40: the only unsafe code of the crate.
//!
//! - `types`: the C types and enum values;
//! - `callbacks`: the `extern "C"` declarations of the Envoy callbacks we call;
//! - `host`: safe wrappers over them (each `unsafe` block says why it is sound);
//! - `hooks`: the `envoy_dynamic_module_on_*` functions Envoy calls, each behind `catch_unwind`.

mod callbacks;
pub(crate) mod hooks;
pub(crate) mod host;
pub(crate) mod types;
