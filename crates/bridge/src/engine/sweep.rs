//! The sweep of stored rooms (start-up, lag) without loading them: each queued room is first
//! asked of the host's store (`DocumentHost::stored_state_contains` with the `blocks` marker),
//! and only a room whose stored bytes may hold blocks is loaded and swept. The queue is worked
//! `SWEEP_BATCH` rooms per turn of the document actor's loop, after the live events of that
//! turn, so a store of many rooms neither delays serving nor fills memory with mirrors.

use std::collections::{HashSet, VecDeque};

use super::doc_actor::DocActor;

/// Rooms checked per turn of the document actor's loop.
pub(super) const SWEEP_BATCH: usize = 64;

/// Stored rooms not yet checked, in the order they were queued.
#[derive(Default)]
pub(super) struct SweepQueue {
    order: VecDeque<Box<str>>,
    pending: HashSet<Box<str>>,
}

impl SweepQueue {
    /// Queues rooms; one already queued keeps its place.
    pub(super) fn extend(&mut self, rooms: impl IntoIterator<Item = String>) {
        for room in rooms {
            let room: Box<str> = room.into();
            if self.pending.insert(room.clone()) {
                self.order.push_back(room);
            }
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes `room` out of the queue; whether it was queued.
    pub(super) fn take(&mut self, room: &str) -> bool {
        self.pending.remove(room)
    }

    /// Takes up to `n` queued rooms, oldest first (rooms taken out of turn are skipped).
    fn next_batch(&mut self, n: usize) -> Vec<Box<str>> {
        let mut out = Vec::with_capacity(n.min(self.pending.len()));
        while out.len() < n {
            let Some(room) = self.order.pop_front() else {
                break;
            };
            if self.pending.remove(&room) {
                out.push(room);
            }
        }
        if self.pending.is_empty() {
            // Give back the memory of a large start-up queue.
            self.order = VecDeque::new();
            self.pending = HashSet::new();
        }
        out
    }
}

impl DocActor {
    /// Checks the next `SWEEP_BATCH` queued rooms, loading and sweeping those that may hold
    /// bridge work.
    pub(super) async fn sweep_batch(&mut self) {
        let batch = self.sweep.next_batch(SWEEP_BATCH);
        for room in batch {
            self.sweep_if_marked(&room, "sweep of stored room failed")
                .await;
        }
        if self.sweep.is_empty() {
            tracing::info!("bridge sweep of stored rooms done");
        }
    }

    /// Loads and sweeps `room` if its stored state may contain the `blocks` marker. A room
    /// without it has nothing under `blocks` (see `mirror::may_touch_blocks`) and stays
    /// without a mirror; a failed check counts as "may": the load decides.
    pub(super) async fn sweep_if_marked(&mut self, room: &str, what: &str) {
        let marker = weaver_doc::BLOCKS_ROOT.as_bytes();
        let marked = match self.inner.host.stored_state_contains(room, marker).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(room, error = %e, "stored-state check failed; loading the room");
                true
            }
        };
        if marked {
            self.sweep_stored_room(room, what).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_skips_taken_rooms_and_dedupes() {
        let mut q = SweepQueue::default();
        q.extend(["a", "b", "c", "a"].map(String::from));
        assert!(q.take("b"));
        assert!(!q.take("b"));
        assert_eq!(q.next_batch(1), vec![Box::from("a")]);
        q.extend(["d".to_owned()]);
        assert_eq!(q.next_batch(5), vec![Box::from("c"), Box::from("d")]);
        assert!(q.is_empty());
        assert!(q.next_batch(5).is_empty());
    }
}
