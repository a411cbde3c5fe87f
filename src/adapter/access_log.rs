//! The decision in Envoy's access log: the core writes the record as a protobuf `Struct`
//! (`brickgate_core::access_log`), this module declares the property once per root context
//! and sets it once per decided request (one host call).

use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;

use super::log;
use brickgate_core::access_log::{PROPERTY, declare_property_arguments, filter_state_struct};
use brickgate_core::identity::AuditRecord;

/// Declares `wasm.brickgate` as a `google.protobuf.Struct`, so `%FILTER_STATE(wasm.brickgate)%`
/// renders it as a JSON object. False (with a warning) on a host without `declare_property`:
/// the object would be opaque bytes, so it is not written at all.
pub fn declare() -> bool {
    match hostcalls::call_foreign_function("declare_property", Some(&declare_property_arguments()))
    {
        Ok(_) => true,
        Err(status) => {
            log(
                LogLevel::Warn,
                &format!(
                    "brickgate: the host cannot declare filter state ({status:?}): audit.filter_state is off"
                ),
            );
            false
        }
    }
}

/// Sets the request's `wasm.brickgate` filter state. The stream must be the effective context.
pub fn publish(audit: &AuditRecord) {
    // A failed write only loses the access-log fields; never fail a request over it.
    let _ = hostcalls::set_property(vec![PROPERTY], Some(&filter_state_struct(audit)));
}
