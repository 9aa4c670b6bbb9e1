//! The re-index debounce: a block whose content is being edited is re-indexed once it has been
//! quiet for `quiet_ms`, or at the latest `max_wait_ms` after its first unindexed edit
//! (Hocuspocus's rule). State only; the document actor runs the re-index when a block is due.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::DebounceConfig;

/// (room, block) → (first unindexed edit, last edit).
#[derive(Debug)]
pub(super) struct Debounce {
    quiet: Duration,
    max_wait: Duration,
    dirty: HashMap<(String, String), (Instant, Instant)>,
}

impl Debounce {
    pub(super) fn new(cfg: &DebounceConfig) -> Self {
        Self {
            quiet: Duration::from_millis(cfg.quiet_ms),
            max_wait: Duration::from_millis(cfg.max_wait_ms),
            dirty: HashMap::new(),
        }
    }

    /// The block's content was edited at `now`.
    pub(super) fn edited(&mut self, room: &str, block_id: String, now: Instant) {
        self.dirty
            .entry((room.to_owned(), block_id))
            .and_modify(|(_, last)| *last = now)
            .or_insert((now, now));
    }

    /// The block needs a re-index check; an edit already pending keeps its times.
    pub(super) fn mark(&mut self, room: &str, block_id: &str, now: Instant) {
        self.dirty
            .entry((room.to_owned(), block_id.to_owned()))
            .or_insert((now, now));
    }

    /// Forgets the blocks of a deleted room.
    pub(super) fn forget_room(&mut self, room: &str) {
        self.dirty.retain(|(r, _), _| r != room);
    }

    /// Whether a block of `room` is waiting.
    pub(super) fn has_room(&self, room: &str) -> bool {
        self.dirty.keys().any(|(r, _)| r == room)
    }

    /// The rooms with a block waiting.
    pub(super) fn rooms(&self) -> BTreeSet<&str> {
        self.dirty.keys().map(|(r, _)| r.as_str()).collect()
    }

    /// When the next block comes due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.dirty.values().map(|t| self.due_at(t)).min()
    }

    /// The (room, block)s due at `now`.
    pub(super) fn due(&self, now: Instant) -> Vec<(String, String)> {
        self.dirty
            .iter()
            .filter(|(_, t)| self.due_at(t) <= now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Stops waiting for a block (its re-index check runs now).
    pub(super) fn remove(&mut self, room_block: &(String, String)) {
        self.dirty.remove(room_block);
    }

    fn due_at(&self, (first, last): &(Instant, Instant)) -> Instant {
        (*last + self.quiet).min(*first + self.max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debounce() -> Debounce {
        Debounce::new(&DebounceConfig {
            quiet_ms: 100,
            max_wait_ms: 250,
        })
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quiet_period_then_max_wait() {
        let t0 = Instant::now();
        let mut d = debounce();
        assert_eq!(d.next_deadline(), None);
        d.edited("r", "b".into(), t0);
        assert_eq!(d.next_deadline(), Some(t0 + 100 * MS));
        // Typing on pushes the quiet deadline, up to the max wait.
        for (edit_ms, want_ms) in [(50, 150), (120, 220), (200, 250), (240, 250)] {
            d.edited("r", "b".into(), t0 + edit_ms * MS);
            assert_eq!(
                d.next_deadline(),
                Some(t0 + want_ms * MS),
                "edit at {edit_ms}"
            );
        }
        assert!(d.due(t0 + 249 * MS).is_empty());
        let due = d.due(t0 + 250 * MS);
        assert_eq!(due, [("r".to_owned(), "b".to_owned())]);
        d.remove(&due[0]);
        assert_eq!(d.next_deadline(), None);
    }

    #[test]
    fn mark_keeps_pending_times_and_rooms_are_tracked() {
        let t0 = Instant::now();
        let mut d = debounce();
        d.edited("r", "b".into(), t0);
        d.mark("r", "b", t0 + 90 * MS);
        assert_eq!(d.next_deadline(), Some(t0 + 100 * MS));
        d.mark("s", "c", t0 + 10 * MS);
        assert!(d.has_room("r") && d.has_room("s") && !d.has_room("t"));
        assert_eq!(d.rooms().into_iter().collect::<Vec<_>>(), ["r", "s"]);
        d.forget_room("r");
        assert!(!d.has_room("r"));
        assert_eq!(d.due(t0 + 110 * MS), [("s".to_owned(), "c".to_owned())]);
    }
}
