//! Retry arithmetic: exponential backoff with full jitter, `Retry-After`, and HTTP status
//! classification. Pure functions; the outbox decides *when* to call them.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryPolicy;

/// Upper bound of the backoff window before try `tries + 1` (`tries` ≥ 1 tries already made):
/// `min(max, initial · 2^(tries-1))`.
pub fn backoff_cap(policy: &RetryPolicy, tries: u32) -> u64 {
    let exp = tries.saturating_sub(1).min(32);
    policy
        .initial_interval_ms
        .saturating_mul(1u64 << exp)
        .min(policy.max_interval_ms)
}

/// Delay before the next try: full jitter in `[0, cap]` (AWS "full jitter" spreads retry
/// storms best), unless the server asked for a specific delay with `Retry-After`, which is
/// honoured but capped at `max_interval_ms`.
pub fn next_delay_ms(
    policy: &RetryPolicy,
    tries: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> u64 {
    if let Some(ra) = retry_after {
        let ms = u64::try_from(ra.as_millis()).unwrap_or(u64::MAX);
        return ms.min(policy.max_interval_ms);
    }
    let cap = backoff_cap(policy, tries);
    rng.random_range(0..=cap)
}

/// How an HTTP status is treated by the integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 200/201/204: completed synchronously.
    Success,
    /// 202: accepted, finishes asynchronously.
    Accepted,
    /// 408, 425, 429, 5xx: try again later.
    Retryable,
    /// Everything else (other 4xx, 3xx since redirects are not followed, odd 2xx/1xx).
    Final,
}

/// Classifies a response status code.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200 | 201 | 204 => StatusClass::Success,
        202 => StatusClass::Accepted,
        408 | 425 | 429 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Final,
    }
}

/// Parses a `Retry-After` value given in seconds (the HTTP-date form is not supported and
/// falls back to the backoff policy).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            initial_interval_ms: 100,
            max_interval_ms: 5_000,
            lease_ms: 30_000,
        }
    }

    #[test]
    fn cap_doubles_then_saturates() {
        let p = policy();
        assert_eq!(backoff_cap(&p, 1), 100);
        assert_eq!(backoff_cap(&p, 2), 200);
        assert_eq!(backoff_cap(&p, 3), 400);
        assert_eq!(backoff_cap(&p, 7), 5_000);
        assert_eq!(backoff_cap(&p, 1000), 5_000);
    }

    #[test]
    fn retry_after_honoured_and_capped() {
        let p = policy();
        let mut rng = rand::rng();
        assert_eq!(
            next_delay_ms(&p, 1, Some(Duration::from_secs(2)), &mut rng),
            2_000
        );
        assert_eq!(
            next_delay_ms(&p, 1, Some(Duration::from_secs(60)), &mut rng),
            5_000
        );
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn classification() {
        assert_eq!(classify(200), StatusClass::Success);
        assert_eq!(classify(202), StatusClass::Accepted);
        for s in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(classify(s), StatusClass::Retryable, "{s}");
        }
        for s in [301, 302, 400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(classify(s), StatusClass::Final, "{s}");
        }
    }

    proptest! {
        #[test]
        fn jitter_within_bounds(tries in 1u32..50, seed in any::<u64>()) {
            use rand::SeedableRng;
            let p = policy();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = next_delay_ms(&p, tries, None, &mut rng);
            prop_assert!(d <= backoff_cap(&p, tries));
            prop_assert!(d <= p.max_interval_ms);
        }
    }
}
