//! Exponential backoff: the window doubles per failed try up to a cap, and a jitter spreads
//! the retries of many callers that failed together.

use std::time::Duration;

use rand::{Rng, RngExt};

/// How the delay is drawn from the window `[0, cap]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the cap: for a single retrier, where there is no herd to spread.
    None,
    /// Uniform in `[0, cap]` (AWS "full jitter"): spreads a retry storm best.
    Full,
    /// Uniform in `[cap/2, cap]` ("equal jitter"): spread, but never an immediate retry.
    Equal,
}

/// An exponential backoff policy: `min(max, initial · 2^(tries-1))`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Window after the first failed try.
    pub initial: Duration,
    /// Largest window, and largest honoured `Retry-After`.
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// A policy with full jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: Jitter::Full,
        }
    }

    /// The same policy with another jitter.
    #[must_use]
    pub const fn with_jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    /// Upper bound of the delay before try `tries + 1`, `tries` ≥ 1 tries having failed
    /// (0 counts as 1): `min(max, initial · 2^(tries-1))`, saturating instead of overflowing.
    pub fn cap(&self, tries: u32) -> Duration {
        let factor = 2u32
            .checked_pow(tries.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before try `tries + 1`, jittered within the cap.
    pub fn delay(&self, tries: u32, rng: &mut impl Rng) -> Duration {
        let cap = self.cap(tries);
        // Nanoseconds fit a u64 for 584 years; a longer cap is clamped to that.
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        match self.jitter {
            Jitter::None => cap,
            Jitter::Full => Duration::from_nanos(rng.random_range(0..=nanos)),
            Jitter::Equal => Duration::from_nanos(rng.random_range(nanos / 2..=nanos)),
        }
    }

    /// Like [`Backoff::delay`], unless the server named a delay with `Retry-After`: that one
    /// is honoured, capped at `max` so a hostile or broken server cannot park a caller forever.
    pub fn delay_or_retry_after(
        &self,
        tries: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        match retry_after {
            Some(ra) => ra.min(self.max),
            None => self.delay(tries, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MS: Duration = Duration::from_millis(1);

    fn policy(jitter: Jitter) -> Backoff {
        Backoff::new(100 * MS, 5_000 * MS).with_jitter(jitter)
    }

    #[test]
    fn cap_doubles_then_saturates() {
        let p = policy(Jitter::Full);
        for (tries, cap_ms) in [
            (0, 100),
            (1, 100),
            (2, 200),
            (3, 400),
            (6, 3_200),
            (7, 5_000),
            (1000, 5_000),
            (u32::MAX, 5_000),
        ] {
            assert_eq!(p.cap(tries), cap_ms * MS, "tries {tries}");
        }
    }

    #[test]
    fn huge_policies_saturate() {
        let p = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(p.cap(40), Duration::MAX);
        let d = p.delay(40, &mut StdRng::seed_from_u64(1));
        assert!(d <= Duration::MAX);
    }

    #[test]
    fn no_jitter_is_the_cap() {
        let p = policy(Jitter::None);
        let mut rng = StdRng::seed_from_u64(7);
        for tries in 1..20 {
            assert_eq!(p.delay(tries, &mut rng), p.cap(tries));
        }
    }

    #[test]
    fn retry_after_honoured_and_capped() {
        let p = policy(Jitter::Full);
        let mut rng = StdRng::seed_from_u64(7);
        for (ra_ms, want_ms) in [(0, 0), (2_000, 2_000), (60_000, 5_000)] {
            assert_eq!(
                p.delay_or_retry_after(1, Some(ra_ms * MS), &mut rng),
                want_ms * MS,
                "Retry-After {ra_ms} ms"
            );
        }
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
    }

    proptest! {
        #[test]
        fn delay_bounded_by_cap_and_max(
            initial_ms in 0u32..100_000,
            max_ms in 0u32..10_000_000,
            tries in 0u32..200,
            jitter in jitter(),
            seed in any::<u64>(),
        ) {
            let p = Backoff::new(initial_ms * MS, max_ms * MS).with_jitter(jitter);
            let d = p.delay(tries, &mut StdRng::seed_from_u64(seed));
            prop_assert!(d <= p.cap(tries));
            prop_assert!(d <= p.max);
            if jitter == Jitter::Equal {
                prop_assert!(d >= p.cap(tries) / 2);
            }
        }

        #[test]
        fn cap_is_monotone_in_tries(
            initial_ms in 0u32..100_000,
            max_ms in 0u32..10_000_000,
            tries in 0u32..200,
        ) {
            let p = Backoff::new(initial_ms * MS, max_ms * MS);
            prop_assert!(p.cap(tries) <= p.cap(tries + 1));
        }

        #[test]
        fn retry_after_never_exceeds_max(ra_s in any::<u64>(), max_ms in 0u32..10_000_000) {
            let p = Backoff::new(MS, max_ms * MS);
            let d = p.delay_or_retry_after(3, Some(Duration::from_secs(ra_s)), &mut StdRng::seed_from_u64(0));
            prop_assert!(d <= p.max);
        }
    }
}
