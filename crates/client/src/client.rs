//! [`Client`]: the handle an application holds. Edits go to the local replica first (durable
//! before the call returns) and then to the connection task through a bounded outbox.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use weaver_doc::{BlockView, Workspace, WriteTxn};

use crate::awareness::{Awareness, PeerState};
use crate::connection::Connection;
use crate::error::ClientError;
use crate::events::{ClientEvent, ConnectionState};
use crate::options::ClientOptions;
use crate::replica::{ChangeSink, Replica};
use crate::shared::{Shared, lock};

/// An offline-first replica of one room, synced with a Weaver server while it is reachable.
///
/// Calls that touch the document take a short `std` mutex and may fsync (local edits): they
/// are meant to be called from async code like any short blocking call, never from inside a
/// closure passed to the same client (that would deadlock).
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Client {
    /// Opens the replica in `options.dir` (creating it), loads its document and starts the
    /// connection task. Must be called inside a tokio runtime; works offline from the start.
    pub fn open(options: ClientOptions) -> Result<Client, ClientError> {
        options.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        let (events, _) = broadcast::channel(options.event_buffer.max(1));
        let sink_events = events.clone();
        let sink: ChangeSink = Arc::new(move |cs| {
            let _ = sink_events.send(ClientEvent::Changed(cs.clone()));
        });
        let replica = Replica::open(
            &options.dir,
            options.compact_after,
            options.max_doc_bytes,
            sink,
        )?;
        let unsynced = replica.unsynced();
        let (outbox_tx, outbox_rx) = mpsc::channel(options.outbox_updates.max(1));
        let shared = Arc::new(Shared {
            awareness: Mutex::new(Awareness::new(replica.client_id())),
            replica: Mutex::new(replica),
            events,
            state: watch::Sender::new(ConnectionState::Connecting),
            unsynced: watch::Sender::new(unsynced),
            pulled: watch::Sender::new(false),
            outbox: outbox_tx,
            overflow: AtomicBool::new(false),
            awareness_dirty: AtomicBool::new(false),
            token: Mutex::new(options.token.clone()),
            wake: Notify::new(),
            token_changed: AtomicBool::new(false),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let conn = Connection {
            shared: shared.clone(),
            options,
            outbox: outbox_rx,
            shutdown: shutdown_rx,
        };
        let task = runtime.spawn(conn.run());
        Ok(Client {
            shared,
            shutdown,
            task: Some(task),
        })
    }

    /// This replica's Yjs client id (stored in the replica, the same on every run).
    pub fn client_id(&self) -> u64 {
        lock(&self.shared.replica).client_id()
    }

    /// Edits the document in one transaction (typed `weaver-doc` operations, or raw yrs via
    /// [`WriteTxn::yrs_txn`]). When this returns `Ok`, the edit is durable in the replica; it
    /// is sent at once when online, else on the next connection. yrs cannot roll back: if `f`
    /// fails halfway, what it wrote before stays (each `WriteTxn` operation checks before it
    /// writes).
    pub fn transact<R>(&self, f: impl FnOnce(&mut WriteTxn<'_>) -> R) -> Result<R, ClientError> {
        let (r, update, unsynced) = {
            let mut replica = lock(&self.shared.replica);
            let (r, update) = replica.transact(f)?;
            (r, update, replica.unsynced())
        };
        if !update.is_empty() {
            self.shared.publish_unsynced(unsynced);
            self.shared.push_local(update);
        }
        Ok(r)
    }

    /// Reads the document (typed views, JSON, or the raw `yrs::Doc` via [`Workspace::doc`]).
    /// Write only through [`Client::transact`]: writes made here would not be durable.
    pub fn read<R>(&self, f: impl FnOnce(&Workspace) -> R) -> R {
        f(lock(&self.shared.replica).workspace())
    }

    /// All blocks, sorted by id.
    pub fn blocks(&self) -> Result<Vec<BlockView>, ClientError> {
        Ok(self.read(|ws| ws.blocks())?)
    }

    /// One block.
    pub fn block(&self, id: &str) -> Result<Option<BlockView>, ClientError> {
        Ok(self.read(|ws| ws.block(id))?)
    }

    /// The JSON view (`{"blocks": [...]}`, as `GET /api/rooms/{room}/blocks`).
    pub fn to_json(&self) -> Result<serde_json::Value, ClientError> {
        Ok(self.read(|ws| ws.to_json())?)
    }

    /// Local updates the server has not acknowledged yet (the rule: `ack.rs`). Survives
    /// restarts: edits made offline by an earlier process count until they are pushed.
    pub fn unsynced(&self) -> usize {
        *self.shared.unsynced.borrow()
    }

    /// Resolves once the server holds everything local (`unsynced() == 0`). Never resolves
    /// while the server refuses our writes (read-only token): wrap it in a timeout.
    pub async fn synced(&self) {
        let mut rx = self.shared.unsynced.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Resolves once the current connection's handshake brought in everything the server held
    /// when it answered (so the replica is at least as new as the server was).
    pub async fn pulled(&self) {
        let mut rx = self.shared.pulled.subscribe();
        let _ = rx.wait_for(|p| *p).await;
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// The connection state as a watch channel.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Document changes, awareness, connection and unsynced events. Bounded: a receiver that
    /// falls behind by more than the buffer gets `RecvError::Lagged` and should re-read state.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared.events.subscribe()
    }

    /// Sets our awareness state (any JSON; `None` clears it) and sends it when online.
    pub fn set_awareness(&self, state: Option<&serde_json::Value>) -> Result<(), ClientError> {
        let text = state
            .map(serde_json::to_string)
            .transpose()
            .map_err(ClientError::Awareness)?;
        lock(&self.shared.awareness).set_local(text);
        self.shared.awareness_dirty.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The other clients' awareness states, by client id.
    pub fn peers(&self) -> Vec<PeerState> {
        lock(&self.shared.awareness).peers()
    }

    /// Replaces the token and reconnects with it (also after `TokenExpired` or `Refused`).
    pub fn set_token(&self, token: Option<String>) {
        *lock(&self.shared.token) = token;
        self.shared.token_changed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Folds the replica's log into one snapshot now (it also happens on its own).
    pub fn compact(&self) -> Result<(), ClientError> {
        Ok(lock(&self.shared.replica).compact()?)
    }

    /// Leaves the room (awareness removal, close frame) and stops the connection task. Local
    /// edits stay in the replica whatever their sync state.
    pub async fn close(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The task sees the flag (or the closed channel) and ends by itself.
        let _ = self.shutdown.send(true);
    }
}
