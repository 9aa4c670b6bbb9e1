//! The room registry: room name → the inbox of its actor. Starts an actor on first use (it loads
//! the room before answering), sends commands with a retry when they race with an unload, and
//! takes a room out again (the unload handshake: an idle room leaves only if nothing was queued
//! meanwhile, and announces `Unloaded` while the registry is locked, so the room's next actor
//! cannot publish anything before it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use super::RoomDeps;
use super::cmd::{ConnLink, RoomCmd, RoomMsg};
use super::inbox::{InboxReceiver, InboxSender, inbox};
use crate::config::ROOM_INBOX;
use crate::error::RelayError;
use crate::events::RelayEvent;
use crate::maps::shrink_if_sparse;

/// How often a request is retried when it races with a room unloading.
const ROOM_RETRIES: usize = 5;

struct RoomEntry {
    generation: u64,
    tx: InboxSender<RoomMsg>,
}

/// A loaded room's inbox, as handed out by the registry.
#[derive(Clone, Debug)]
pub(crate) struct RoomHandle {
    pub tx: InboxSender<RoomMsg>,
}

/// Every loaded room, and what their actors are started with.
pub(crate) struct Registry {
    deps: Arc<RoomDeps>,
    /// Room actors and connections: shutdown waits (bounded) for them.
    tracker: TaskTracker,
    rooms: Mutex<HashMap<Arc<str>, RoomEntry>>,
    /// Ids of connections, change feeds and room generations (one sequence, as in the logs).
    next_id: AtomicU64,
    /// Cleared when shutdown begins.
    ready: AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("deps", &self.deps)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn new(deps: RoomDeps) -> Self {
        Self {
            deps: Arc::new(deps),
            tracker: TaskTracker::new(),
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            ready: AtomicBool::new(true),
        }
    }

    pub(crate) fn deps(&self) -> &Arc<RoomDeps> {
        &self.deps
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// True while the relay is serving (false once shutdown began).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.deps.cancel.is_cancelled()
    }

    /// Shutdown began: refuse new work.
    pub(crate) fn stop_serving(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    /// Number of rooms currently loaded.
    pub(crate) fn len(&self) -> usize {
        self.rooms.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Names of the loaded rooms that pass `filter`.
    pub(crate) fn loaded(&self, filter: impl Fn(&str) -> bool) -> Vec<Arc<str>> {
        self.rooms
            .lock()
            .map(|m| m.keys().filter(|n| filter(n)).cloned().collect())
            .unwrap_or_default()
    }

    /// The room's inbox if it is loaded; never loads it.
    pub(crate) fn loaded_inbox(&self, room: &str) -> Result<Option<RoomHandle>, RelayError> {
        Ok(self
            .rooms
            .lock()
            .map_err(|_| RelayError::Internal("room registry poisoned".into()))?
            .get(room)
            .map(|e| RoomHandle { tx: e.tx.clone() }))
    }

    /// Sends a request to the room's actor, retrying when it raced with an unload.
    pub(crate) async fn request<T>(
        self: &Arc<Self>,
        room: &str,
        make: impl Fn(oneshot::Sender<Result<T, RelayError>>) -> RoomCmd,
    ) -> Result<T, RelayError> {
        for _ in 0..ROOM_RETRIES {
            let h = self.room(room)?;
            let (tx, rx) = oneshot::channel();
            if h.tx.send(Box::new(make(tx))).await.is_err() {
                continue;
            }
            match rx.await {
                Ok(Err(RelayError::Unavailable(_))) | Err(_) => {
                    if self.deps.cancel.is_cancelled() {
                        return Err(RelayError::ShuttingDown);
                    }
                    continue;
                }
                Ok(r) => return r,
            }
        }
        Err(RelayError::Unavailable(room.to_owned()))
    }

    /// What a peer with state vector `sv` (v1 encoded; `None`: nothing) lacks, as a v1 update
    /// (loads the room if needed).
    pub(crate) async fn state_diff(
        self: &Arc<Self>,
        room: &str,
        sv: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, RelayError> {
        if let Some(sv) = &sv {
            weaver_protocol::validate_state_vector(sv)
                .map_err(|e| RelayError::InvalidStateVector(e.to_string()))?;
        }
        let sv = sv.map(bytes::Bytes::from);
        self.request(room, |reply| RoomCmd::State {
            sv: sv.clone(),
            reply,
        })
        .await
    }

    /// Joins a connection to a room; on success the room has queued step1 (and awareness)
    /// to the connection.
    pub(crate) async fn join(
        self: &Arc<Self>,
        room: &str,
        link: ConnLink,
    ) -> Result<RoomHandle, RelayError> {
        for _ in 0..ROOM_RETRIES {
            let h = self.room(room)?;
            let (tx, rx) = oneshot::channel();
            if h.tx
                .send(Box::new(RoomCmd::Join {
                    link: link.clone(),
                    reply: tx,
                }))
                .await
                .is_err()
            {
                continue;
            }
            match rx.await {
                Ok(Ok(())) => return Ok(h),
                Ok(Err(RelayError::Unavailable(_))) | Err(_) => {
                    if self.deps.cancel.is_cancelled() {
                        return Err(RelayError::ShuttingDown);
                    }
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Err(RelayError::Unavailable(room.to_owned()))
    }

    /// Starts the room's actor here if it is not loaded (it places and loads the room; one
    /// placed on another node ends at once). For what follows a room on this node.
    /// Starts the room if needed and returns once its actor has loaded it (in cluster mode:
    /// placed it here; [`RelayError::Remote`] when another node owns it).
    pub(crate) async fn wait_loaded(self: &Arc<Self>, room: &str) -> Result<(), RelayError> {
        self.request(room, |reply| RoomCmd::Loaded { reply }).await
    }

    /// The room's inbox, spawning its actor (which loads from storage first) if not loaded.
    fn room(self: &Arc<Self>, room: &str) -> Result<RoomHandle, RelayError> {
        if self.deps.cancel.is_cancelled() {
            return Err(RelayError::ShuttingDown);
        }
        let mut rooms = self
            .rooms
            .lock()
            .map_err(|_| RelayError::Internal("room registry poisoned".into()))?;
        if let Some(e) = rooms.get(room)
            && !e.tx.is_closed()
        {
            return Ok(RoomHandle { tx: e.tx.clone() });
        }
        let name: Arc<str> = Arc::from(room);
        let generation = self.next_id();
        let (tx, rx) = inbox(ROOM_INBOX);
        rooms.insert(
            name.clone(),
            RoomEntry {
                generation,
                tx: tx.clone(),
            },
        );
        let span = info_span!(parent: None, "room", room = %name);
        self.tracker
            .spawn(super::actor::run(self.clone(), name, generation, rx).instrument(span));
        Ok(RoomHandle { tx })
    }

    /// Removes the room from the registry if `generation` is still its current actor. With
    /// `only_if_idle` (an idle unload), refuses (returns false) when commands are already
    /// queued, so an idle unload never strands a request that was sent after the room looked
    /// idle; when it goes, `Unloaded` is published before the lock is released.
    pub(crate) fn unregister(
        &self,
        name: &Arc<str>,
        generation: u64,
        rx: &InboxReceiver<RoomMsg>,
        only_if_idle: bool,
    ) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        if only_if_idle && !rx.is_empty() {
            return false;
        }
        if rooms.get(name).map(|e| e.generation) == Some(generation) {
            rooms.remove(name);
            shrink_if_sparse(&mut rooms);
        }
        if only_if_idle {
            self.deps
                .events
                .publish(RelayEvent::Unloaded { room: name.clone() });
        }
        true
    }
}
