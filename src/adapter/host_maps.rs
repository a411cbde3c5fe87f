//! Header maps read from the host as bytes and decoded by the core.
//!
//! The SDK's `hostcalls::get_map` unwraps `String::from_utf8` on every name and value, and
//! panics on any status but `Ok`. A client can send a header value that is not UTF-8 (HTTP/1.1
//! `obs-text`), and a panic traps the VM: every later stream on that worker would fail. So the
//! map is fetched here with the same host call and handed to `header_map::decode`, which never
//! panics and names the header it cannot read.

use std::ptr::null_mut;

use proxy_wasm::types::MapType;

use brickgate_core::header_map::{self, MapError};
use brickgate_core::stream::Headers;

#[allow(unsafe_code)]
mod ffi {
    use proxy_wasm::types::MapType;

    /// The ABI's `Ok`.
    const OK: u32 = 0;

    // The same import the SDK declares (the linker merges the two). The status is taken as a
    // plain `u32`: the host may return codes the SDK's `Status` enum has no variant for, and
    // reading one into that enum would be undefined behaviour.
    #[allow(clashing_extern_declarations)]
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: MapType,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    /// The serialised map, or why the host could not give it.
    pub fn map_bytes(map_type: MapType) -> Result<Vec<u8>, String> {
        let mut data: *mut u8 = super::null_mut();
        let mut size: usize = 0;
        // SAFETY: on `OK` the host has written a pointer and a length that it allocated through
        // the SDK's `proxy_on_memory_allocate` (a boxed `[u8]` of exactly `size` bytes from the
        // global allocator, alignment 1), and ownership passes to the module; the SDK's own
        // `get_map` takes it back the same way. A zero size allocated nothing.
        let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
        match status {
            OK if size == 0 => Ok(Vec::new()),
            OK if data.is_null() => Err(format!("the host reported {size} bytes at address 0")),
            // SAFETY: see above; `data` is non-null and owns `size` bytes.
            OK => Ok(unsafe { Vec::from_raw_parts(data, size, size) }),
            status => Err(format!("host status {status}")),
        }
    }
}

/// Why a map could not be read.
pub enum ReadError {
    /// The host call failed, or its bytes do not follow the ABI: the host's fault.
    Host(String),
    /// A name or value is not UTF-8 (see `MapError::NotUtf8`).
    NotUtf8 { name: String, headers: Headers },
}

pub fn read(map_type: MapType) -> Result<Headers, ReadError> {
    let bytes =
        ffi::map_bytes(map_type).map_err(|status| ReadError::Host(format!("{status:?}")))?;
    header_map::decode(&bytes).map_err(|error| match error {
        MapError::Malformed(why) => ReadError::Host(format!("malformed map: {why}")),
        MapError::NotUtf8 { name, headers } => ReadError::NotUtf8 { name, headers },
    })
}

/// A map brickgate only reads for itself (a callout's response headers): a value that is not
/// UTF-8 is kept with U+FFFD in its place, which can only make a check fail; empty when the
/// host could not give the map.
pub fn read_lossy(map_type: MapType) -> Headers {
    match read(map_type) {
        Ok(headers) | Err(ReadError::NotUtf8 { headers, .. }) => headers,
        Err(ReadError::Host(_)) => Vec::new(),
    }
}
