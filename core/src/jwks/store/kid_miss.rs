//! A token named a `kid` the key set lacks: adopt newer keys, wait for a fetch, or ask for one
//! within the refetch rate limit.

use super::record::Stored;
use super::{JwksStore, KidMiss, UnixMillis};
use crate::shared_data::SharedData;

impl JwksStore {
    /// Keys another VM already fetched are adopted at once; otherwise a refetch is requested
    /// (started by the next tick, under the lease), unless one happened less than
    /// `refetch_min_interval_s` ago (a flood of random `kid`s must not hammer the IdP). A fetch
    /// in flight anywhere in this Envoy is worth waiting for.
    pub fn on_unknown_kid(
        &mut self,
        shared: &dyn SharedData,
        provider: usize,
        now_ms: UnixMillis,
    ) -> KidMiss {
        let Some(state) = self.remote(provider) else {
            return KidMiss::RateLimited;
        };
        let stored = Stored::load(shared, &state.record_key);
        let before = state.generation;
        state.adopt(&stored.record, provider);
        if state.generation != before {
            return KidMiss::Adopted;
        }
        if stored.record.live_lease(now_ms).is_some() {
            return KidMiss::Wait;
        }
        if state.keys.is_some() && state.refetch_rate_limited(&stored.record, now_ms) {
            return KidMiss::RateLimited;
        }
        state.refetch_wanted = true;
        KidMiss::Wait
    }
}
