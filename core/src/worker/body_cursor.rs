//! Which request-body bytes are new in a body callback, for a host that hands a filter its
//! whole buffer rather than only the new chunk: Envoy's dynamic modules (native/README.md,
//! "Body semantics"). Pure, so the native adapter, its unit tests and the lifecycle fuzzer
//! (with a model of Envoy's buffering) run the same translation.
//!
//! Envoy's model, per filter (as native/README.md "Body semantics" records it for Envoy 1.40,
//! its e2e probe included): a chunk answered
//! `StopAndBuffer` is appended to the filter's buffer; when the stream goes on (a `Continue`
//! answer, or `continue_decoding`) the buffer is passed on and a new one starts; at the end of
//! the stream with a buffer, the last chunk is already in the buffer when the hook runs; and
//! when an earlier filter buffered the body and resumed, the received chunk *is* the buffer.

use super::Slot;

/// What one body hook can tell without copying: the sizes of the filter's buffer and of the
/// chunk this hook received, and whether that chunk is the buffer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyHook {
    pub buffered: usize,
    pub received: usize,
    pub received_is_buffered: bool,
}

impl BodyHook {
    /// The size of the body the host holds for the filter: the buffer, then the received chunk
    /// unless it is the buffer.
    pub fn total(&self) -> usize {
        if self.received_is_buffered {
            self.buffered
        } else {
            self.buffered.saturating_add(self.received)
        }
    }
}

/// Where the new bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewBytes {
    /// Nothing the core has not seen.
    Nothing,
    /// The chunk this hook received, all of it (the usual case: one copy of the chunk only).
    Received,
    /// The held body (buffer, then the received chunk unless it is the buffer) from this
    /// offset: the last chunk already moved into the buffer, or an earlier filter resumed
    /// with its buffer.
    From(usize),
}

/// The host's body buffers in one body hook, read only when they hold something new.
pub trait HeldBody {
    fn hook(&self) -> BodyHook;
    /// The chunk this hook received.
    fn received(&self) -> Vec<u8>;
    /// The buffer, then the received chunk unless it is the buffer.
    fn whole(&self) -> Vec<u8>;
}

/// How much of the host's current buffer the core has seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodyCursor {
    seen: usize,
}

impl BodyCursor {
    /// Where this hook's new bytes are. `released`: the stream went on since the last body
    /// hook, so the host passed its buffer on and this buffer starts after what the core saw.
    pub fn advance(&mut self, released: bool, hook: BodyHook) -> NewBytes {
        if released {
            self.seen = 0;
        }
        let total = hook.total();
        if total <= self.seen {
            return NewBytes::Nothing;
        }
        let new = if !hook.received_is_buffered && hook.buffered == self.seen {
            NewBytes::Received
        } else {
            NewBytes::From(self.seen)
        };
        self.seen = total;
        new
    }

    /// The bytes for this body hook's [`crate::stream::Event::RequestBody`]: none unless the
    /// stream reads its body (then its held-body reads start again after a release, as the
    /// slot records).
    pub fn bytes_for(&mut self, slot: &mut Slot, body: &dyn HeldBody) -> Vec<u8> {
        if !slot.stream.wants_body_bytes() {
            return Vec::new();
        }
        let released = std::mem::take(&mut slot.body_released);
        match self.advance(released, body.hook()) {
            NewBytes::Nothing => Vec::new(),
            NewBytes::Received => body.received(),
            NewBytes::From(offset) => body
                .whole()
                .get(offset..)
                .map(<[u8]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(buffered: usize, received: usize, received_is_buffered: bool) -> BodyHook {
        BodyHook {
            buffered,
            received,
            received_is_buffered,
        }
    }

    /// Sequences of hooks on one stream, each with what the cursor must answer.
    #[test]
    fn each_hook_yields_only_the_bytes_the_core_has_not_seen() {
        type Step = (bool, BodyHook, NewBytes);
        let cases: &[(&str, &[Step])] = &[
            (
                "chunks buffered while held: each is new",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (false, hook(5, 3, false), NewBytes::Received),
                ],
            ),
            (
                "end of stream with a buffer: the last chunk already in it",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (false, hook(8, 0, false), NewBytes::From(5)),
                ],
            ),
            (
                "an earlier filter resumed with its buffer: the received chunk is the buffer",
                &[(false, hook(9, 9, true), NewBytes::From(0))],
            ),
            (
                "the buffer grows under an earlier filter's buffer",
                &[
                    (false, hook(4, 4, true), NewBytes::From(0)),
                    (false, hook(7, 7, true), NewBytes::From(4)),
                ],
            ),
            (
                "released: the next buffer starts after what was passed on",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (true, hook(0, 2, false), NewBytes::Received),
                    (false, hook(2, 2, false), NewBytes::Received),
                ],
            ),
            (
                "released, then the end of stream with a buffer",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (true, hook(0, 2, false), NewBytes::Received),
                    (false, hook(6, 0, false), NewBytes::From(2)),
                ],
            ),
            (
                "an empty chunk: nothing new",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (false, hook(5, 0, false), NewBytes::Nothing),
                ],
            ),
            (
                "a buffer smaller than what was seen, not released: nothing new",
                &[
                    (false, hook(0, 5, false), NewBytes::Received),
                    (false, hook(3, 0, false), NewBytes::Nothing),
                ],
            ),
            (
                "a first chunk received beside a buffer the core never saw",
                &[(false, hook(4, 3, false), NewBytes::From(0))],
            ),
        ];
        for (name, steps) in cases {
            let mut cursor = BodyCursor::default();
            for (index, (released, hook, expected)) in steps.iter().enumerate() {
                assert_eq!(
                    cursor.advance(*released, *hook),
                    *expected,
                    "{name}: hook {index}"
                );
            }
        }
    }

    #[test]
    fn total_does_not_count_the_buffer_twice() {
        assert_eq!(hook(4, 3, false).total(), 7);
        assert_eq!(hook(4, 4, true).total(), 4);
        assert_eq!(hook(usize::MAX, 1, false).total(), usize::MAX);
    }
}
