//! `TermClock`, the seam to the notifier's right to act in cluster mode: the lease of the
//! cluster's `notifier` role, read by its own clock (weaver-cluster's `LeaseClock`). Another
//! node may take the role over once the lease could have expired, whether or not this one was
//! told (a paused process, a stop signal not seen yet), so the notifier asks the clock itself
//! right before every HTTP send and every ledger write, and never acts past what it says.

use std::time::Duration;

/// How long the current term may still act.
pub trait TermClock: Send + Sync + 'static {
    /// The time left before the term must stop acting (its lease's deadline, with the margin
    /// that keeps it strictly before another node may take over); `None` once it passed.
    fn remaining(&self) -> Option<Duration>;

    /// Whether the term may still act now.
    fn valid(&self) -> bool {
        self.remaining().is_some_and(|left| !left.is_zero())
    }
}

/// Single-node mode: one notifier for the node's own file, no one to take over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unbounded;

impl TermClock for Unbounded {
    fn remaining(&self) -> Option<Duration> {
        Some(Duration::MAX)
    }
}
