//! The relay event stream: one ordered stream of [`RelayEvent`]s (an update committed, a room
//! deleted, a room unloaded) handed to in-process subscribers (the bridge, the notifier, one per
//! change feed), each through its own queue bounded in events *and bytes*.
//!
//! Order: a room's events are published by its actor (the only writer of the room), so per
//! room they reach every subscriber in the order they happened: every `Committed` of a room
//! before the `Deleted` that follows it, and before the `Unloaded` that ends that actor's life
//! (published under the registry lock, so the room's next actor cannot commit before it).
//! Consumers need no reasoning about several channels.
//!
//! A `tokio::sync::broadcast` ring was used before: it allocates every slot up front (16,384
//! slots, 1.5 MB at rest) and keeps each slot's value until it is overwritten, so after a burst of
//! large updates the ring pinned up to 16,384 of them in memory for good, read or not. Here an
//! event leaves memory once every subscriber took it; a subscriber that falls behind by more
//! than its bounds loses what was queued and is told so (`Lagged`), as with broadcast, and must
//! resync (e.g. with `RelayHandle::room_state`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::Notify;
pub use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Who produced a committed update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOrigin {
    /// A WebSocket connection (its relay-local id, as in the logs' `conn` field).
    Client { conn_id: u64 },
    /// `POST /api/rooms/{room}/update`.
    Http,
    /// `RelayHandle::apply_update`; the string is the caller's origin tag (e.g. `"bridge"`).
    Internal(Arc<str>),
}

/// An update that is durably committed (redb `Immediate` commit returned) and is being sent to
/// the room's connections. Published once per update, after the commit, in commit order per room.
#[derive(Debug, Clone)]
pub struct CommittedUpdate {
    pub room: Arc<str>,
    /// The update, v1 encoding, exactly as stored.
    pub update: Bytes,
    pub origin: UpdateOrigin,
    /// Its seq in the room's log (`RoomStore::append`): what a change feed sends as the SSE `id`
    /// so a consumer can resume after it.
    pub seq: u64,
}

/// Something that happened to a room, in the order it happened. Exhaustive on purpose: a new
/// kind of event is something every consumer must decide about.
#[derive(Debug, Clone)]
pub enum RelayEvent {
    /// An update is durable (see [`CommittedUpdate`]).
    Committed(CommittedUpdate),
    /// `RelayHandle::delete_room` removed the room's stored content (its connections were closed
    /// with 4410). Consumers mirroring rooms forget the room instead of writing old content
    /// back into it.
    Deleted { room: Arc<str> },
    /// The room left memory because it sat idle. A hint for consumers that keep per-room state
    /// to let it go with the room; nothing is lost if it is ignored.
    Unloaded { room: Arc<str> },
}

impl RelayEvent {
    /// The room the event is about.
    pub fn room(&self) -> &Arc<str> {
        match self {
            RelayEvent::Committed(u) => &u.room,
            RelayEvent::Deleted { room } | RelayEvent::Unloaded { room } => room,
        }
    }

    /// Payload bytes the event pins while queued (what the byte bound counts).
    fn bytes(&self) -> usize {
        match self {
            RelayEvent::Committed(u) => u.update.len(),
            RelayEvent::Deleted { .. } | RelayEvent::Unloaded { .. } => 0,
        }
    }
}

/// Events queued for one subscriber before it is declared lagging.
pub const EVENTS_MAX_QUEUED: usize = 16_384;
/// Bytes of update payload queued for one subscriber before it is declared lagging.
pub const EVENTS_MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<RelayEvent>,
    bytes: usize,
    /// Events dropped since the subscriber last heard of it.
    missed: u64,
    closed: bool,
}

#[derive(Debug)]
struct Subscriber {
    queue: Mutex<Queue>,
    notify: Notify,
    /// Only this room's events (a change feed); `None`: every room (the bridge).
    room: Option<Arc<str>>,
    max_events: usize,
    max_bytes: usize,
}

/// The publishing side, owned by the relay.
#[derive(Debug)]
pub(crate) struct EventBus {
    subscribers: Mutex<Vec<Weak<Subscriber>>>,
    max_events: usize,
    max_bytes: usize,
}

impl EventBus {
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            subscribers: Mutex::new(Vec::new()),
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    pub(crate) fn subscribe(&self) -> EventReceiver {
        self.subscribe_to(None, self.max_events, self.max_bytes)
    }

    /// Events of one room only (including its `Deleted`), with bounds of its own: a change feed is a remote consumer and
    /// gets the bounds of a connection, not the bridge's.
    pub(crate) fn subscribe_room(
        &self,
        room: Arc<str>,
        max_events: usize,
        max_bytes: usize,
    ) -> EventReceiver {
        self.subscribe_to(Some(room), max_events, max_bytes)
    }

    fn subscribe_to(
        &self,
        room: Option<Arc<str>>,
        max_events: usize,
        max_bytes: usize,
    ) -> EventReceiver {
        let sub = Arc::new(Subscriber {
            queue: Mutex::default(),
            notify: Notify::new(),
            room,
            max_events: max_events.max(1),
            max_bytes,
        });
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push(Arc::downgrade(&sub));
        } else {
            // A poisoned registry cannot deliver; say so at once rather than stay silent.
            if let Ok(mut q) = sub.queue.lock() {
                q.closed = true;
            }
        }
        EventReceiver { sub }
    }

    /// Queues `event` for every live subscriber; forgets subscribers that were dropped.
    pub(crate) fn publish(&self, event: RelayEvent) {
        let Ok(mut subs) = self.subscribers.lock() else {
            return;
        };
        subs.retain(|w| w.strong_count() > 0);
        for sub in subs.iter().filter_map(Weak::upgrade) {
            if sub.room.as_deref().is_some_and(|r| r != &**event.room()) {
                continue;
            }
            let Ok(mut q) = sub.queue.lock() else {
                continue;
            };
            let len = event.bytes();
            if q.items.len() >= sub.max_events || q.bytes + len > sub.max_bytes {
                // It must resync anyway, so what it has not read yet is of no use: free it now.
                q.missed += q.items.len() as u64 + 1;
                q.items.clear();
                q.bytes = 0;
            } else {
                q.bytes += len;
                q.items.push_back(event.clone());
            }
            drop(q);
            sub.notify.notify_waiters();
        }
    }
}

impl Drop for EventBus {
    fn drop(&mut self) {
        let Ok(subs) = self.subscribers.lock() else {
            return;
        };
        for sub in subs.iter().filter_map(Weak::upgrade) {
            if let Ok(mut q) = sub.queue.lock() {
                q.closed = true;
            }
            sub.notify.notify_waiters();
        }
    }
}

/// One subscriber's end: `recv` like a broadcast receiver's (cancel-safe, so it can sit in a
/// `select!`).
#[derive(Debug)]
pub struct EventReceiver {
    sub: Arc<Subscriber>,
}

impl EventReceiver {
    /// The next event; `Lagged(n)` once after `n` events were dropped for this
    /// subscriber; `Closed` when the relay is gone and everything queued was taken.
    pub async fn recv(&mut self) -> Result<RelayEvent, RecvError> {
        loop {
            // Registered before looking at the queue, so a publish in between still wakes us.
            let notified = self.sub.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.try_take() {
                return r;
            }
            notified.await;
        }
    }

    /// What `recv` would return now, without waiting (`Empty` when nothing is queued).
    pub fn try_recv(&mut self) -> Result<RelayEvent, TryRecvError> {
        match self.try_take() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(RecvError::Lagged(n))) => Err(TryRecvError::Lagged(n)),
            Some(Err(RecvError::Closed)) => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    fn try_take(&self) -> Option<Result<RelayEvent, RecvError>> {
        let Ok(mut q) = self.sub.queue.lock() else {
            return Some(Err(RecvError::Closed));
        };
        if q.missed > 0 {
            let n = std::mem::take(&mut q.missed);
            return Some(Err(RecvError::Lagged(n)));
        }
        if let Some(ev) = q.items.pop_front() {
            q.bytes -= ev.bytes();
            if q.items.is_empty() && q.items.capacity() > 64 {
                // A backlog's buffer is not kept for good once the subscriber caught up.
                q.items = VecDeque::new();
            }
            return Some(Ok(ev));
        }
        if q.closed {
            return Some(Err(RecvError::Closed));
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn ev_in(room: &str, n: usize) -> RelayEvent {
        RelayEvent::Committed(CommittedUpdate {
            room: Arc::from(room),
            update: Bytes::from(vec![0u8; n]),
            origin: UpdateOrigin::Http,
            seq: 0,
        })
    }

    fn ev(n: usize) -> RelayEvent {
        ev_in("r", n)
    }

    /// The length of a received committed update.
    fn len(r: Result<RelayEvent, RecvError>) -> usize {
        match r.unwrap() {
            RelayEvent::Committed(u) => u.update.len(),
            other => panic!("not an update: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_room_subscriber_gets_only_its_room_within_its_own_bounds() {
        let bus = EventBus::new(16, 1 << 20);
        let mut all = bus.subscribe();
        let mut only_a = bus.subscribe_room(Arc::from("a"), 2, 1 << 20);
        for (room, n) in [("a", 1), ("b", 2), ("a", 3)] {
            bus.publish(ev_in(room, n));
        }
        assert_eq!(len(only_a.recv().await), 1);
        assert_eq!(len(only_a.recv().await), 3);
        assert!(matches!(only_a.try_recv(), Err(TryRecvError::Empty)));
        for n in 1..=3 {
            assert_eq!(len(all.recv().await), n);
        }
        // Its bound is 2 events, the bus's 16: a third unread event of its room makes it lag.
        for n in 4..=6 {
            bus.publish(ev_in("a", n));
        }
        assert!(matches!(only_a.recv().await, Err(RecvError::Lagged(3))));
        for n in 4..=6 {
            assert_eq!(len(all.recv().await), n);
        }
    }

    #[tokio::test]
    async fn deletions_and_unloads_keep_their_place_among_updates_and_their_room_filter() {
        let bus = EventBus::new(16, 1 << 20);
        let mut all = bus.subscribe();
        let mut only_a = bus.subscribe_room(Arc::from("a"), 16, 1 << 20);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let sent = [
            ev_in("a", 1),
            RelayEvent::Unloaded { room: b.clone() },
            RelayEvent::Deleted { room: a.clone() },
            ev_in("a", 2),
            RelayEvent::Deleted { room: b },
            RelayEvent::Unloaded { room: a },
        ];
        for e in &sent {
            bus.publish(e.clone());
        }
        // (room, kind) as each subscriber sees them.
        let kind = |e: RelayEvent| match e {
            RelayEvent::Committed(u) => (u.room.to_string(), "committed"),
            RelayEvent::Deleted { room } => (room.to_string(), "deleted"),
            RelayEvent::Unloaded { room } => (room.to_string(), "unloaded"),
        };
        let mut got_all = Vec::new();
        while let Ok(e) = all.try_recv() {
            got_all.push(kind(e));
        }
        let want_all: Vec<_> = sent.iter().cloned().map(kind).collect();
        assert_eq!(got_all, want_all);
        let mut got_a = Vec::new();
        while let Ok(e) = only_a.try_recv() {
            got_a.push(kind(e));
        }
        let want_a: Vec<_> = want_all.into_iter().filter(|(r, _)| r == "a").collect();
        assert_eq!(got_a, want_a);
        // Only update payloads count against the byte bound.
        assert_eq!(all.sub.queue.lock().unwrap().bytes, 0);
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = EventBus::new(16, 1 << 20);
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        for n in 1..=5 {
            bus.publish(ev(n));
        }
        for n in 1..=5 {
            assert_eq!(len(a.recv().await), n);
            assert_eq!(len(b.recv().await), n);
        }
    }

    #[tokio::test]
    async fn a_waiting_subscriber_is_woken_by_a_publish() {
        let bus = Arc::new(EventBus::new(16, 1 << 20));
        let mut rx = bus.subscribe();
        let waiter = tokio::spawn(async move { rx.recv().await.map(|e| e.bytes()) });
        tokio::task::yield_now().await;
        bus.publish(ev(3));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Ok(3));
    }

    #[tokio::test]
    async fn a_subscriber_over_its_byte_bound_lags_and_the_backlog_is_freed() {
        let bus = EventBus::new(1000, 10_000);
        let mut rx = bus.subscribe();
        for _ in 0..3 {
            bus.publish(ev(4_000));
        }
        // The third event did not fit: the two queued ones are dropped with it.
        assert_eq!(rx.sub.queue.lock().unwrap().bytes, 0);
        assert_eq!(rx.recv().await.unwrap_err(), RecvError::Lagged(3));
        bus.publish(ev(7));
        assert_eq!(len(rx.recv().await), 7);
    }

    #[tokio::test]
    async fn a_subscriber_over_its_event_bound_lags() {
        let bus = EventBus::new(4, 1 << 20);
        let mut rx = bus.subscribe();
        for _ in 0..5 {
            bus.publish(ev(1));
        }
        assert_eq!(rx.recv().await.unwrap_err(), RecvError::Lagged(5));
    }

    #[tokio::test]
    async fn dropping_the_bus_closes_after_the_queue_is_drained() {
        let bus = EventBus::new(16, 1 << 20);
        let mut rx = bus.subscribe();
        bus.publish(ev(2));
        drop(bus);
        assert_eq!(len(rx.recv().await), 2);
        assert_eq!(rx.recv().await.unwrap_err(), RecvError::Closed);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Publish(usize),
        Take(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..60).prop_map(Op::Publish),
            (0usize..2).prop_map(Op::Take)
        ]
    }

    fn take(rx: &mut EventReceiver, got: &mut Vec<u64>, missed: &mut u64) -> bool {
        match rx.try_recv() {
            Ok(ev) => got.push(ev.room().parse().unwrap()),
            Err(TryRecvError::Lagged(n)) => *missed += n,
            Err(TryRecvError::Empty) => return false,
            Err(e) => panic!("{e:?}"),
        }
        true
    }

    proptest::proptest! {
        /// Whatever the interleaving of publishes and reads: a queue never exceeds its bounds,
        /// each subscriber receives events in publish order, and every event is either
        /// received or counted in a `Lagged` exactly once.
        #[test]
        fn bounded_in_order_and_every_event_accounted_for(
            ops in proptest::collection::vec(op(), 0..300)
        ) {
            let bus = EventBus::new(5, 120);
            let mut rx = [bus.subscribe(), bus.subscribe()];
            let mut got = [Vec::new(), Vec::new()];
            let mut missed = [0u64; 2];
            let mut published = 0u64;
            for o in ops {
                match o {
                    Op::Publish(len) => {
                        bus.publish(ev_in(&published.to_string(), len));
                        published += 1;
                    }
                    Op::Take(i) => {
                        take(&mut rx[i], &mut got[i], &mut missed[i]);
                    }
                }
                for r in &rx {
                    let q = r.sub.queue.lock().unwrap();
                    proptest::prop_assert!(q.items.len() <= 5);
                    proptest::prop_assert!(q.bytes <= 120);
                    proptest::prop_assert_eq!(q.bytes, q.items.iter().map(RelayEvent::bytes).sum::<usize>());
                }
            }
            for i in 0..2 {
                while take(&mut rx[i], &mut got[i], &mut missed[i]) {}
                proptest::prop_assert!(got[i].windows(2).all(|w| w[0] < w[1]));
                proptest::prop_assert_eq!(got[i].len() as u64 + missed[i], published);
            }
        }
    }

    #[tokio::test]
    async fn dropped_subscribers_are_forgotten() {
        let bus = EventBus::new(16, 1 << 20);
        let rx = bus.subscribe();
        drop(rx);
        bus.publish(ev(1));
        assert!(bus.subscribers.lock().unwrap().is_empty());
    }
}
