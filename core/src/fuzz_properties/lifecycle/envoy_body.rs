//! The native adapter's body translation (`worker::BodyCursor`) under Envoy's model of a
//! filter's body buffers (native/README.md, "Body semantics"): what a body callback hands the
//! core is what the cursor picks out of Envoy's buffer and received chunk, and the core must see
//! every body byte exactly once and in order.
//!
//! The model: the client's bytes that reached brickgate and have not gone on are Envoy's buffer
//! for the filter (chunks answered `StopAndBuffer` are appended; a `Continue` answer or
//! `continue_decoding` passes it on and empties it, as `release` does). At the end of the stream
//! with a buffer, the last chunk is already in it: the hook sees an empty received chunk, or
//! (`Client::received_is_buffer`, as after an earlier filter resumed with its buffer) a
//! received chunk that is the buffer itself.

use super::*;
use crate::worker::{BodyHook, HeldBody};

/// Envoy's body buffers in one body hook.
struct EnvoyBuffers {
    buffered: Vec<u8>,
    received: Vec<u8>,
    received_is_buffered: bool,
}

impl HeldBody for EnvoyBuffers {
    fn hook(&self) -> BodyHook {
        BodyHook {
            buffered: self.buffered.len(),
            received: self.received.len(),
            received_is_buffered: self.received_is_buffered,
        }
    }

    fn received(&self) -> Vec<u8> {
        self.received.clone()
    }

    fn whole(&self) -> Vec<u8> {
        let mut whole = self.buffered.clone();
        if !self.received_is_buffered {
            whole.extend_from_slice(&self.received);
        }
        whole
    }
}

impl World {
    /// The bytes the native adapter hands the core for a body callback delivering `chunk`,
    /// with the first `buffered` bytes of `pending_body` in Envoy's buffer; checks that the core
    /// has then seen a prefix of the body, and all of it at its end.
    pub(super) fn body_event_bytes(
        &mut self,
        id: usize,
        buffered: usize,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Vec<u8> {
        let client = &mut self.clients[id];
        let buffer = client.pending_body[..buffered].to_vec();
        let buffers = if end_of_stream && !buffer.is_empty() {
            let mut whole = buffer;
            whole.extend_from_slice(chunk);
            EnvoyBuffers {
                received: if client.received_is_buffer {
                    whole.clone()
                } else {
                    Vec::new()
                },
                buffered: whole,
                received_is_buffered: client.received_is_buffer,
            }
        } else {
            EnvoyBuffers {
                buffered: buffer,
                received: chunk.to_vec(),
                received_is_buffered: false,
            }
        };
        let wanted = client.slot.stream.wants_body_bytes();
        let bytes = client.body_cursor.bytes_for(&mut client.slot, &buffers);
        client.core_body.extend_from_slice(&bytes);
        assert!(
            client.body.starts_with(&client.core_body),
            "the core saw body bytes twice or out of order: {:?} of {:?}",
            client.core_body,
            client.body
        );
        if wanted && end_of_stream {
            assert_eq!(
                client.core_body, client.body,
                "the core missed body bytes by the end of the stream"
            );
        }
        bytes
    }
}
