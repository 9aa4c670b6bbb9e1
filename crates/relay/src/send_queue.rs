//! What a room and one of its connections share: the connection's outbound queue and its close
//! request, in one small allocation with one waker (the connection is one task).
//!
//! Why not a tokio mpsc channel: each one allocates a 32-slot block and a cache-padded header
//! up front (≈ 1.8 KB per connection, the largest item of an idle connection's memory,
//! docs/benchmarks.md). This queue holds nothing while empty and gives a drained burst's
//! buffer back. Deliberately not here: what the frames mean (room/) and how they are
//! written (connection.rs).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Wake, Waker};

use bytes::Bytes;

#[derive(Debug)]
pub(crate) struct SendQueue {
    inner: Mutex<Inner>,
    reason: OnceLock<(u16, Cow<'static, str>)>,
    /// Frames queued before the connection counts as a slow consumer.
    limit: usize,
    /// Set by the socket's read readiness (this queue is also the waker the connection reads
    /// with): the connection tries a read only then, not on every wakeup for outbound frames.
    read_woken: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    waker: Option<Waker>,
    /// The connection stopped writing: nothing more is queued.
    gone: bool,
}

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// `limit` frames are waiting: the peer does not read fast enough.
    Full,
    /// The connection has finished.
    Gone,
}

impl SendQueue {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            reason: OnceLock::new(),
            limit,
            read_woken: AtomicBool::new(true),
        }
    }

    // Nothing panics while the lock is held, so a poisoned lock still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a frame and wakes the connection. Never skips: a full queue is an error the
    /// caller must act on (the room closes the connection).
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let waker = {
            let mut inner = self.lock();
            if inner.gone {
                return Err(PushError::Gone);
            }
            if inner.frames.len() >= self.limit {
                return Err(PushError::Full);
            }
            inner.frames.push_back(frame);
            inner.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Asks the connection to close with a code and reason; the first request wins.
    pub fn close(&self, code: u16, reason: impl Into<Cow<'static, str>>) {
        let _ = self.reason.set((code, reason.into()));
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn is_closing(&self) -> bool {
        self.reason.get().is_some()
    }

    pub fn reason(&self) -> (u16, Cow<'static, str>) {
        self.reason
            .get()
            .cloned()
            .unwrap_or((1000, Cow::Borrowed("")))
    }

    /// The connection's side: wake this waker on the next push or close. Call before looking
    /// at the queue or the close request, so neither can be missed in between.
    pub fn register(&self, waker: &Waker) {
        let mut inner = self.lock();
        match &inner.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inner.waker = Some(waker.clone()),
        }
    }

    /// The connection's side: whether a read may find something, clearing the flag. Set again
    /// by the read waker, or by [`Self::read_again`].
    pub fn take_read_woken(&self) -> bool {
        self.read_woken.swap(false, Ordering::AcqRel)
    }

    /// The connection's side: read on the next round even without a new wakeup (the socket
    /// may hold more than one message, or reading paused while it did).
    pub fn read_again(&self) {
        self.read_woken.store(true, Ordering::Release);
    }

    /// The connection's side: the oldest queued frame.
    pub fn pop(&self) -> Option<Bytes> {
        let mut inner = self.lock();
        let frame = inner.frames.pop_front();
        // A drained queue gives its buffer back: an idle connection holds no queue at all.
        // Costs one small allocation per burst of frames, not per frame.
        if inner.frames.is_empty() {
            inner.frames = VecDeque::new();
        }
        frame
    }

    /// The connection's side: whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    /// The connection's side: the oldest queued frame, if `take` accepts it.
    pub fn pop_if(&self, take: impl FnOnce(&Bytes) -> bool) -> Option<Bytes> {
        let mut inner = self.lock();
        if !inner.frames.front().is_some_and(take) {
            return None;
        }
        let frame = inner.frames.pop_front();
        if inner.frames.is_empty() {
            inner.frames = VecDeque::new();
        }
        frame
    }

    /// The connection's side: puts a frame it took back at the front (it keeps its place; the
    /// queue limit does not apply, the frame was counted already).
    pub fn push_front(&self, frame: Bytes) {
        let mut inner = self.lock();
        if !inner.gone {
            inner.frames.push_front(frame);
        }
    }

    /// The connection's side, once it stops writing: later pushes fail with `Gone` (the room
    /// then forgets the connection) and what is queued is freed now.
    pub fn finish(&self) {
        let (frames, waker) = {
            let mut inner = self.lock();
            inner.gone = true;
            (std::mem::take(&mut inner.frames), inner.waker.take())
        };
        drop((frames, waker));
    }
}

/// The waker the connection reads with: notes that the socket may be readable, then wakes the
/// connection task through its registered waker. No registered waker means the task was woken
/// since it last registered one (whoever took it woke it), so it will see the flag.
impl Wake for SendQueue {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.read_woken.store(true, Ordering::Release);
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn bounded_in_order_wakes_and_refuses_after_finish() {
        let out = SendQueue::new(2);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        out.register(&waker);
        out.push(Bytes::from_static(b"a")).unwrap();
        out.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(out.push(Bytes::from_static(b"c")), Err(PushError::Full));
        // One wake per registration, not per frame.
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(out.pop().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(out.pop().unwrap(), Bytes::from_static(b"b"));
        assert_eq!(out.pop(), None);
        out.register(&waker);
        out.close(4000, "first");
        out.close(4001, "second");
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(out.is_closing());
        assert_eq!(out.reason(), (4000, Cow::Borrowed("first")));
        out.push(Bytes::from_static(b"d")).unwrap();
        out.finish();
        assert_eq!(out.pop(), None);
        assert_eq!(out.push(Bytes::from_static(b"e")), Err(PushError::Gone));
    }

    #[test]
    fn pop_if_takes_only_what_is_accepted_and_push_front_keeps_the_order() {
        let out = SendQueue::new(10);
        out.push(Bytes::from_static(b"a")).unwrap();
        out.push(Bytes::from_static(b"b")).unwrap();
        assert_eq!(out.pop_if(|f| f.as_ref() == b"b"), None);
        assert_eq!(
            out.pop_if(|f| f.as_ref() == b"a").unwrap(),
            Bytes::from_static(b"a")
        );
        out.push_front(Bytes::from_static(b"a"));
        assert_eq!(out.pop().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(out.pop().unwrap(), Bytes::from_static(b"b"));
        assert!(out.is_empty());
        out.finish();
        out.push_front(Bytes::from_static(b"late"));
        assert!(
            out.is_empty(),
            "nothing is queued once the connection finished"
        );
    }

    #[test]
    fn a_drained_burst_gives_its_buffer_back() {
        let out = SendQueue::new(1000);
        for _ in 0..100 {
            out.push(Bytes::from_static(b"x")).unwrap();
        }
        while out.pop().is_some() {}
        assert_eq!(out.lock().frames.capacity(), 0);
    }
}
