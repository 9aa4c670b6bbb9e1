//! The storm detector and the hold window: a room receiving updates faster than
//! `--hold-above-rate` holds each batch up to `--hold-window-ms` to gather more, so a write storm
//! costs one commit and one merged broadcast per window instead of one per update. Holding only
//! delays the commit; nothing of a held batch is visible before it.

use std::time::Instant;

use super::actor::Room;
use super::cmd::RoomMsg;
use super::inbox::InboxReceiver;
use crate::metrics as m;

/// A held batch is committed early once it is this large: the merged frame stays well under
/// `MERGE_MAX_BYTES` and one commit stays short.
const HOLD_MAX_UPDATES: usize = 512;
const HOLD_MAX_BYTES: usize = 64 * 1024;

/// Exponentially smoothed count of updates: `level` decays with time constant `TAU`, so
/// `level / TAU` is the recent rate per second. One multiplication and one `exp` per update.
#[derive(Debug)]
pub(super) struct UpdateRate {
    level: f64,
    at: Instant,
}

impl UpdateRate {
    const TAU_SECS: f64 = 0.020;

    pub(super) fn new() -> Self {
        Self {
            level: 0.0,
            at: Instant::now(),
        }
    }

    fn decayed(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level * (-dt / Self::TAU_SECS).exp()
    }

    pub(super) fn add(&mut self, now: Instant) {
        self.level = self.decayed(now) + 1.0;
        self.at = now;
    }

    pub(super) fn per_second(&self, now: Instant) -> f64 {
        self.decayed(now) / Self::TAU_SECS
    }
}

/// Whether a room is in a write storm: it enters one above `threshold` updates/s and leaves it
/// below half of that.
pub(super) fn storm(holding: bool, rate: f64, threshold: u32) -> bool {
    let threshold = f64::from(threshold);
    if holding {
        rate >= threshold / 2.0
    } else {
        rate >= threshold
    }
}

impl Room {
    /// Whether the batch about to be committed should wait for more updates first: only when
    /// it holds something to store and the room receives updates faster than the configured
    /// rate (a write storm), never for ordinary editing.
    pub(super) fn should_hold(&mut self) -> bool {
        let cfg = &self.deps.config;
        if cfg.hold_window.is_zero() || self.dead || !self.batch.iter().any(|p| p.persist) {
            return false;
        }
        self.holding = storm(
            self.holding,
            self.rate.per_second(Instant::now()),
            cfg.hold_above_rate,
        );
        self.holding
    }

    /// Keeps applying commands into the batch until the hold window ends, the batch is large
    /// enough, or something needs the state (which flushes, as always). The caller commits
    /// what was gathered as one group: one fsync and one merged broadcast frame. Returns true
    /// when the room was deleted meanwhile. Shutdown and a closed inbox end the hold at once;
    /// the room loop handles them next, after committing the batch.
    pub(super) async fn hold(
        &mut self,
        rx: &mut InboxReceiver<RoomMsg>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let window = tokio::time::sleep(self.deps.config.hold_window);
        tokio::pin!(window);
        metrics::counter!(m::HELD_BATCHES_TOTAL).increment(1);
        loop {
            let bytes: usize = self.batch.iter().map(|p| p.update.len()).sum();
            if self.dead
                || self.batch.is_empty()
                || self.batch.len() >= HOLD_MAX_UPDATES
                || bytes >= HOLD_MAX_BYTES
            {
                break;
            }
            let cmd = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = &mut window => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            if cmd.needs_flush() {
                self.flush().await;
            }
            if self.handle(*cmd).await {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::UpdateRate;

    fn rate_after(n: u32, gap: Duration) -> f64 {
        let mut r = UpdateRate::new();
        let mut t = Instant::now();
        for _ in 0..n {
            t += gap;
            r.add(t);
        }
        r.per_second(t)
    }

    #[test]
    fn a_steady_stream_measures_its_rate() {
        // Typing (20/s), a 500/s stream and a storm (10,000/s) against the 2,000/s default.
        assert!(rate_after(100, Duration::from_millis(50)) < 100.0);
        let steady = rate_after(200, Duration::from_millis(2));
        assert!((400.0..600.0).contains(&steady), "{steady}");
        assert!(steady < f64::from(crate::DEFAULT_HOLD_ABOVE_RATE));
        let storm = rate_after(1000, Duration::from_micros(100));
        assert!(storm > 8_000.0, "{storm}");
    }

    #[test]
    fn a_storm_starts_above_the_threshold_and_ends_below_half_of_it() {
        use super::storm;
        // (holding already, rate, is a storm) against a 2,000/s threshold.
        let cases = [
            (false, 1_999.0, false),
            (false, 2_000.0, true),
            (true, 1_200.0, true),
            (true, 999.0, false),
            // A steady 500/s stream is never a storm, even right after one.
            (true, 500.0, false),
        ];
        for (holding, rate, want) in cases {
            assert_eq!(
                storm(holding, rate, 2_000),
                want,
                "holding {holding}, {rate}/s"
            );
        }
    }

    #[test]
    fn the_rate_decays_when_updates_stop() {
        let mut r = UpdateRate::new();
        let mut t = Instant::now();
        for _ in 0..1000 {
            t += Duration::from_micros(100);
            r.add(t);
        }
        assert!(r.per_second(t) > 8_000.0);
        // 100 ms of silence is five time constants: the storm is over.
        assert!(r.per_second(t + Duration::from_millis(100)) < 100.0);
    }
}
