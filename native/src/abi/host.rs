//! Safe wrappers over the callbacks: the only place that dereferences what Envoy hands over.
//!
//! Every read copies out of Envoy's memory before returning. abi.h says buffers Envoy returns stay
//! valid "until the end of the current event hook unless the setter callback is called", so a copy
//! is the simplest way to make a later setter (or the hook's end) unable to leave us a dangling
//! slice.
//!
//! `RawFilter` and `RawConfig` are built only by hooks.rs from the pointers Envoy passes to the
//! hook being run, and lent by reference for that hook only; they hold raw pointers, so they are
//! neither `Send` nor `Sync`: they cannot leave the thread the hook runs on.

use std::ffi::c_void;
use std::ptr::NonNull;

use super::callbacks as c;
use super::types::{
    CALLOUT_INIT_SUCCESS, CEnum, ConfigEnvoyPtr, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr,
    METRICS_SUCCESS, ModuleBuffer, ModuleHeader,
};

/// Copies `length` bytes at `ptr` (Envoy's); null or empty gives an empty vector.
///
/// Callers pass pointers Envoy has just returned for the running hook.
fn copy_envoy_bytes(ptr: *const std::ffi::c_char, length: usize) -> Vec<u8> {
    if ptr.is_null() || length == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy returned (ptr, length) as a live buffer for the current hook (abi.h ownership
    // notes), and we copy it before returning to any code that could call a setter.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }.to_vec()
}

pub(crate) fn copy_header(header: &EnvoyHeader) -> (Vec<u8>, Vec<u8>) {
    (
        copy_envoy_bytes(header.key_ptr, header.key_length),
        copy_envoy_bytes(header.value_ptr, header.value_length),
    )
}

pub(crate) fn copy_buffer(buffer: &EnvoyBuffer) -> Vec<u8> {
    copy_envoy_bytes(buffer.ptr, buffer.length)
}

/// Builds `envoy_dynamic_module_type_module_http_header`s borrowing `headers`.
fn module_headers(headers: &[(&[u8], &[u8])]) -> Vec<ModuleHeader> {
    headers
        .iter()
        .map(|(name, value)| ModuleHeader::of(name, value))
        .collect()
}

/// One callout, stream's or config's: `send` makes the call with an out-pointer for the id and
/// buffers that borrow `cluster`, `headers` and `body` for the call only (Envoy copies the request
/// into its own message), and answers the init result.
fn callout(
    cluster: &[u8],
    headers: &[(&[u8], &[u8])],
    body: &[u8],
    send: impl FnOnce(*mut u64, ModuleBuffer, *const ModuleHeader, usize, ModuleBuffer) -> CEnum,
) -> Result<u64, CEnum> {
    let headers = module_headers(headers);
    let mut callout_id = 0u64;
    let result = send(
        &mut callout_id,
        ModuleBuffer::of(cluster),
        headers.as_ptr(),
        headers.len(),
        ModuleBuffer::of(body),
    );
    if result == CALLOUT_INIT_SUCCESS {
        Ok(callout_id)
    } else {
        Err(result)
    }
}

/// Label names or values as module buffers borrowing `labels`.
fn label_buffers(labels: &[&str]) -> Vec<ModuleBuffer> {
    labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect()
}

/// The array abi.h takes for labels: null when there are none.
fn labels_ptr(labels: &[ModuleBuffer]) -> *const ModuleBuffer {
    if labels.is_empty() {
        std::ptr::null()
    } else {
        labels.as_ptr()
    }
}

pub(crate) fn log(level: CEnum, message: &str) {
    // SAFETY: the buffer borrows `message`, alive for the call; Envoy copies it into its logger.
    unsafe { c::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

pub(crate) fn log_enabled(level: CEnum) -> bool {
    // SAFETY: plain value in, plain value out.
    unsafe { c::envoy_dynamic_module_callback_log_enabled(level) }
}

/// Envoy's `DynamicModuleHttpFilter` of the stream whose hook is running.
pub(crate) struct RawFilter(FilterEnvoyPtr);

impl RawFilter {
    /// Only hooks.rs builds one, from the pointer Envoy passed to the running hook.
    pub(super) fn new(ptr: FilterEnvoyPtr) -> RawFilter {
        RawFilter(ptr)
    }

    pub(crate) fn headers(&self, header_type: CEnum) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        // SAFETY: self.0 is live for this hook (see the type's doc).
        let size =
            unsafe { c::envoy_dynamic_module_callback_http_get_headers_size(self.0, header_type) };
        let mut raw = vec![EnvoyHeader::EMPTY; size];
        // SAFETY: `raw` has room for `size` entries, as the PRECONDITION in abi.h asks; nothing
        // changes the map between the two calls (same thread, no setter in between).
        let available = unsafe {
            c::envoy_dynamic_module_callback_http_get_headers(self.0, header_type, raw.as_mut_ptr())
        };
        available.then(|| raw.iter().map(copy_header).collect())
    }

    /// Every value of `name`, in order (`get_header` by index, up to the count it reports).
    pub(crate) fn header_values(&self, header_type: CEnum, name: &[u8]) -> Vec<Vec<u8>> {
        let mut values = Vec::new();
        let mut count = 1usize;
        let mut index = 0usize;
        while index < count {
            let mut value = EnvoyBuffer::EMPTY;
            // SAFETY: key borrows `name`; `value` and `count` are valid out-pointers.
            let found = unsafe {
                c::envoy_dynamic_module_callback_http_get_header(
                    self.0,
                    header_type,
                    ModuleBuffer::of(name),
                    &mut value,
                    index,
                    &mut count,
                )
            };
            if !found || value.ptr.is_null() {
                break;
            }
            values.push(copy_buffer(&value));
            index += 1;
        }
        values
    }

    /// Replaces every value of `name` by `value`; `None` removes the header.
    pub(crate) fn set_header(&self, header_type: CEnum, name: &[u8], value: Option<&[u8]>) -> bool {
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
        // SAFETY: both buffers borrow caller data alive for the call; Envoy copies them.
        unsafe {
            c::envoy_dynamic_module_callback_http_set_header(
                self.0,
                header_type,
                ModuleBuffer::of(name),
                value,
            )
        }
    }

    pub(crate) fn add_header(&self, header_type: CEnum, name: &[u8], value: &[u8]) -> bool {
        // SAFETY: as set_header.
        unsafe {
            c::envoy_dynamic_module_callback_http_add_header(
                self.0,
                header_type,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            )
        }
    }

    pub(crate) fn send_response(
        &self,
        status: u32,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        details: &[u8],
    ) {
        let headers = module_headers(headers);
        // SAFETY: `headers` and the buffers borrow data alive for the call; Envoy copies them.
        unsafe {
            c::envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            )
        }
    }

    pub(crate) fn body_size(&self, body_type: CEnum) -> usize {
        // SAFETY: plain values; self.0 live.
        unsafe { c::envoy_dynamic_module_callback_http_get_body_size(self.0, body_type) }
    }

    pub(crate) fn body(&self, body_type: CEnum) -> Vec<u8> {
        // SAFETY: plain values; self.0 live.
        let chunks = unsafe {
            c::envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body_type)
        };
        let mut raw = vec![EnvoyBuffer::EMPTY; chunks];
        // SAFETY: `raw` has room for `chunks` buffers (abi.h PRECONDITION).
        let available = unsafe {
            c::envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                body_type,
                raw.as_mut_ptr(),
            )
        };
        if !available {
            return Vec::new();
        }
        raw.iter().flat_map(copy_buffer).collect()
    }

    pub(crate) fn received_buffered_request_body(&self) -> bool {
        // SAFETY: self.0 live.
        unsafe { c::envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) }
    }

    pub(crate) fn set_dynamic_metadata_string(&self, ns: &[u8], key: &[u8], value: &[u8]) {
        // SAFETY: buffers borrow caller data; Envoy copies them into the stream's metadata.
        unsafe {
            c::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.0,
                ModuleBuffer::of(ns),
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            )
        }
    }

    pub(crate) fn add_dynamic_metadata_list_string(
        &self,
        ns: &[u8],
        key: &[u8],
        value: &[u8],
    ) -> bool {
        // SAFETY: as set_dynamic_metadata_string.
        unsafe {
            c::envoy_dynamic_module_callback_http_add_dynamic_metadata_list_string(
                self.0,
                ModuleBuffer::of(ns),
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            )
        }
    }

    pub(crate) fn set_filter_state_bytes(&self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: buffers borrow caller data; Envoy copies them into the filter state.
        unsafe {
            c::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            )
        }
    }

    pub(crate) fn clear_route_cache(&self) {
        // SAFETY: self.0 live.
        unsafe { c::envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    pub(crate) fn continue_decoding(&self) {
        // SAFETY: self.0 live.
        unsafe { c::envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    pub(crate) fn worker_index(&self) -> u32 {
        // SAFETY: self.0 live.
        unsafe { c::envoy_dynamic_module_callback_http_filter_get_worker_index(self.0) }
    }

    pub(crate) fn increment_counter(&self, id: usize, labels: &[&str], value: u64) -> bool {
        let labels = label_buffers(labels);
        // SAFETY: the label buffers borrow `labels` for the call (null, 0 when there are none, as
        // abi.h allows); self.0 live.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                labels_ptr(&labels),
                labels.len(),
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    pub(crate) fn record_histogram(&self, id: usize, value: u64) -> bool {
        // SAFETY: as increment_counter.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.0,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    /// The callout's id, which Envoy assigns, or the init result (not Success) it answered.
    pub(crate) fn http_callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CEnum> {
        callout(
            cluster,
            headers,
            body,
            |id, cluster, headers, count, body| {
                // SAFETY: see `callout`; self.0 live for this hook.
                unsafe {
                    c::envoy_dynamic_module_callback_http_filter_http_callout(
                        self.0, id, cluster, headers, count, body, timeout_ms,
                    )
                }
            },
        )
    }

    pub(crate) fn scheduler(&self) -> Option<RawStreamScheduler> {
        // SAFETY: self.0 live; we own the returned pointer (abi.h: "the module is responsible for
        // managing the lifetime"), freed in RawStreamScheduler's Drop.
        let ptr = unsafe { c::envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) };
        NonNull::new(ptr).map(RawStreamScheduler)
    }
}

/// Wakes one stream on its worker thread (`on_http_filter_scheduled`).
pub(crate) struct RawStreamScheduler(NonNull<c_void>);

// SAFETY: abi.h (`..._http_filter_scheduler_commit`): "safe to call from any thread and is a no-op
// once the filter has been destroyed". Envoy's scheduler object holds a weak reference to the
// filter and the worker's dispatcher, whose `post` is thread-safe.
unsafe impl Send for RawStreamScheduler {}
// SAFETY: commit takes `&self` and is thread-safe (above); delete needs ownership (Drop).
unsafe impl Sync for RawStreamScheduler {}

impl RawStreamScheduler {
    pub(crate) fn commit(&self, event_id: u64) {
        // SAFETY: the pointer is ours and not yet deleted (deleted only in Drop).
        unsafe {
            c::envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0.as_ptr(), event_id)
        }
    }
}

impl Drop for RawStreamScheduler {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once; no commit can run concurrently since we own `self`.
        unsafe { c::envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0.as_ptr()) }
    }
}

/// Envoy's `DynamicModuleHttpFilterConfig`, in a main-thread hook of that config.
pub(crate) struct RawConfig(ConfigEnvoyPtr);

impl RawConfig {
    /// Only hooks.rs builds one, from the pointer Envoy passed to the running hook.
    pub(super) fn new(ptr: ConfigEnvoyPtr) -> RawConfig {
        RawConfig(ptr)
    }

    pub(crate) fn define_counter(&self, name: &str, labels: &[&str]) -> Result<usize, CEnum> {
        let mut id = 0usize;
        let labels = label_buffers(labels);
        // SAFETY: `name` and the label names borrowed for the call (Envoy copies them into stat
        // names); null, 0 when there are no labels.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                labels_ptr(&labels),
                labels.len(),
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    pub(crate) fn define_histogram(&self, name: &str) -> Result<usize, CEnum> {
        let mut id = 0usize;
        // SAFETY: as define_counter.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null(),
                0,
                &mut id,
            )
        };
        if result == METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(result)
        }
    }

    pub(crate) fn increment_counter(&self, id: usize, value: u64) -> bool {
        // SAFETY: no labels; self.0 live for this hook.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    pub(crate) fn record_histogram(&self, id: usize, value: u64) -> bool {
        // SAFETY: as increment_counter.
        let result = unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                self.0,
                id,
                std::ptr::null(),
                0,
                value,
            )
        };
        result == METRICS_SUCCESS
    }

    pub(crate) fn http_callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CEnum> {
        callout(
            cluster,
            headers,
            body,
            |id, cluster, headers, count, body| {
                // SAFETY: see `callout`; self.0 live for this hook.
                unsafe {
                    c::envoy_dynamic_module_callback_http_filter_config_http_callout(
                        self.0, id, cluster, headers, count, body, timeout_ms,
                    )
                }
            },
        )
    }

    pub(crate) fn scheduler(&self) -> Option<RawConfigScheduler> {
        // SAFETY: self.0 live; we own the returned pointer, freed in Drop.
        let ptr =
            unsafe { c::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        NonNull::new(ptr).map(RawConfigScheduler)
    }
}

/// Wakes the config on the main thread (`on_http_filter_config_scheduled`).
pub(crate) struct RawConfigScheduler(NonNull<c_void>);

// SAFETY: abi.h (`..._http_filter_config_scheduler_new`): "used to dispatch HTTP filter
// configuration operations to the main thread from any thread"; commit posts to the main
// dispatcher, which is thread-safe.
unsafe impl Send for RawConfigScheduler {}
// SAFETY: commit takes `&self` and is thread-safe (above); delete needs ownership (Drop).
unsafe impl Sync for RawConfigScheduler {}

impl RawConfigScheduler {
    pub(crate) fn commit(&self, event_id: u64) {
        // SAFETY: the pointer is ours and not yet deleted.
        unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                self.0.as_ptr(),
                event_id,
            )
        }
    }
}

impl Drop for RawConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once, with no concurrent commit (we own `self`).
        unsafe {
            c::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0.as_ptr())
        }
    }
}
