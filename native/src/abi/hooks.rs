//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), each behind a panic barrier.
//!
//! Which hooks a module must export: Envoy 1.40's loader (envoyproxy/envoy
//! `source/extensions/filters/http/dynamic_modules/filter_config.cc`, commit
//! 02bdd7b8840871d9dc9e5bb80700c7a887bdc8e5, `newDynamicModuleHttpFilterConfig`) refuses the config
//! when any of these is missing: config_new/destroy, filter new/destroy, request and response
//! headers/body/trailers, stream_complete, http_callout_done, the five http_stream_* hooks,
//! scheduled, and the two downstream watermark hooks. config_scheduled,
//! config_http_callout_done, the config_http_stream_* hooks and local_reply are optional; we
//! export the first two. Per-route config hooks are looked up only for per-route configs, which
//! this module does not offer (they are not exported: such a config fails to load).
//!
//! A panic never crosses the ABI: every hook body runs in `catch_unwind` (the module is built
//! with `panic = "unwind"`, profile `native`). A caught panic is logged; in a stream hook the
//! stream gets a 500 local reply and the hook stops iteration, and that stream's filter is not
//! called again.

use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::host::{RawConfig, RawFilter, copy_buffer, copy_header, log};
use super::types::{
    CEnum, ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, EnvoyHeader, FilterEnvoyPtr,
    FilterModulePtr, log_level, status,
};
use crate::envoy::{
    BodyStatus, CalloutDone, CalloutResult, ConfigHandle, Filter, FilterConfig, FilterHandle,
    HeadersStatus, TrailersStatus,
};

/// The ABI version this module is written against: the string the Envoy 1.40.0 binary compares
/// with (its log says "Dynamic module ABI version v0.2.0 matched."; a mismatch only warns:
/// `source/extensions/dynamic_modules/dynamic_modules.cc`, commit
/// 0252f5291f1a147a075c0bbf20a9caed5229576a, `newDynamicModule`).
pub const ABI_VERSION: &CStr = c"v0.2.0";

/// What Envoy holds as our config pointer.
struct ConfigBox {
    config: Arc<dyn FilterConfig>,
}

/// What Envoy holds as our filter pointer. Envoy calls a stream's hooks one at a time on its
/// worker, but a callback may re-enter (a local reply can complete the stream inside the hook
/// that sent it), hence the RefCell: a re-entrant call is skipped, a re-entrant
/// `stream_complete` is run once the outer hook returns.
struct FilterBox {
    filter: RefCell<Box<dyn Filter>>,
    /// A hook panicked: the stream has its 500; the filter is not called again.
    broken: Cell<bool>,
    complete_pending: Cell<bool>,
}

const INTERNAL_ERROR_BODY: &[u8] = b"internal error\n";

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn log_panic(hook: &str, payload: &(dyn std::any::Any + Send)) {
    log(
        log_level::ERROR,
        &format!(
            "brickgate native: panic in {hook}: {}",
            panic_message(payload)
        ),
    );
}

fn buffer_bytes(buffer: &EnvoyBuffer) -> Vec<u8> {
    copy_buffer(buffer)
}

/// Copies `size` Envoy headers at `ptr` (null or 0: none).
fn envoy_headers(ptr: *const EnvoyHeader, size: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    if ptr.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy passes `size` headers at `ptr`, valid for the running hook (abi.h,
    // `on_http_filter_http_callout_done`); copied before the hook returns.
    unsafe { std::slice::from_raw_parts(ptr, size) }
        .iter()
        .map(copy_header)
        .collect()
}

/// Concatenates `size` Envoy body chunks at `ptr` (null or 0: empty).
fn envoy_chunks(ptr: *const EnvoyBuffer, size: usize) -> Vec<u8> {
    if ptr.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: as envoy_headers.
    unsafe { std::slice::from_raw_parts(ptr, size) }
        .iter()
        .flat_map(copy_buffer)
        .collect()
}

/// Runs `hook` on the stream's filter behind the panic barrier.
///
/// `idle` answers a filter that cannot be called (broken, or a re-entrant call); `stop` answers a
/// panic, after the 500 local reply.
fn with_filter<R>(
    name: &str,
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    idle: R,
    stop: R,
    hook: impl FnOnce(&mut dyn Filter, &FilterHandle) -> R,
) -> R {
    if filter_module.is_null() {
        return idle;
    }
    // SAFETY: `filter_module` is the pointer on_http_filter_new returned (Box::into_raw of a
    // FilterBox), alive until on_http_filter_destroy, which Envoy calls after every other hook of
    // the stream. Shared reference only: mutation goes through the cells.
    let filter_box = unsafe { &*filter_module.cast::<FilterBox>() };
    if filter_box.broken.get() {
        return idle;
    }
    let handle = FilterHandle::new(RawFilter::new(filter_envoy));
    let answer = {
        let Ok(mut filter) = filter_box.filter.try_borrow_mut() else {
            return idle;
        };
        match catch_unwind(AssertUnwindSafe(|| hook(filter.as_mut(), &handle))) {
            Ok(answer) => answer,
            Err(payload) => {
                filter_box.broken.set(true);
                log_panic(name, payload.as_ref());
                handle.send_response(500, &[], INTERNAL_ERROR_BODY, "brickgate_native_panic");
                stop
            }
        }
    };
    if filter_box.complete_pending.take() && !filter_box.broken.get() {
        stream_complete(&handle, filter_box);
    }
    answer
}

fn stream_complete(handle: &FilterHandle, filter_box: &FilterBox) {
    let Ok(mut filter) = filter_box.filter.try_borrow_mut() else {
        filter_box.complete_pending.set(true);
        return;
    };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| filter.on_stream_complete(handle))) {
        filter_box.broken.set(true);
        log_panic("on_stream_complete", payload.as_ref());
    }
}

fn headers_status(status: HeadersStatus) -> CEnum {
    match status {
        HeadersStatus::Continue => status::CONTINUE,
        HeadersStatus::StopIteration => status::HEADERS_STOP_ITERATION,
        HeadersStatus::StopAllAndBuffer => status::HEADERS_STOP_ALL_AND_BUFFER,
    }
}

fn body_status(status: BodyStatus) -> CEnum {
    match status {
        BodyStatus::Continue => status::CONTINUE,
        BodyStatus::StopAndBuffer => status::BODY_STOP_AND_BUFFER,
        BodyStatus::StopNoBuffer => status::BODY_STOP_NO_BUFFER,
    }
}

fn trailers_status(status: TrailersStatus) -> CEnum {
    match status {
        TrailersStatus::Continue => status::CONTINUE,
        TrailersStatus::StopIteration => status::TRAILERS_STOP_ITERATION,
    }
}

// ---------------------------------------------------------------- program

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

// ---------------------------------------------------------------- config (main thread)

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    let outcome = catch_unwind(|| {
        let name = String::from_utf8(buffer_bytes(&name))
            .map_err(|_| "filter_name is not UTF-8".to_string())?;
        let handle = ConfigHandle::new(RawConfig::new(config_envoy));
        (crate::MODULE_FACTORY)(&name, &buffer_bytes(&config), &handle)
    });
    match outcome {
        Ok(Ok(config)) => Box::into_raw(Box::new(ConfigBox { config }))
            .cast_const()
            .cast(),
        Ok(Err(message)) => {
            log(
                log_level::ERROR,
                &format!("brickgate native: configuration refused: {message}"),
            );
            std::ptr::null()
        }
        Err(payload) => {
            log_panic("on_http_filter_config_new", payload.as_ref());
            std::ptr::null()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config_module: ConfigModulePtr,
) {
    if config_module.is_null() {
        return;
    }
    // SAFETY: the pointer config_new returned (Box::into_raw); Envoy destroys it once, after
    // every filter of the config.
    let config = unsafe { Box::from_raw(config_module.cast::<ConfigBox>().cast_mut()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(config))) {
        log_panic("on_http_filter_config_destroy", payload.as_ref());
    }
}

/// The config's object, for the hooks below.
fn config_of<'a>(config_module: ConfigModulePtr) -> Option<&'a ConfigBox> {
    // SAFETY: non-null pointers here are what config_new returned, alive until config_destroy,
    // which Envoy calls after every hook of the config; shared access only (FilterConfig: Sync).
    (!config_module.is_null()).then(|| unsafe { &*config_module.cast::<ConfigBox>() })
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: ConfigEnvoyPtr,
    config_module: ConfigModulePtr,
    event_id: u64,
) {
    let Some(config) = config_of(config_module) else {
        return;
    };
    let handle = ConfigHandle::new(RawConfig::new(config_envoy));
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| {
        config.config.on_scheduled(&handle, event_id)
    })) {
        log_panic("on_http_filter_config_scheduled", payload.as_ref());
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: ConfigEnvoyPtr,
    config_module: ConfigModulePtr,
    callout_id: u64,
    result: CEnum,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    let Some(config) = config_of(config_module) else {
        return;
    };
    let handle = ConfigHandle::new(RawConfig::new(config_envoy));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let headers = envoy_headers(headers, headers_size);
        let body = envoy_chunks(body_chunks, body_chunks_size);
        let done = CalloutDone {
            callout_id,
            result: CalloutResult::from_abi(result),
            headers: &headers,
            body: &body,
        };
        config.config.on_callout_done(&handle, done);
    }));
    if let Err(payload) = outcome {
        log_panic("on_http_filter_config_http_callout_done", payload.as_ref());
    }
}

// ---------------------------------------------------------------- stream (worker thread)

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config_module: ConfigModulePtr,
    filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    let Some(config) = config_of(config_module) else {
        return std::ptr::null();
    };
    let handle = FilterHandle::new(RawFilter::new(filter_envoy));
    match catch_unwind(AssertUnwindSafe(|| config.config.new_filter(&handle))) {
        Ok(filter) => {
            let filter_box = FilterBox {
                filter: RefCell::new(filter),
                broken: Cell::new(false),
                complete_pending: Cell::new(false),
            };
            Box::into_raw(Box::new(filter_box)).cast_const().cast()
        }
        Err(payload) => {
            // A null filter makes Envoy close the stream (abi.h, on_http_filter_new).
            log_panic("on_http_filter_new", payload.as_ref());
            std::ptr::null()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module: FilterModulePtr) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: the pointer on_http_filter_new returned; Envoy destroys it once, last.
    let filter = unsafe { Box::from_raw(filter_module.cast::<FilterBox>().cast_mut()) };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(filter))) {
        log_panic("on_http_filter_destroy", payload.as_ref());
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> CEnum {
    with_filter(
        "on_request_headers",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::HEADERS_STOP_ITERATION,
        |filter, handle| headers_status(filter.on_request_headers(handle, end_of_stream)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> CEnum {
    with_filter(
        "on_request_body",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::BODY_STOP_NO_BUFFER,
        |filter, handle| body_status(filter.on_request_body(handle, end_of_stream)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) -> CEnum {
    with_filter(
        "on_request_trailers",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::TRAILERS_STOP_ITERATION,
        |filter, handle| trailers_status(filter.on_request_trailers(handle)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> CEnum {
    with_filter(
        "on_response_headers",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::HEADERS_STOP_ITERATION,
        |filter, handle| headers_status(filter.on_response_headers(handle, end_of_stream)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    end_of_stream: bool,
) -> CEnum {
    with_filter(
        "on_response_body",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::BODY_STOP_NO_BUFFER,
        |filter, handle| body_status(filter.on_response_body(handle, end_of_stream)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) -> CEnum {
    with_filter(
        "on_response_trailers",
        filter_envoy,
        filter_module,
        status::CONTINUE,
        status::TRAILERS_STOP_ITERATION,
        |filter, handle| trailers_status(filter.on_response_trailers(handle)),
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
) {
    if filter_module.is_null() {
        return;
    }
    // SAFETY: as in with_filter.
    let filter_box = unsafe { &*filter_module.cast::<FilterBox>() };
    if !filter_box.broken.get() {
        stream_complete(&FilterHandle::new(RawFilter::new(filter_envoy)), filter_box);
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    event_id: u64,
) {
    with_filter(
        "on_scheduled",
        filter_envoy,
        filter_module,
        (),
        (),
        |filter, handle| filter.on_scheduled(handle, event_id),
    );
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    filter_envoy: FilterEnvoyPtr,
    filter_module: FilterModulePtr,
    callout_id: u64,
    result: CEnum,
    headers: *const EnvoyHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    with_filter(
        "on_callout_done",
        filter_envoy,
        filter_module,
        (),
        (),
        |filter, handle| {
            let headers = envoy_headers(headers, headers_size);
            let body = envoy_chunks(body_chunks, body_chunks_size);
            let done = CalloutDone {
                callout_id,
                result: CalloutResult::from_abi(result),
                headers: &headers,
                body: &body,
            };
            filter.on_callout_done(handle, done);
        },
    );
}

// Required by the loader, unused by brickgate (no streamed callouts, no terminal filter): no-ops.

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _headers: *const EnvoyHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const EnvoyHeader,
    _trailers_size: usize,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
    _stream_id: u64,
    _reason: CEnum,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
) {
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter_module: FilterModulePtr,
) {
}
