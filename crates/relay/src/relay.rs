//! `Relay` (start/stop), `RelayHandle` (the API the HTTP layer and the bridge use) and the room
//! registry (name → room actor, lazy load, unload handshake).
//!
//! Deliberately not here: socket handling (connection.rs), document logic (room.rs), storage
//! (store/, reached only through the `RoomStore` trait), HTTP routing (http.rs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{ROOM_INBOX, RelayConfig};
use crate::error::RelayError;
use crate::room::{self, ConnLink, RoomCmd, RoomMsg};
use crate::store::RoomStore;

/// Capacity of the room-deletion broadcast (deletions are rare; a lagging subscriber resyncs).
pub const DELETIONS_CAPACITY: usize = 1024;
/// Capacity of the room-unload broadcast. A lagging subscriber only misses hints (see
/// [`RelayHandle::subscribe_unloads`]).
pub const UNLOADS_CAPACITY: usize = 4096;
/// How often a request is retried when it races with a room unloading.
const ROOM_RETRIES: usize = 5;

/// Who produced a committed update.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOrigin {
    /// A WebSocket connection (its relay-local id, as in the logs' `conn` field).
    Client { conn_id: u64 },
    /// `POST /api/rooms/{room}/update`.
    Http,
    /// [`RelayHandle::apply_update`]; the string is the caller's origin tag (e.g. `"bridge"`).
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
}

pub(crate) struct Shared {
    pub store: Arc<dyn RoomStore>,
    pub config: RelayConfig,
    pub events: crate::events::EventBus,
    /// Names of rooms deleted through [`RelayHandle::delete_room`], after their content is gone.
    pub deletions: broadcast::Sender<Arc<str>>,
    /// Names of rooms that left memory because they were idle.
    pub unloads: broadcast::Sender<Arc<str>>,
    /// Cancelled when the relay shuts down; rooms and connections watch it.
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
    rooms: Mutex<HashMap<Arc<str>, RoomEntry>>,
    /// One permit per open WebSocket connection (moved into the connection task).
    pub conn_permits: Arc<tokio::sync::Semaphore>,
    /// One permit per open change feed (moved into the feed's stream).
    pub feed_permits: Arc<tokio::sync::Semaphore>,
    /// Bounds concurrent room loads.
    pub load_permits: tokio::sync::Semaphore,
    /// Connections per room and room awareness budgets (limits.rs).
    pub gates: crate::limits::RoomGates,
    /// Built once from the configured keys: every request clones its `Arc`s, not the keys.
    pub authenticator: crate::auth::Authenticator,
    next_id: AtomicU64,
    ready: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct RoomEntry {
    generation: u64,
    tx: mpsc::Sender<RoomMsg>,
}

/// A loaded room's inbox, as handed out by the registry.
#[derive(Clone, Debug)]
pub(crate) struct RoomHandle {
    pub tx: mpsc::Sender<RoomMsg>,
}

/// Keeps the `keep` smallest items of `v` by `key` (in no particular order).
fn smallest<T, K: Ord>(v: &mut Vec<T>, keep: usize, key: impl Fn(&T) -> K) {
    if v.len() > keep {
        v.select_nth_unstable_by_key(keep, |x| key(x));
        v.truncate(keep);
    }
}

/// Largest page of [`RelayHandle::list_rooms`].
pub const MAX_ROOM_PAGE: usize = 1000;

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoomInfo {
    pub name: String,
    /// The highest update seq ever stored in the room (0: nothing stored).
    pub last_seq: u64,
    /// Seq the room's snapshot covers (0: not compacted yet).
    pub snapshot_seq: u64,
    /// Snapshot plus log bytes (document bytes, not counting the store's own overhead).
    pub stored_bytes: u64,
    /// Updates logged after the snapshot, and their bytes: what the next compaction folds in.
    pub log_updates: u64,
    pub log_bytes: u64,
    /// Whether the room is in memory now.
    pub loaded: bool,
    /// Open WebSocket connections.
    pub connections: usize,
}

/// One page of [`RelayHandle::list_rooms`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RoomPage {
    pub rooms: Vec<RoomInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Who is in a room right now (`GET /api/rooms/{room}/awareness`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Presence {
    /// Open WebSocket connections.
    pub connections: usize,
    /// Live awareness states (removed ones are left out), by client id.
    pub clients: Vec<PresenceClient>,
}

/// One awareness state, as the client set it (`awareness.setLocalState(…)`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PresenceClient {
    pub client_id: u64,
    pub clock: u64,
    pub state: serde_json::Value,
}

/// Cloneable handle to a running relay: the API of the HTTP layer and of the bridge.
#[derive(Clone, Debug)]
pub struct RelayHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A running relay: room actors over a room store.
#[derive(Debug)]
pub struct Relay {
    handle: RelayHandle,
}

impl Relay {
    /// Starts the relay over `store` (`weaver serve` builds a [`crate::RedbRoomStore`]); the
    /// relay stops the store in [`Relay::shutdown`]. Rooms start lazily. Cancelling `shutdown`
    /// closes every connection with 1012; call [`Relay::shutdown`] to wait for the flush.
    pub fn start(
        store: Arc<dyn RoomStore>,
        config: RelayConfig,
        shutdown: CancellationToken,
    ) -> Result<Relay, RelayError> {
        let config = config.validate().map_err(RelayError::Internal)?;
        let events = crate::events::EventBus::new(
            crate::events::EVENTS_MAX_QUEUED,
            crate::events::EVENTS_MAX_QUEUED_BYTES,
        );
        let (deletions, _) = broadcast::channel(DELETIONS_CAPACITY);
        let (unloads, _) = broadcast::channel(UNLOADS_CAPACITY);
        let shared = Arc::new(Shared {
            conn_permits: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
            feed_permits: Arc::new(tokio::sync::Semaphore::new(config.max_change_feeds)),
            load_permits: tokio::sync::Semaphore::new(config.limits.max_concurrent_loads),
            gates: crate::limits::RoomGates::default(),
            authenticator: crate::auth::Authenticator::with_previous(
                config.auth.key.clone(),
                config.auth.previous_keys.clone(),
            ),
            store,
            config,
            events,
            deletions,
            unloads,
            cancel: shutdown,
            tracker: TaskTracker::new(),
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            ready: AtomicBool::new(true),
        });
        Ok(Relay {
            handle: RelayHandle { shared },
        })
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// The relay's routes (WebSocket rooms, health, room HTTP API); merge others into it.
    pub fn router(&self) -> axum::Router {
        crate::http::router(self.handle.clone())
    }

    /// Stops the relay: marks it not ready, cancels the shutdown token (if not already), waits
    /// up to the configured timeout for rooms to finish in-flight persists and close their
    /// connections, then stops the store after it committed everything queued.
    pub async fn shutdown(self) {
        let shared = self.handle.shared.clone();
        shared.ready.store(false, Ordering::SeqCst);
        shared.cancel.cancel();
        shared.tracker.close();
        if tokio::time::timeout(shared.config.shutdown_timeout, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!("rooms did not stop within the shutdown timeout");
        }
        shared.store.stop().await;
        info!("relay stopped");
    }
}

/// The alphabet of room names (and of listing prefixes).
pub(crate) fn room_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// Room names: 1–128 characters of `[A-Za-z0-9._~-]`, not `.`/`..` and not a reserved top-level
/// path (including the web demo's files). Names are keys, never file paths.
pub fn validate_room_name(room: &str) -> Result<(), RelayError> {
    const RESERVED: &[&str] = &[
        "api",
        "assets",
        "healthz",
        "readyz",
        "metrics",
        "index.html",
        "sw.js",
        ".",
        "..",
    ];
    let ok = !room.is_empty()
        && room.len() <= 128
        && room.bytes().all(room_name_byte)
        && !RESERVED.contains(&room);
    if ok {
        Ok(())
    } else {
        let shown: String = room.chars().take(140).collect();
        Err(RelayError::InvalidRoomName(shown))
    }
}

impl RelayHandle {
    /// Receives every update after its durable commit, from all rooms and all origins. A
    /// subscriber that falls behind by more than [`crate::EVENTS_MAX_QUEUED`] events or
    /// [`crate::EVENTS_MAX_QUEUED_BYTES`] bytes gets `RecvError::Lagged` and must resync (e.g. with
    /// [`RelayHandle::room_state`]).
    pub fn subscribe(&self) -> crate::events::EventReceiver {
        self.shared.events.subscribe()
    }

    /// Receives the name of every room deleted by [`RelayHandle::delete_room`], published after
    /// its stored content is gone (so a consumer mirroring rooms, like the bridge, can forget
    /// the room instead of writing old content back into it). Separate from [`Self::subscribe`]
    /// so update consumers are unaffected; a consumer needing both should `select!` over them.
    pub fn subscribe_deletions(&self) -> broadcast::Receiver<Arc<str>> {
        self.shared.deletions.subscribe()
    }

    /// Receives the name of every room the relay unloaded because it sat idle (no connection
    /// for the idle-unload time), after its last update was published to [`Self::subscribe`].
    /// A hint for consumers that keep per-room state (the bridge's mirrors) to let it go with
    /// the room; nothing is lost if it is missed (lagging) or ignored.
    pub fn subscribe_unloads(&self) -> broadcast::Receiver<Arc<str>> {
        self.shared.unloads.subscribe()
    }

    /// Validates, applies, persists and broadcasts a v1 update to `room` (loading it if
    /// needed). Returns once the update is durable. `origin` becomes
    /// [`UpdateOrigin::Internal`] in the published [`CommittedUpdate`].
    pub async fn apply_update(
        &self,
        room: &str,
        update: Vec<u8>,
        origin: &str,
    ) -> Result<(), RelayError> {
        self.apply_with_origin(
            room,
            Bytes::from(update),
            UpdateOrigin::Internal(Arc::from(origin)),
        )
        .await
    }

    pub(crate) async fn apply_with_origin(
        &self,
        room: &str,
        update: Bytes,
        origin: UpdateOrigin,
    ) -> Result<(), RelayError> {
        validate_room_name(room)?;
        if update.len() > self.shared.config.max_message_bytes {
            return Err(RelayError::TooLarge {
                size: update.len(),
                limit: self.shared.config.max_message_bytes,
            });
        }
        let stats =
            weaver_protocol::validate_update_v1(&update, &weaver_protocol::UpdateLimits::default())
                .map_err(|e| RelayError::InvalidUpdate(e.to_string()))?;
        if stats.subdocs > 0 {
            return Err(RelayError::InvalidUpdate(
                crate::connection::SUBDOCS_REFUSED.to_string(),
            ));
        }
        self.request(room, |reply| RoomCmd::Apply {
            req: Box::new((update.clone(), origin.clone())),
            reply,
        })
        .await
    }

    /// The room's whole state as one v1 update (loads the room if needed).
    pub async fn room_state(&self, room: &str) -> Result<Vec<u8>, RelayError> {
        self.state_diff(room, None).await
    }

    /// What a peer with state vector `sv` (v1 encoded) lacks, as a v1 update.
    pub async fn state_diff(&self, room: &str, sv: Option<Vec<u8>>) -> Result<Vec<u8>, RelayError> {
        validate_room_name(room)?;
        if let Some(sv) = &sv {
            weaver_protocol::validate_state_vector(sv)
                .map_err(|e| RelayError::InvalidStateVector(e.to_string()))?;
        }
        let sv = sv.map(Bytes::from);
        self.request(room, |reply| RoomCmd::State {
            sv: sv.clone(),
            reply,
        })
        .await
    }

    /// Names of every room with stored content.
    pub async fn stored_rooms(&self) -> Result<Vec<String>, RelayError> {
        Ok(self.shared.store.rooms().await?)
    }

    /// One page of the rooms whose names start with `prefix` and sort (bytewise) after
    /// `after`: every room with stored content and every room open right now (loaded or with
    /// a connection), at most `limit` (1–[`MAX_ROOM_PAGE`]) of them. `next` is the `after` of the
    /// following page, `None` on the last one.
    pub async fn list_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage, RelayError> {
        let limit = limit.clamp(1, MAX_ROOM_PAGE);
        let in_page = |name: &str| name.starts_with(prefix) && after.is_none_or(|a| name > a);
        let stored = self
            .shared
            .store
            .list(
                prefix.to_owned(),
                after.map(str::to_owned),
                limit + 1,
                crate::store::Detail::Full,
            )
            .await?;
        let mut connections: Vec<(Arc<str>, usize)> =
            self.shared.gates.connections(in_page).into_iter().collect();
        let mut loaded: Vec<Arc<str>> = self
            .shared
            .rooms
            .lock()
            .map(|m| m.keys().filter(|n| in_page(n)).cloned().collect())
            .unwrap_or_default();
        // Only the `limit + 1` smallest open names can be on this page.
        smallest(&mut loaded, limit + 1, |n| n.clone());
        smallest(&mut connections, limit + 1, |(n, _)| n.clone());
        // Both sources are sorted and each holds the `limit + 1` smallest names it knows, so
        // the smallest `limit + 1` of their union are exact.
        let mut by_name: std::collections::BTreeMap<String, RoomInfo> = stored
            .into_iter()
            .map(|s| {
                let info = RoomInfo {
                    name: s.name.clone(),
                    last_seq: s.last_seq,
                    snapshot_seq: s.snapshot_seq,
                    stored_bytes: s.snapshot_bytes + s.log_bytes,
                    log_updates: s.log_updates,
                    log_bytes: s.log_bytes,
                    loaded: false,
                    connections: 0,
                };
                (s.name, info)
            })
            .collect();
        let blank = |name: &str| RoomInfo {
            name: name.to_owned(),
            ..RoomInfo::default()
        };
        for name in &loaded {
            by_name
                .entry(name.to_string())
                .or_insert_with(|| blank(name))
                .loaded = true;
        }
        for (name, n) in &connections {
            by_name
                .entry(name.to_string())
                .or_insert_with(|| blank(name))
                .connections = *n;
        }
        let mut rooms: Vec<RoomInfo> = by_name.into_values().take(limit + 1).collect();
        let next = if rooms.len() > limit {
            rooms.truncate(limit);
            rooms.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok(RoomPage { rooms, next })
    }

    /// The highest update seq stored in `room` (0: nothing stored). Reads the store only:
    /// never loads the room. Every committed update raises it, so "has `room` changed since
    /// seq N" is `room_seq(room) != N` (deleting a room resets it to 0).
    pub async fn room_seq(&self, room: &str) -> Result<u64, RelayError> {
        validate_room_name(room)?;
        let found = self.room_seqs(room, None, 1).await?;
        Ok(found
            .first()
            .filter(|(name, _)| name == room)
            .map_or(0, |(_, seq)| *seq))
    }

    /// `(name, last seq)` of up to `limit` stored rooms starting with `prefix`, after `after`,
    /// in name order: [`Self::list_rooms`] without the per-room statistics, one lookup per room,
    /// for scans over every room.
    pub async fn room_seqs(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, RelayError> {
        let found = self
            .shared
            .store
            .list(
                prefix.to_owned(),
                after.map(str::to_owned),
                limit,
                crate::store::Detail::Seq,
            )
            .await?;
        Ok(found.into_iter().map(|r| (r.name, r.last_seq)).collect())
    }

    /// The room's connections and awareness states. Never loads the room: one that is not in
    /// memory has nobody in it.
    pub async fn presence(&self, room: &str) -> Result<Presence, RelayError> {
        validate_room_name(room)?;
        if self.shared.cancel.is_cancelled() {
            return Err(RelayError::ShuttingDown);
        }
        let tx = self
            .shared
            .rooms
            .lock()
            .map_err(|_| RelayError::Internal("room registry poisoned".into()))?
            .get(room)
            .map(|e| e.tx.clone());
        let Some(tx) = tx else {
            return Ok(Presence::default());
        };
        let (reply, rx) = oneshot::channel();
        if tx
            .send(Box::new(RoomCmd::Presence { reply }))
            .await
            .is_err()
        {
            return Ok(Presence::default());
        }
        // No answer: the room unloaded, was deleted or shut down meanwhile.
        let Ok(found) = rx.await else {
            if self.shared.cancel.is_cancelled() {
                return Err(RelayError::ShuttingDown);
            }
            return Ok(Presence::default());
        };
        // Parsed here, not in the room's task: a room full of large states must not make its
        // editors wait for a presence reader. Each state was checked as JSON on receipt; one
        // serde_json still cannot read is passed on as its text rather than dropped.
        let mut clients: Vec<PresenceClient> = found
            .states
            .into_iter()
            .map(|(client_id, clock, state)| PresenceClient {
                client_id,
                clock,
                state: serde_json::from_str(&state).unwrap_or(serde_json::Value::String(state)),
            })
            .collect();
        clients.sort_unstable_by_key(|c| c.client_id);
        Ok(Presence {
            connections: found.connections,
            clients,
        })
    }

    /// Closes the room's connections with 4410, deletes its stored content and publishes the
    /// room's name to [`Self::subscribe_deletions`].
    pub async fn delete_room(&self, room: &str) -> Result<(), RelayError> {
        validate_room_name(room)?;
        self.request(room, |reply| RoomCmd::Delete { reply }).await
    }

    /// True while the store is open and the relay is serving (false once shutdown began).
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::SeqCst) && !self.shared.cancel.is_cancelled()
    }

    /// True once a commit failed: the store refuses writes until the process restarts.
    pub fn store_failed(&self) -> bool {
        self.shared.store.failed()
    }

    /// Number of rooms currently loaded in memory.
    pub fn loaded_rooms(&self) -> usize {
        self.shared.rooms.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request to the room's actor, retrying when it raced with an unload.
    async fn request<T>(
        &self,
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
                    if self.shared.cancel.is_cancelled() {
                        return Err(RelayError::ShuttingDown);
                    }
                    continue;
                }
                Ok(r) => return r,
            }
        }
        Err(RelayError::Unavailable(room.to_owned()))
    }

    /// Joins a connection to a room; on success the room has queued step1 (and awareness)
    /// to the connection.
    pub(crate) async fn join(&self, room: &str, link: ConnLink) -> Result<RoomHandle, RelayError> {
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
                    if self.shared.cancel.is_cancelled() {
                        return Err(RelayError::ShuttingDown);
                    }
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Err(RelayError::Unavailable(room.to_owned()))
    }

    /// The room's inbox, spawning its actor (which loads from storage first) if not loaded.
    fn room(&self, room: &str) -> Result<RoomHandle, RelayError> {
        if self.shared.cancel.is_cancelled() {
            return Err(RelayError::ShuttingDown);
        }
        let mut rooms = self
            .shared
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
        let (tx, rx) = mpsc::channel(ROOM_INBOX);
        rooms.insert(
            name.clone(),
            RoomEntry {
                generation,
                tx: tx.clone(),
            },
        );
        let span = info_span!(parent: None, "room", room = %name);
        self.shared
            .tracker
            .spawn(room::run(self.clone(), name, generation, rx).instrument(span));
        Ok(RoomHandle { tx })
    }

    /// Removes the room from the registry if `generation` is still its current actor. With
    /// `only_if_idle`, refuses (returns false) when commands are already queued, so an idle
    /// unload never strands a request that was sent after the room looked idle.
    pub(crate) fn unregister(
        &self,
        name: &str,
        generation: u64,
        rx: &mpsc::Receiver<RoomMsg>,
        only_if_idle: bool,
    ) -> bool {
        let Ok(mut rooms) = self.shared.rooms.lock() else {
            return false;
        };
        if only_if_idle && !rx.is_empty() {
            return false;
        }
        if rooms.get(name).map(|e| e.generation) == Some(generation) {
            rooms.remove(name);
            shrink_if_sparse(&mut rooms);
        }
        true
    }
}

/// Gives back a map's memory once it is mostly empty: a `HashMap` keeps the capacity of its
/// largest size forever, so after a storm of rooms or connections the registry would hold the
/// peak's table while idle. Shrinking to twice the length keeps it amortised O(1) per removal.
pub(crate) fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::shrink_if_sparse;

    #[test]
    fn a_map_emptied_after_a_storm_gives_its_table_back() {
        let mut m: HashMap<u32, [u8; 64]> = HashMap::new();
        for i in 0..10_000 {
            m.insert(i, [0; 64]);
        }
        let peak = m.capacity();
        for i in 0..10_000 {
            m.remove(&i);
            shrink_if_sparse(&mut m);
        }
        assert!(
            m.capacity() <= 64,
            "capacity {} left of {peak}",
            m.capacity()
        );
        // Small maps are left alone (no churn for a handful of rooms).
        let mut small: HashMap<u32, u32> = (0..20).map(|i| (i, i)).collect();
        let cap = small.capacity();
        small.clear();
        shrink_if_sparse(&mut small);
        assert_eq!(small.capacity(), cap);
    }
}
