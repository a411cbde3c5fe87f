//! The real module's factory until the brickgate adapter lands: refuses every configuration.

use std::sync::Arc;

use crate::envoy::{ConfigHandle, FilterConfig};

pub(crate) fn new_config(
    _name: &str,
    _config: &[u8],
    _handle: &ConfigHandle,
) -> Result<Arc<dyn FilterConfig>, String> {
    Err("brickgate native adapter not built in".to_string())
}
