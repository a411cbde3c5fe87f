//! Defaults of the settings that bound request bodies brickgate holds before its verdict
//! (`databricks.first_body_wait_ms`, `body_deadline_ms`, `max_held_body_bytes`): a leaf module,
//! so that the configuration and the stream lifecycle that reads it share them without the
//! configuration depending on the lifecycle.

/// How long a request held for its body may wait for the first body callback. A host that
/// never delivers the body of a stream paused at its headers (Envoy without
/// `allow_on_headers_stop_iteration: true`) is detected here and refused, never released.
pub const FIRST_BODY_WAIT_MS: u64 = 10_000;

/// How long after its headers a held body must be complete (`databricks.body_deadline_ms`),
/// else 408 `body_timeout`. Databricks' largest serving payload (16 MB) arrives within it at
/// about 280 KB/s (2.2 Mbit/s), its 4 MB generative-AI limit at 70 KB/s; a chat request's few
/// kilobytes at any speed. A client slower than that would hold VM memory for minutes.
pub const BODY_DEADLINE_MS: u64 = 60_000;

/// The request-body bytes all streams of one VM may hold at once, by default
/// (`databricks.max_held_body_bytes`): sixteen of Databricks' largest serving bodies, a quarter
/// of the 1 GiB proxy-wasm hosts give a VM.
pub const MAX_HELD_BODY_BYTES: usize = 256 * 1024 * 1024;
