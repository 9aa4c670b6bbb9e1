//! The delivery retry policy (`[retry]`) applied to a failed try: the outbox asks here how
//! long a call waits before its next try. The arithmetic is `weaver_retry`'s.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryPolicy;

/// Delay before the next try, in ms: full jitter within the policy's backoff window (AWS
/// "full jitter" spreads retry storms best), unless the server asked for a specific delay
/// with `Retry-After`, which is honoured but capped at `max_interval_ms`.
pub fn next_delay_ms(
    policy: &RetryPolicy,
    tries: u32,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> u64 {
    let d = policy
        .backoff()
        .delay_or_retry_after(tries, retry_after, rng);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
    fn retry_after_honoured_and_capped() {
        let p = policy();
        let mut rng = rand::rng();
        for (ra_s, want_ms) in [(0, 0), (2, 2_000), (60, 5_000)] {
            assert_eq!(
                next_delay_ms(&p, 1, Some(Duration::from_secs(ra_s)), &mut rng),
                want_ms,
                "Retry-After {ra_s} s"
            );
        }
    }

    proptest! {
        #[test]
        fn jitter_within_bounds(tries in 1u32..50, seed in any::<u64>()) {
            use rand::SeedableRng;
            let p = policy();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let d = next_delay_ms(&p, tries, None, &mut rng);
            let cap = (p.initial_interval_ms << (tries - 1).min(40)).min(p.max_interval_ms);
            prop_assert!(d <= cap);
            prop_assert!(d <= p.max_interval_ms);
        }
    }
}
