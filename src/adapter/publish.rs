//! The verified principal for the filters after brickgate (`identity.publish`): each chosen
//! field a read-only string filter-state object `wasm.brickgate.<name>`, which Envoy's RBAC
//! (`filter_state` matcher, CEL `condition`) and its rate limiters (the `expr` descriptor)
//! read. Envoy gives a Wasm filter no way to write dynamic metadata (envoyproxy/envoy#15148);
//! `set_property` writes filter state under `wasm.` (source/extensions/common/wasm/context.cc,
//! `Context::setProperty`).

use proxy_wasm::hostcalls;

use brickgate_core::access_log::{declare_principal_property_arguments, principal_property};
use brickgate_core::identity::Principal;

/// Declares each published field, once per root context; an error names the field.
pub fn declare(fields: &[&str]) -> Result<(), String> {
    for name in fields {
        let arguments = declare_principal_property_arguments(name);
        hostcalls::call_foreign_function("declare_property", Some(&arguments)).map_err(|e| {
            format!("cannot declare the filter state of identity.publish {name:?}: {e:?}")
        })?;
    }
    Ok(())
}

/// Sets the principal's fields on the request (one host call each). The stream must be the
/// effective context.
pub fn publish(principal: &Principal) -> Result<(), String> {
    for (name, value) in principal.entries() {
        hostcalls::set_property(vec![&principal_property(name)], Some(value.as_bytes()))
            .map_err(|e| format!("cannot publish the principal's {name}: {e:?}"))?;
    }
    Ok(())
}
