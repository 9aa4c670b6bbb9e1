//! What the [`crate::Client`] handle and its connection task share: the replica and the
//! awareness (each behind a `std` mutex that is never held across an await), the event and
//! state channels, and the bounded outbox of local updates.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::awareness::Awareness;
use crate::events::{ClientEvent, ConnectionState};
use crate::replica::Replica;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) replica: Mutex<Replica>,
    pub(crate) awareness: Mutex<Awareness>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) unsynced: watch::Sender<usize>,
    /// True once the server's SyncStep2 was applied on the current connection (we then hold
    /// everything the server held when it answered); false while disconnected.
    pub(crate) pulled: watch::Sender<bool>,
    /// Local updates waiting for the socket.
    pub(crate) outbox: mpsc::Sender<Vec<u8>>,
    /// The outbox was full and an update was not queued: the connection sends a diff instead.
    pub(crate) overflow: AtomicBool,
    /// Our awareness state changed and is not sent yet.
    pub(crate) awareness_dirty: AtomicBool,
    pub(crate) token: Mutex<Option<String>>,
    /// Wakes the connection task: outbox overflow, awareness, a new token, shutdown.
    pub(crate) wake: Notify,
    pub(crate) token_changed: AtomicBool,
}

/// Locks a mutex; a poisoned one (a panic in a caller's closure) is still consistent for us:
/// every write through it is a yrs transaction or a redb commit, each all-or-nothing.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn set_state(&self, s: ConnectionState) {
        let changed = self.state.send_if_modified(|cur| {
            if *cur == s {
                false
            } else {
                *cur = s.clone();
                true
            }
        });
        if changed {
            let _ = self.events.send(ClientEvent::Connection(s));
        }
    }

    pub(crate) fn publish_unsynced(&self, n: usize) {
        let changed = self.unsynced.send_if_modified(|cur| {
            let c = *cur != n;
            *cur = n;
            c
        });
        if changed {
            let _ = self.events.send(ClientEvent::Unsynced(n));
        }
    }

    /// Queues a local update for the socket; when the queue is full, asks for a diff instead.
    pub(crate) fn push_local(&self, update: Vec<u8>) {
        if self.outbox.try_send(update).is_err() {
            self.overflow.store(true, Ordering::SeqCst);
            self.wake.notify_one();
        }
    }
}
