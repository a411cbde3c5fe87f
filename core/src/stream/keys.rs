//! Whether a refusal about keys should wait for keys on their way (cold start, a `kid` the key
//! set lacks after a rotation), and what a stream waiting for them remembers.

use super::Env;
use super::body::Held;
use crate::engine::Decision;
use crate::error::Reason;
use crate::jwks::{Availability, JwksStore, KidMiss, UnixMillis};

/// How long a request may still wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A new request: it may wait its provider's `wait_for_keys_ms`.
    Fresh,
    /// A request decided again after waiting: only until its original deadline.
    Until(UnixMillis),
}

pub enum KeyWait {
    Park {
        provider: usize,
        deadline_ms: UnixMillis,
    },
    /// Newer keys were adopted: the decision may change.
    DecideAgain,
    Answer,
}

/// A request held whole until its provider's key set changes, a fetch attempt ends, or its
/// deadline passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub held: Held,
    provider: usize,
    pub deadline_ms: UnixMillis,
    generation: Option<u64>,
    attempts: u64,
}

impl Parked {
    pub fn new(held: Held, provider: usize, deadline_ms: UnixMillis, store: &JwksStore) -> Self {
        Parked {
            held,
            provider,
            deadline_ms,
            generation: store.generation(provider),
            attempts: store.attempts_seen(provider),
        }
    }

    /// Something it waits for happened: decide again.
    pub fn ready(&self, store: &JwksStore, now_ms: UnixMillis) -> bool {
        now_ms >= self.deadline_ms
            || store.generation(self.provider) != self.generation
            || store.attempts_seen(self.provider) != self.attempts
    }
}

pub fn should_wait(env: &mut Env<'_>, decision: &Decision, wait: Wait) -> KeyWait {
    let audit = decision.audit();
    let Some(reason) = audit.reason else {
        return KeyWait::Answer;
    };
    let Some(provider) = env
        .engine
        .config
        .providers
        .iter()
        .position(|p| Some(&p.name) == audit.provider.as_ref())
    else {
        return KeyWait::Answer;
    };
    let now = env.now_ms;
    let deadline_ms = match wait {
        Wait::Fresh => now.saturating_add(env.store.wait_budget_ms(provider)),
        Wait::Until(deadline) => deadline,
    };
    let park = KeyWait::Park {
        provider,
        deadline_ms,
    };
    if reason == Reason::UnknownKid.as_str() {
        match env.store.on_unknown_kid(env.shared, provider, now) {
            KidMiss::Adopted => KeyWait::DecideAgain,
            KidMiss::Wait if now < deadline_ms => park,
            KidMiss::Wait | KidMiss::RateLimited => KeyWait::Answer,
        }
    } else if reason == Reason::KeysUnavailable.as_str()
        && now < deadline_ms
        && matches!(env.store.availability(provider, now), Availability::Cold)
    {
        park
    } else {
        KeyWait::Answer
    }
}
