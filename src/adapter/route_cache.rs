//! Asks Envoy to pick the request's route again after brickgate rewrote its headers.
//!
//! Envoy chose the route from the headers the client sent. Since Envoy 1.33 a Wasm filter's
//! header changes clear that choice only for modules of ABI 0.2.1 or older (envoyproxy/envoy
//! #36671, `Context::onHeadersModified`); the same change added the foreign function
//! `clear_route_cache` (source/extensions/common/wasm/foreign.cc), which clears it whatever
//! the ABI. brickgate calls it explicitly, so the route of the canonical path serves the
//! request even when the SDK moves to a newer ABI (docs/PATHS.md, "Envoy in front").
//!
//! The SDK's `hostcalls::call_foreign_function` panics on a status its `Status` enum does not
//! list, which would trap the VM; the import is called here directly instead.

use std::ptr::{null, null_mut};

const CLEAR_ROUTE_CACHE: &str = "clear_route_cache";

#[allow(unsafe_code)]
mod ffi {
    /// The ABI's `Ok`.
    pub const OK: u32 = 0;

    // The same import the SDK declares (the linker merges the two), the status taken as a
    // plain `u32` (see host_maps.rs).
    #[allow(clashing_extern_declarations)]
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_call_foreign_function(
            function_name_data: *const u8,
            function_name_size: usize,
            arguments_data: *const u8,
            arguments_size: usize,
            results_data: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }
}

/// Clears Envoy's route cache for the current stream; the next filter or the router picks the
/// route again from the request's headers as they are now.
#[allow(unsafe_code)]
pub fn clear() -> Result<(), String> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the name is a live `&str` of `len()` bytes; no arguments (null, 0). On `OK` the
    // host may have written a result allocated through the SDK's `proxy_on_memory_allocate`
    // (a boxed `[u8]` of exactly `size` bytes), whose ownership passes to the module.
    let status = unsafe {
        ffi::proxy_call_foreign_function(
            CLEAR_ROUTE_CACHE.as_ptr(),
            CLEAR_ROUTE_CACHE.len(),
            null(),
            0,
            &mut data,
            &mut size,
        )
    };
    if status == ffi::OK && !data.is_null() && size != 0 {
        // SAFETY: see above; `data` is non-null and owns `size` bytes. Dropped at once:
        // `clear_route_cache` answers nothing.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
    match status {
        ffi::OK => Ok(()),
        status => Err(format!(
            "cannot have the route picked again for the rewritten request \
             (foreign function {CLEAR_ROUTE_CACHE}: host status {status})"
        )),
    }
}
