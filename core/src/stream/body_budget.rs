//! The request-body bytes one VM holds across all its streams, bounded.
//!
//! A stream whose rule depends on its body holds that body inside the VM until it is decided
//! (up to `databricks.max_body_bytes` each). Many such streams at once, from clients that send
//! a large body and then stall, would grow the VM's memory until an allocation fails, which
//! traps the VM and with it every stream of the worker. The budget refuses the stream that would
//! go over instead (503 `overloaded`), and every held body gives its bytes back when it is
//! dropped, however the stream ends.
//!
//! What is counted is the memory a body takes (its buffer's capacity), not only its length, and
//! the count is the VM's: every plugin configuration (root context) in one VM, and a new
//! configuration while streams of the old one still hold bodies, share one counter
//! ([`BodyBudget::sharing`]); each checks it against its own limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A limit, and the counter of the bytes held by every stream of the VM (or, in the native
/// form, of every worker of the process).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    limit: usize,
    held: Arc<AtomicUsize>,
}

impl BodyBudget {
    /// The limit a configuration sets (`databricks.max_held_body_bytes`, or its default).
    pub fn limit_of(config: &crate::config::Config) -> usize {
        config
            .databricks
            .as_ref()
            .map_or(crate::config::held_bodies::MAX_HELD_BODY_BYTES, |d| {
                d.max_held_body_bytes
            })
    }

    /// A budget with a counter of its own (one VM, one configuration: tests and fakes).
    pub fn new(limit: usize) -> Self {
        BodyBudget::sharing(limit, Arc::new(AtomicUsize::new(0)))
    }

    /// A budget counting on `held`, the VM's counter, which other budgets may share.
    pub fn sharing(limit: usize, held: Arc<AtomicUsize>) -> Self {
        BodyBudget { limit, held }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, by all streams.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn reserve(&self, bytes: usize) -> bool {
        // A compare-and-swap loop: two workers never both take the last bytes.
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Counts bytes already allocated, beyond the limit if need be.
    fn force(&self, bytes: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_add(bytes))
            });
    }

    fn release(&self, bytes: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(bytes))
            });
    }
}

/// A body held by one stream, its buffer's capacity counted against its VM's budget until
/// dropped.
#[derive(Debug)]
pub struct HeldBody {
    bytes: Vec<u8>,
    /// What is counted for it: always its buffer's capacity.
    counted: usize,
    budget: BodyBudget,
}

impl HeldBody {
    pub fn new(budget: &BodyBudget) -> Self {
        HeldBody {
            bytes: Vec::new(),
            counted: 0,
            budget: budget.clone(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends `more`, or leaves the body as it was when the budget cannot hold it. The buffer
    /// grows the way `Vec` does (doubling, so a body arriving in many chunks is not copied over
    /// and over), and exactly when a doubling would not fit but the bytes themselves do.
    pub fn extend(&mut self, more: &[u8]) -> bool {
        let Some(needed) = self.bytes.len().checked_add(more.len()) else {
            return false;
        };
        let capacity = self.bytes.capacity();
        if needed > capacity {
            let doubled = needed.max(capacity.saturating_mul(2));
            let grown = [doubled, needed]
                .into_iter()
                .find(|&target| self.budget.reserve(target - capacity));
            let Some(target) = grown else {
                return false;
            };
            // Exactly `target`: what is counted is what is allocated.
            self.bytes.reserve_exact(target - self.bytes.len());
            let actual = self.bytes.capacity();
            if actual > target {
                // The allocator may round up: count that too (it can only go over by a little).
                self.budget.force(actual - target);
            }
            self.counted += actual - capacity;
        }
        self.bytes.extend_from_slice(more);
        true
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.budget.release(self.counted);
    }
}

impl Clone for HeldBody {
    /// A copy holds memory too: it is counted even beyond the limit (copies are made by
    /// tests, never on a request's path).
    fn clone(&self) -> Self {
        let bytes = self.bytes.clone();
        self.budget.force(bytes.capacity());
        HeldBody {
            counted: bytes.capacity(),
            bytes,
            budget: self.budget.clone(),
        }
    }
}

impl PartialEq for HeldBody {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for HeldBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_count_against_the_budget_until_dropped() {
        let budget = BodyBudget::new(16);
        let mut first = HeldBody::new(&budget);
        assert!(first.extend(b"123456"));
        assert_eq!(budget.held(), first.bytes.capacity());
        let mut second = HeldBody::new(&budget);
        assert!(second.extend(b"1234"));
        assert_eq!(
            budget.held(),
            first.bytes.capacity() + second.bytes.capacity()
        );
        assert!(budget.held() <= 16);
        // A doubling that does not fit, while the bytes do: grown exactly.
        assert!(second.extend(b"56"));
        assert!(!second.extend(&[0; 16]), "over the limit");
        assert_eq!(second.bytes(), b"123456");
        drop(first);
        assert_eq!(budget.held(), second.bytes.capacity());
        let copy = second.clone();
        assert_eq!(
            budget.held(),
            second.bytes.capacity() + copy.bytes.capacity()
        );
        drop((second, copy));
        assert_eq!(budget.held(), 0);
        assert!(!HeldBody::new(&budget).extend(&[0; 17]));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn many_chunks_are_not_copied_over_and_over_and_are_counted_as_allocated() {
        let budget = BodyBudget::new(1 << 20);
        let mut body = HeldBody::new(&budget);
        let mut growths = 0;
        for _ in 0..1000 {
            let before = body.bytes.capacity();
            assert!(body.extend(&[7; 100]));
            growths += usize::from(body.bytes.capacity() != before);
            assert_eq!(budget.held(), body.bytes.capacity());
        }
        assert_eq!(body.len(), 100_000);
        assert!(growths <= 12, "{growths} reallocations for 1000 chunks");
    }

    #[test]
    fn budgets_sharing_a_counter_see_each_other_s_bodies() {
        let vm = Arc::new(AtomicUsize::new(0));
        let old = BodyBudget::sharing(64, Arc::clone(&vm));
        let new = BodyBudget::sharing(64, Arc::clone(&vm));
        let mut held_by_old = HeldBody::new(&old);
        assert!(held_by_old.extend(&[0; 40]));
        assert!(
            !HeldBody::new(&new).extend(&[0; 40]),
            "the VM holds 40 already"
        );
        drop(held_by_old);
        assert_eq!(vm.load(Ordering::Relaxed), 0);
        assert!(HeldBody::new(&new).extend(&[0; 40]));
    }
}
