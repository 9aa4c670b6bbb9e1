//! `Relay` (start/stop) and `RelayHandle`, the public API of the relay for the binary, the bridge
//! adapter and the notifier: room reads and writes, listings, presence, deletion, and the relay
//! event stream. It wires the parts together and hands each only what it needs: room actors get
//! `RoomDeps` through the registry, connections `ConnDeps`, change feeds `FeedDeps`, the auth
//! layer the `Authenticator` (as axum sub-states of the router's `RelayHandle` state).
//!
//! Deliberately not here: socket handling (connection.rs), document logic (room/), storage
//! (store/, reached only through the `RoomStore` trait), HTTP routing (routes.rs).

use std::sync::Arc;

use axum::extract::FromRef;
use bytes::Bytes;
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admit::admit_update;
use crate::auth::Authenticator;
use crate::config::RelayConfig;
use crate::connection::ConnDeps;
use crate::error::RelayError;
use crate::events::{EventBus, EventReceiver, UpdateOrigin};
use crate::feed::FeedDeps;
use crate::history::VersionInfo;
use crate::limits::RoomGates;
use crate::room::{Registry, Restored, RoomCmd, RoomDeps, RoomHandle};
use crate::room_name::validate_room_name;
use crate::store::RoomStore;

pub(crate) struct Shared {
    rooms: Arc<Registry>,
    conns: ConnDeps,
    feeds: FeedDeps,
    /// Built once from the configured keys: every request clones its `Arc`s, not the keys.
    authenticator: Authenticator,
}

/// Only the configuration, as the room registry shows it: the rest is live state.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("rooms", &self.rooms)
            .finish_non_exhaustive()
    }
}

/// Keeps the `keep` smallest items of `v` by `key` (in no particular order).
fn smallest<T, K: Ord>(v: &mut Vec<T>, keep: usize, key: impl Fn(&T) -> K) {
    if v.len() > keep {
        v.select_nth_unstable_by_key(keep, |x| key(x));
        v.truncate(keep);
    }
}

/// Longest label of a version, in bytes.
pub const MAX_VERSION_LABEL: usize = 256;

/// Largest page of [`RelayHandle::list_rooms`].
pub const MAX_ROOM_PAGE: usize = 1000;

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RoomPage {
    pub rooms: Vec<RoomInfo>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
    /// Cluster mode: ids of live nodes that did not answer in time, so `loaded` and
    /// `connections` of rooms running there may be missing from this page (listing.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<String>,
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
    shared: Arc<Shared>,
}

impl FromRef<RelayHandle> for ConnDeps {
    fn from_ref(relay: &RelayHandle) -> Self {
        relay.shared.conns.clone()
    }
}

impl FromRef<RelayHandle> for FeedDeps {
    fn from_ref(relay: &RelayHandle) -> Self {
        relay.shared.feeds.clone()
    }
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
        let events = EventBus::new(
            crate::events::EVENTS_MAX_QUEUED,
            crate::events::EVENTS_MAX_QUEUED_BYTES,
        );
        let authenticator = Authenticator::with_previous(
            config.auth.key.clone(),
            config.auth.previous_keys.clone(),
        );
        let conn_permits = Arc::new(Semaphore::new(config.max_connections));
        let feed_permits = Arc::new(Semaphore::new(config.max_change_feeds));
        let load_permits = Semaphore::new(config.limits.max_concurrent_loads);
        let rooms = Arc::new(Registry::new(RoomDeps {
            store,
            config,
            events,
            load_permits,
            cancel: shutdown,
        }));
        let shared = Arc::new(Shared {
            conns: ConnDeps {
                rooms: rooms.clone(),
                permits: conn_permits,
                gates: Arc::new(RoomGates::default()),
            },
            feeds: FeedDeps {
                rooms: rooms.clone(),
                permits: feed_permits,
            },
            rooms,
            authenticator,
        });
        Ok(Relay {
            handle: RelayHandle { shared },
        })
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Stops the relay: marks it not ready, cancels the shutdown token (if not already), waits
    /// for rooms to finish in-flight persists and close their connections, then stops the store
    /// after it committed everything queued. The whole of it takes at most the configured
    /// `shutdown_timeout`, whatever state the store is in: a failed or stuck engine (a full
    /// disk) must not keep the process alive after SIGTERM.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.handle.config().shutdown_timeout;
        let rooms = self.handle.shared.rooms.clone();
        let deps = rooms.deps();
        rooms.stop_serving();
        deps.cancel.cancel();
        rooms.tracker().close();
        if tokio::time::timeout_at(deadline, rooms.tracker().wait())
            .await
            .is_err()
        {
            warn!("rooms did not stop within the shutdown timeout");
        }
        if tokio::time::timeout_at(deadline, deps.store.stop())
            .await
            .is_err()
        {
            warn!(
                "the store did not stop within the shutdown timeout; what it had not committed is not acknowledged to anyone"
            );
            return;
        }
        info!("relay stopped");
    }
}

impl RelayHandle {
    fn store(&self) -> &Arc<dyn RoomStore> {
        &self.shared.rooms.deps().store
    }

    fn cancel(&self) -> &CancellationToken {
        &self.shared.rooms.deps().cancel
    }

    pub(crate) fn config(&self) -> &RelayConfig {
        &self.shared.rooms.deps().config
    }

    /// The relay event stream: every committed update (after its durable commit), every room
    /// deletion and every idle unload, from all rooms, in order per room (see [`RelayEvent`]).
    /// A subscriber that falls behind by more than [`crate::EVENTS_MAX_QUEUED`] events or
    /// [`crate::EVENTS_MAX_QUEUED_BYTES`] bytes gets `RecvError::Lagged` and must resync (e.g.
    /// with [`RelayHandle::room_state`]).
    ///
    /// [`RelayEvent`]: crate::RelayEvent
    pub fn subscribe(&self) -> EventReceiver {
        self.shared.rooms.deps().events.subscribe()
    }

    /// The relay's token checker, e.g. to put other parts' cross-room routes behind
    /// [`Authenticator::require_admin`].
    pub fn authenticator(&self) -> Authenticator {
        self.shared.authenticator.clone()
    }

    /// Validates, applies, persists and broadcasts a v1 update to `room` (loading it if
    /// needed). Returns once the update is durable. `origin` becomes
    /// [`UpdateOrigin::Internal`] in the published [`crate::CommittedUpdate`].
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
        admit_update(&update, self.config().max_message_bytes)?;
        self.shared
            .rooms
            .request(room, |reply| RoomCmd::Apply {
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
        self.shared.rooms.state_diff(room, sv).await
    }

    /// Names of every room with stored content.
    pub async fn stored_rooms(&self) -> Result<Vec<String>, RelayError> {
        Ok(self.store().rooms().await?)
    }

    /// Whether `needle` may occur in `room`'s stored bytes (its snapshot and log), read from the
    /// store without loading the room: `false` means none of its committed updates holds it.
    /// The bridge's start-up sweep asks this of every stored room instead of loading each.
    pub async fn stored_bytes_contain(
        &self,
        room: &str,
        needle: &[u8],
    ) -> Result<bool, RelayError> {
        validate_room_name(room)?;
        Ok(self
            .store()
            .stored_bytes_contain(Arc::from(room), needle.to_vec())
            .await?)
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
        let open = self.open_rooms(prefix, after, limit);
        self.list_rooms_with(prefix, after, limit, open).await
    }

    /// The rooms open on this node (loaded, or with a connection) whose names start with
    /// `prefix` and sort after `after`: the `limit + 1` smallest names, with only `name`,
    /// `loaded` and `connections` set. What a node adds to a listing of stored rooms, its own
    /// or (cluster mode) another node's.
    pub(crate) fn open_rooms(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<RoomInfo> {
        let limit = limit.clamp(1, MAX_ROOM_PAGE);
        let in_page = |name: &str| name.starts_with(prefix) && after.is_none_or(|a| name > a);
        let mut connections: Vec<(Arc<str>, usize)> = self
            .shared
            .conns
            .gates
            .connections(in_page)
            .into_iter()
            .collect();
        let mut loaded: Vec<Arc<str>> = self.shared.rooms.loaded(in_page);
        // Only the `limit + 1` smallest open names can be on this page.
        smallest(&mut loaded, limit + 1, |n| n.clone());
        smallest(&mut connections, limit + 1, |(n, _)| n.clone());
        let mut by_name: std::collections::BTreeMap<Arc<str>, RoomInfo> = Default::default();
        let blank = |name: &str| RoomInfo {
            name: name.to_owned(),
            ..RoomInfo::default()
        };
        for name in loaded {
            by_name
                .entry(name.clone())
                .or_insert_with(|| blank(&name))
                .loaded = true;
        }
        for (name, n) in connections {
            by_name
                .entry(name.clone())
                .or_insert_with(|| blank(&name))
                .connections = n;
        }
        by_name.into_values().take(limit + 1).collect()
    }

    /// [`Self::list_rooms`] over the stored rooms and `open`: the open rooms of this node and
    /// (cluster mode) of the others, each list the `limit + 1` smallest names its node knows
    /// ([`Self::open_rooms`]). A room loaded somewhere shows that node's connections (the
    /// owner counts the clients forwarded to it too), else the most any node counts.
    pub(crate) async fn list_rooms_with(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        open: Vec<RoomInfo>,
    ) -> Result<RoomPage, RelayError> {
        let limit = limit.clamp(1, MAX_ROOM_PAGE);
        let stored = self
            .store()
            .list(
                prefix.to_owned(),
                after.map(str::to_owned),
                limit + 1,
                crate::store::Detail::Full,
            )
            .await?;
        // Every source is sorted and holds the `limit + 1` smallest names it knows, so the
        // smallest `limit + 1` of their union are exact.
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
        let in_page = |name: &str| name.starts_with(prefix) && after.is_none_or(|a| name > a);
        for o in open.into_iter().filter(|o| in_page(&o.name)) {
            let entry = by_name.entry(o.name.clone()).or_insert_with(|| RoomInfo {
                name: o.name.clone(),
                ..RoomInfo::default()
            });
            match (entry.loaded, o.loaded) {
                (false, true) => entry.connections = o.connections,
                (false, false) | (true, true) => {
                    entry.connections = entry.connections.max(o.connections);
                }
                (true, false) => {}
            }
            entry.loaded |= o.loaded;
        }
        let mut rooms: Vec<RoomInfo> = by_name.into_values().take(limit + 1).collect();
        let next = if rooms.len() > limit {
            rooms.truncate(limit);
            rooms.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok(RoomPage {
            rooms,
            next,
            unreachable: Vec::new(),
        })
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
            .store()
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
        if self.cancel().is_cancelled() {
            return Err(RelayError::ShuttingDown);
        }
        let Some(RoomHandle { tx }) = self.shared.rooms.loaded_inbox(room)? else {
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
            if self.cancel().is_cancelled() {
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

    /// Closes the room's connections with 4410, deletes its stored content and publishes
    /// `RelayEvent::Deleted` on the event stream ([`Self::subscribe`]).
    pub async fn delete_room(&self, room: &str) -> Result<(), RelayError> {
        validate_room_name(room)?;
        self.shared
            .rooms
            .request(room, |reply| RoomCmd::Delete { reply })
            .await
    }

    /// Stores the room's current document as an explicit version (loads the room if needed).
    pub async fn create_version(
        &self,
        room: &str,
        label: Option<String>,
    ) -> Result<VersionInfo, RelayError> {
        validate_room_name(room)?;
        if label.as_ref().is_some_and(|l| l.len() > MAX_VERSION_LABEL) {
            return Err(RelayError::InvalidQuery(format!(
                "label: at most {MAX_VERSION_LABEL} bytes"
            )));
        }
        let meta = self
            .shared
            .rooms
            .request(room, |reply| RoomCmd::TakeVersion {
                label: label.clone(),
                reply,
            })
            .await?;
        Ok(VersionInfo::from(&meta))
    }

    /// The room's versions, newest first (automatic, explicit and pre-restore ones). Reads the
    /// store only: never loads the room.
    pub async fn versions(&self, room: &str) -> Result<Vec<VersionInfo>, RelayError> {
        validate_room_name(room)?;
        crate::history::list(self.store(), room).await
    }

    /// The document at version `id` of the room as one v1 update (never loads the room).
    pub async fn version_state(&self, room: &str, id: &str) -> Result<Vec<u8>, RelayError> {
        validate_room_name(room)?;
        crate::history::version_state(self.store(), room, id).await
    }

    /// Restores version `id`: the room's state before is saved as a version, then every map
    /// root the version has gets the version's content through one forward update, committed
    /// and broadcast like any other (connected clients see it live).
    pub async fn restore_version(&self, room: &str, id: &str) -> Result<Restored, RelayError> {
        validate_room_name(room)?;
        self.shared
            .rooms
            .request(room, |reply| RoomCmd::Restore {
                id: id.to_owned(),
                reply,
            })
            .await
    }

    /// The room's owner when it is another node (cluster mode); `None` when the room is (or
    /// will be) served here. Never takes ownership and never loads the room.
    pub async fn remote_owner(
        &self,
        room: &str,
    ) -> Result<Option<crate::placement::RemoteOwner>, RelayError> {
        if self.shared.rooms.loaded_inbox(room)?.is_some() {
            return Ok(None);
        }
        self.config()
            .placement
            .owner(room)
            .await
            .map_err(|e| RelayError::Placement(Arc::new(e)))
    }

    /// True while the store is open and the relay is serving (false once shutdown began).
    pub fn is_ready(&self) -> bool {
        self.shared.rooms.is_ready()
    }

    /// True once a commit failed: the store refuses writes until the process restarts.
    pub fn store_failed(&self) -> bool {
        self.store().failed()
    }

    /// Names of the rooms loaded in memory right now (their actors run on this process), in
    /// byte order.
    pub fn loaded_room_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .shared
            .rooms
            .loaded(|_| true)
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        names
    }

    /// Number of rooms currently loaded in memory.
    pub fn loaded_rooms(&self) -> usize {
        self.shared.rooms.len()
    }

    /// The room-load limit (tests saturate it).
    #[cfg(test)]
    pub(crate) fn load_permits(&self) -> &Semaphore {
        &self.shared.rooms.deps().load_permits
    }
}
