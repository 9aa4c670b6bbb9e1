//! A room's inbox: a bounded queue with many senders (connections, the registry's requests)
//! and one receiver (the room actor).
//!
//! Why not `tokio::sync::mpsc::channel`: every loaded room has an inbox, and tokio's bounded
//! channel allocates, at creation, a block of 32 slots plus a channel struct whose sender and
//! receiver halves are padded to separate cache lines: well over a kilobyte per room while
//! nearly every inbox is empty nearly all the time. With one room per connection that was a
//! large share of a connection's memory (docs/benchmarks.md, "Open connections"). This queue
//! allocates one small shared struct; its `VecDeque` starts without a buffer, grows only while
//! commands actually wait, and gives the buffer back once drained.
//!
//! Semantics the actor and its callers rely on, as tokio's channel had them:
//! - at most `capacity` commands wait; `send` waits for room (backpressure onto the sockets),
//!   `try_send` says `Full`;
//! - once the receiver is closed or dropped every send fails (`Closed`) and commands already
//!   queued can still be drained with `try_recv` (closed) or are dropped (dropped receiver);
//!   a command is never accepted after the close, so a drain after `close` sees everything;
//! - `recv` returns `None` once the queue is empty and it is closed or every sender is gone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::Semaphore;

/// A queue buffer at most this large is kept when it drains; a larger one (left by a burst) is
/// shrunk, so an idle room does not keep its peak's buffer.
const KEEP_CAPACITY: usize = 16;

/// Why `try_send` did not queue the command; the command comes back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrySendError<T> {
    /// `capacity` commands wait already.
    #[error("the room's inbox is full")]
    Full(T),
    /// The room's actor is gone or no longer takes commands.
    #[error("the room's inbox is closed")]
    Closed(T),
}

/// `send` failed: the receiver is closed or gone. The command comes back.
#[derive(Debug, thiserror::Error)]
#[error("the room's inbox is closed")]
pub(crate) struct SendError<T>(pub T);

struct Queue<T> {
    items: VecDeque<T>,
    /// Set by the receiver's `close` or drop; checked under the same lock as every push.
    closed: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// Free slots: a sender takes a permit before it pushes, the receiver returns one per
    /// command it takes. Closed with the queue, which wakes senders waiting for room.
    slots: Semaphore,
    /// Live `InboxSender`s; the receiver ends (`None`) when the last one drops.
    senders: AtomicUsize,
    /// The receiver's waker (one receiver: no list needed).
    rx_waker: AtomicWaker,
}

impl<T> Shared<T> {
    /// The queue, even if a thread panicked while holding it: every critical section leaves it
    /// consistent (a push or a pop), so there is nothing to repair.
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item` under a permit already taken; gives it back if the receiver closed.
    fn push(&self, item: T) -> Result<(), T> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(item);
            }
            q.items.push_back(item);
        }
        self.rx_waker.wake();
        Ok(())
    }

    /// Stops taking commands and wakes every sender waiting for room.
    fn close(&self) {
        self.lock().closed = true;
        self.slots.close();
    }
}

/// A new inbox holding at most `capacity` waiting commands.
pub(crate) fn inbox<T>(capacity: usize) -> (InboxSender<T>, InboxReceiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            closed: false,
        }),
        slots: Semaphore::new(capacity),
        senders: AtomicUsize::new(1),
        rx_waker: AtomicWaker::new(),
    });
    (
        InboxSender {
            shared: shared.clone(),
        },
        InboxReceiver { shared },
    )
}

/// The sending side; cloned for every party that talks to the room.
pub(crate) struct InboxSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> InboxSender<T> {
    /// Queues `item`, waiting while the inbox is full. Fails when the receiver is closed or
    /// gone (also while waiting). Cancel safe: dropped while waiting, nothing was queued.
    pub(crate) async fn send(&self, item: T) -> Result<(), SendError<T>> {
        match self.shared.slots.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(SendError(item)),
        }
        self.shared.push(item).map_err(SendError)
    }

    /// Queues `item` if there is room now.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match self.shared.slots.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(TrySendError::Full(item)),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(TrySendError::Closed(item)),
        }
        self.shared.push(item).map_err(TrySendError::Closed)
    }

    /// Whether the receiver is closed or gone (sends would fail).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.slots.is_closed()
    }
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        InboxSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        // AcqRel: the receiver that sees zero must also see every push made before the drops.
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.rx_waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for InboxSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxSender")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// The receiving side, owned by the room actor. Dropping it closes the inbox and drops what
/// is still queued.
pub(crate) struct InboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> InboxReceiver<T> {
    /// The next command; `None` once the inbox is empty and closed or every sender is gone.
    /// Cancel safe: a command is taken only when the call returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| {
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            // Registered before looking again: a push or the last sender's drop after this
            // look wakes us, one before it is seen by it.
            self.shared.rx_waker.register(cx.waker());
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            if self.lock_is_closed() || self.shared.senders.load(Ordering::Acquire) == 0 {
                // Every push happened before its sender's drop: a last look takes any left.
                return Poll::Ready(self.try_recv());
            }
            Poll::Pending
        })
        .await
    }

    /// The next command if one is queued (also after `close`, until the queue is drained).
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let item = {
            let mut q = self.shared.lock();
            let item = q.items.pop_front();
            if q.items.is_empty() && q.items.capacity() > KEEP_CAPACITY {
                q.items = VecDeque::new();
            }
            item
        };
        if item.is_some() {
            self.shared.slots.add_permits(1);
        }
        item
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    /// Refuses further commands; what is queued stays for `try_recv`.
    pub(crate) fn close(&mut self) {
        self.shared.close();
    }

    fn lock_is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}

impl<T> Drop for InboxReceiver<T> {
    fn drop(&mut self) {
        self.shared.close();
        // Dropped outside the lock: a command's drop may answer a waiting request.
        let left = std::mem::take(&mut self.shared.lock().items);
        drop(left);
    }
}

impl<T> std::fmt::Debug for InboxReceiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
impl<T> InboxReceiver<T> {
    fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    fn buffer_capacity(&self) -> usize {
        self.shared.lock().items.capacity()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{TrySendError, inbox};

    /// Long enough for a spawned task to run as far as it can on a test runtime.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn fifo_within_the_bound_and_full_beyond_it() {
        let (tx, mut rx) = inbox(2);
        tx.try_send(1).unwrap();
        tx.send(2).await.unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.recv().await, Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn a_full_inbox_makes_send_wait_until_the_receiver_takes_one() {
        let (tx, mut rx) = inbox(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await.is_ok() }
        });
        settle().await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.len(), 1);
        assert_eq!(rx.recv().await, Some(1));
        assert!(waiting.await.unwrap());
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn close_refuses_sends_and_keeps_what_was_queued() {
        let (tx, mut rx) = inbox(4);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        rx.close();
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Closed(3))));
        assert_eq!(tx.send(4).await.unwrap_err().0, 4);
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.recv().await, Some(2));
        // Closed and drained: the end, although a sender is still alive.
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn close_wakes_a_sender_waiting_for_room() {
        let (tx, mut rx) = inbox(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await.map_err(|e| e.0) }
        });
        settle().await;
        rx.close();
        assert_eq!(waiting.await.unwrap(), Err(2));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn dropping_the_receiver_fails_senders_and_drops_what_was_queued() {
        let (tx, rx) = inbox(1);
        let item = Arc::new(());
        tx.try_send(item.clone()).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            let item = item.clone();
            async move { tx.send(item).await.is_err() }
        });
        settle().await;
        drop(rx);
        assert!(waiting.await.unwrap());
        assert!(tx.is_closed());
        assert!(matches!(
            tx.try_send(item.clone()),
            Err(TrySendError::Closed(_))
        ));
        // Only ours is left: the queued clone was dropped with the receiver.
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[tokio::test]
    async fn the_last_sender_gone_ends_recv_after_the_queue_drains() {
        let (tx, mut rx) = inbox(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        tx2.try_send(2).unwrap();
        drop(tx2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_push_and_for_the_last_sender_leaving() {
        let (tx, mut rx) = inbox::<u32>(4);
        let receiver = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        settle().await;
        tx.try_send(7).unwrap();
        settle().await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), receiver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (Some(7), None));
    }

    #[tokio::test]
    async fn the_buffer_starts_empty_and_is_given_back_after_a_burst() {
        let (tx, mut rx) = inbox(1024);
        assert_eq!(rx.buffer_capacity(), 0);
        for i in 0..500 {
            tx.try_send(i).unwrap();
        }
        assert!(rx.buffer_capacity() >= 500);
        for i in 0..500 {
            assert_eq!(rx.try_recv(), Some(i));
        }
        assert_eq!(rx.buffer_capacity(), 0);
        // A few at a time keep their small buffer (no churn for a busy room).
        tx.try_send(1).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert!(rx.buffer_capacity() <= super::KEEP_CAPACITY);
    }

    /// Many senders on other threads against a small bound: the bound holds at every receive,
    /// each sender's commands arrive in order, and nothing is lost (a lost wake-up would hang
    /// the receiver, caught by the timeout).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_respect_the_bound_and_lose_nothing() {
        const SENDERS: usize = 8;
        const EACH: usize = 2_000;
        const CAP: usize = 4;
        let (tx, mut rx) = inbox::<(usize, usize)>(CAP);
        for s in 0..SENDERS {
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    // Half the senders spin on try_send, half wait in send.
                    if s % 2 == 0 {
                        let mut item = (s, i);
                        loop {
                            match tx.try_send(item) {
                                Ok(()) => break,
                                Err(TrySendError::Full(back)) => {
                                    item = back;
                                    tokio::task::yield_now().await;
                                }
                                Err(TrySendError::Closed(_)) => return,
                            }
                        }
                    } else if tx.send((s, i)).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let received = tokio::time::timeout(Duration::from_secs(30), async move {
            let mut next = [0usize; SENDERS];
            let mut total = 0;
            loop {
                assert!(rx.len() <= CAP, "{} queued over a bound of {CAP}", rx.len());
                let Some((s, i)) = rx.recv().await else {
                    break;
                };
                assert_eq!(i, next[s], "sender {s} out of order");
                next[s] += 1;
                total += 1;
            }
            total
        })
        .await
        .unwrap();
        assert_eq!(received, SENDERS * EACH);
    }

    /// The receiver closing while senders race to push: every command a sender saw accepted
    /// is drained after the close, none is accepted after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_racing_with_senders_strands_nothing() {
        for _ in 0..50 {
            let (tx, mut rx) = inbox::<usize>(64);
            let mut tasks = Vec::new();
            for _ in 0..4 {
                let tx = tx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut accepted = 0;
                    for i in 0..1_000 {
                        match tx.send(i).await {
                            Ok(()) => accepted += 1,
                            Err(_) => break,
                        }
                    }
                    accepted
                }));
            }
            drop(tx);
            let mut taken = 0;
            for _ in 0..100 {
                if rx.recv().await.is_some() {
                    taken += 1;
                }
            }
            rx.close();
            while rx.try_recv().is_some() {
                taken += 1;
            }
            let mut accepted = 0;
            for t in tasks {
                accepted += t.await.unwrap();
            }
            assert_eq!(taken, accepted);
        }
    }
}
