//! The request-body bytes one VM holds across all its streams, bounded.
//!
//! A stream whose rule depends on its body holds that body inside the VM until it is decided
//! (up to `databricks.max_body_bytes` each). Many such streams at once, from clients that send
//! a large body and then stall, would grow the VM's memory until an allocation fails, which
//! traps the VM and with it every stream of the worker. The budget refuses the stream that would
//! go over instead (503 `overloaded`), and every held body gives its bytes back when it is
//! dropped, however the stream ends.

use std::cell::Cell;
use std::rc::Rc;

/// Shared by every stream of one VM (single-threaded: `Rc<Cell>`).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    limit: usize,
    held: Rc<Cell<usize>>,
}

impl BodyBudget {
    /// The budget a configuration sets (`databricks.max_held_body_bytes`, or its default).
    pub fn for_config(config: &crate::config::Config) -> Self {
        BodyBudget::new(
            config
                .databricks
                .as_ref()
                .map_or(super::MAX_HELD_BODY_BYTES, |d| d.max_held_body_bytes),
        )
    }

    pub fn new(limit: usize) -> Self {
        BodyBudget {
            limit,
            held: Rc::new(Cell::new(0)),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held now, by all streams.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    fn reserve(&self, bytes: usize) -> bool {
        match self.held.get().checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.held.set(total);
                true
            }
            _ => false,
        }
    }

    fn release(&self, bytes: usize) {
        self.held.set(self.held.get().saturating_sub(bytes));
    }
}

/// A body held by one stream, counted against its VM's budget until dropped.
#[derive(Debug)]
pub struct HeldBody {
    bytes: Vec<u8>,
    budget: BodyBudget,
}

impl HeldBody {
    pub fn new(budget: &BodyBudget) -> Self {
        HeldBody {
            bytes: Vec::new(),
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

    /// Appends `more`, or leaves the body as it was when the budget cannot hold it.
    pub fn extend(&mut self, more: &[u8]) -> bool {
        if !self.budget.reserve(more.len()) {
            return false;
        }
        self.bytes.extend_from_slice(more);
        true
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.budget.release(self.bytes.len());
    }
}

impl Clone for HeldBody {
    /// A copy holds memory too: it is counted even beyond the limit (copies are made by
    /// tests, never on a request's path).
    fn clone(&self) -> Self {
        self.budget
            .held
            .set(self.budget.held().saturating_add(self.bytes.len()));
        HeldBody {
            bytes: self.bytes.clone(),
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
    fn bodies_count_against_the_budget_until_dropped() {
        let budget = BodyBudget::new(10);
        let mut first = HeldBody::new(&budget);
        assert!(first.extend(b"123456"));
        let mut second = HeldBody::new(&budget);
        assert!(second.extend(b"1234"));
        assert_eq!(budget.held(), 10);
        assert!(!second.extend(b"5"), "over the limit");
        assert_eq!((second.bytes(), budget.held()), (&b"1234"[..], 10));
        drop(first);
        assert_eq!(budget.held(), 4);
        assert!(second.extend(b"56789"));
        let copy = second.clone();
        assert_eq!(budget.held(), 18);
        drop((second, copy));
        assert_eq!(budget.held(), 0);
        assert!(!HeldBody::new(&budget).extend(&[0; 11]));
        assert_eq!(budget.held(), 0);
    }
}
