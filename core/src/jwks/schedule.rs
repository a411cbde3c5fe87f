//! When to refresh keys and when to retry: the configured interval bounded by the server's
//! `Cache-Control: max-age`, refreshed early with jitter, and exponential backoff on failure.

/// A refresh is never scheduled closer than this, whatever `max-age` says.
const MIN_TTL_MS: u64 = 5_000;
const MAX_BACKOFF_MS: u64 = 60_000;

/// `max-age` from a `Cache-Control` header value, in seconds.
pub fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value.trim().trim_matches('"').parse().ok()
        } else {
            None
        }
    })
}

/// How long a fetched key set is fresh.
pub fn ttl_ms(refresh_interval_s: u64, max_age_s: Option<u64>) -> u64 {
    let interval = refresh_interval_s.saturating_mul(1000);
    match max_age_s {
        Some(max_age) => interval
            .min(max_age.saturating_mul(1000))
            .max(MIN_TTL_MS.min(interval)),
        None => interval,
    }
}

/// A number in [0, 1) derived from `seed` and `salt`: jitter without a random source in the core.
pub fn unit_jitter(seed: u64, salt: u64) -> f64 {
    let mut x = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Refresh at 75–90 % of the TTL, so keys are replaced before they expire.
pub fn refresh_at_ms(fetched_at_ms: u64, ttl_ms: u64, jitter: f64) -> u64 {
    fetched_at_ms + (ttl_ms as f64 * (0.75 + 0.15 * jitter)) as u64
}

/// Delay before retry number `failures` (1, 2, 4 … s, capped), ±20 % jitter.
pub fn backoff_ms(failures: u32, ttl_ms: u64, jitter: f64) -> u64 {
    let base = 1000u64.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let capped = base.min(MAX_BACKOFF_MS).min(ttl_ms.max(1000));
    (capped as f64 * (0.8 + 0.4 * jitter)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_parsing() {
        assert_eq!(max_age("public, max-age=300"), Some(300));
        assert_eq!(max_age("Max-Age = 60 , must-revalidate"), Some(60));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn ttl_is_bounded_by_max_age_with_a_floor() {
        assert_eq!(ttl_ms(600, None), 600_000);
        assert_eq!(ttl_ms(600, Some(120)), 120_000);
        assert_eq!(ttl_ms(600, Some(7200)), 600_000);
        assert_eq!(ttl_ms(600, Some(0)), 5_000);
        assert_eq!(ttl_ms(2, Some(0)), 2_000);
    }

    #[test]
    fn refresh_happens_before_expiry() {
        for salt in 0..100 {
            let jitter = unit_jitter(42, salt);
            assert!((0.0..1.0).contains(&jitter));
            let at = refresh_at_ms(1_000, 100_000, jitter);
            assert!((76_000..=91_000).contains(&at), "{at}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let exact = |failures| backoff_ms(failures, 600_000, 0.5);
        assert_eq!(
            [exact(1), exact(2), exact(3), exact(10)],
            [1000, 2000, 4000, 60_000]
        );
        assert_eq!(backoff_ms(10, 5_000, 0.5), 5_000);
    }
}
