//! The C types of the ABI that this module uses, laid out as Envoy's header declares them.
//!
//! Source: envoyproxy/envoy `source/extensions/dynamic_modules/abi/abi.h` at commit
//! 0199da4a13cb999df12ad32db7d03942cfbf9abb (ABI "v0.1.0" there; the 1.40.0 binary,
//! 9e5580933739775e8bce696a57a2e1bc99368f23, carries "v0.2.0" — see native/README.md). Every type
//! here is exercised by tests/e2e/test_native_abi.py against that binary.
//!
//! C enums cross the boundary as `u32` (the x86-64/aarch64 SysV `int`-sized enum), never as Rust
//! enums: a value Envoy adds later must not be undefined behaviour on our side.

use std::ffi::{c_char, c_void};

/// A C enum as it crosses the ABI.
pub type CEnum = u32;

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`: Envoy's `DynamicModuleHttpFilterConfig`.
pub type ConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`: our `ConfigBox` (hooks.rs).
pub type ConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's `DynamicModuleHttpFilter`.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: our `FilterBox` (hooks.rs).
pub type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr` (owned by us, freed with `_delete`).
pub type StreamSchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr` (likewise).
pub type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_buffer`: bytes we own, lent for one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
    /// The null buffer: `set_header` with it removes the header (abi.h, `..._http_set_header`).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl ModuleHeader {
    pub fn of(name: &[u8], value: &[u8]) -> ModuleHeader {
        ModuleHeader {
            key_ptr: name.as_ptr().cast(),
            key_length: name.len(),
            value_ptr: value.as_ptr().cast(),
            value_length: value.len(),
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

impl EnvoyHeader {
    pub const EMPTY: EnvoyHeader = EnvoyHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    use super::CEnum;
    pub const REQUEST_HEADER: CEnum = 0;
    pub const REQUEST_TRAILER: CEnum = 1;
}

/// `envoy_dynamic_module_type_http_body_type`.
pub mod body_type {
    use super::CEnum;
    /// The chunk of the current `on_request_body` event (only there).
    pub const RECEIVED_REQUEST_BODY: CEnum = 0;
    /// What this filter (or an earlier one) buffered by stopping iteration.
    pub const BUFFERED_REQUEST_BODY: CEnum = 1;
}

/// `envoy_dynamic_module_type_log_level` (source/common/common/base_logger.h order).
pub mod log_level {
    use super::CEnum;
    pub const TRACE: CEnum = 0;
    pub const DEBUG: CEnum = 1;
    pub const INFO: CEnum = 2;
    pub const WARN: CEnum = 3;
    pub const ERROR: CEnum = 4;
    pub const CRITICAL: CEnum = 5;
}

/// `envoy_dynamic_module_type_metrics_result`: 0 is Success.
pub const METRICS_SUCCESS: CEnum = 0;

/// `envoy_dynamic_module_type_http_callout_init_result`: 0 is Success; then MissingRequiredHeaders,
/// ClusterNotFound, DuplicateCalloutId, CannotCreateRequest.
pub const CALLOUT_INIT_SUCCESS: CEnum = 0;

/// `envoy_dynamic_module_type_http_callout_result`: Success, Reset, ExceedResponseBufferLimit.
pub mod callout_result {
    use super::CEnum;
    pub const SUCCESS: CEnum = 0;
    pub const RESET: CEnum = 1;
    pub const EXCEED_RESPONSE_BUFFER_LIMIT: CEnum = 2;
}

/// The `on_http_filter_*` status enums: 0 is Continue in every one; the stop values we answer.
pub mod status {
    use super::CEnum;
    pub const CONTINUE: CEnum = 0;
    /// request/response headers: StopIteration.
    pub const HEADERS_STOP_ITERATION: CEnum = 1;
    /// request/response headers: StopAllIterationAndBuffer.
    pub const HEADERS_STOP_ALL_AND_BUFFER: CEnum = 3;
    /// request/response body: StopIterationAndBuffer.
    pub const BODY_STOP_AND_BUFFER: CEnum = 1;
    /// request/response body: StopIterationNoBuffer.
    pub const BODY_STOP_NO_BUFFER: CEnum = 3;
    /// request/response trailers: StopIteration.
    pub const TRAILERS_STOP_ITERATION: CEnum = 1;
}
