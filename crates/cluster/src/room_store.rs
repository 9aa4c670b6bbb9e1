//! `JetStreamRoomStore`: the relay's [`RoomStore`] over the JetStream [`RoomLog`], the room
//! storage of `weaver serve --cluster`.
//!
//! Owns: mapping the log's operations and errors onto the relay's storage contract. A refused
//! expectation ([`LogError::Fenced`]) becomes [`StoreError::Fenced`] (the room actor steps
//! down; the store is not failed); a refused compaction stays a refusal; everything else
//! the engine breaks is a `Read` or `Write` failure with the engine's error inside.
//!
//! Tips. The log appends only after a tip it read itself ([`LogError::NotLoaded`] otherwise).
//! This store remembers, for every room a relay actor loaded, the last seq that actor knows;
//! when the log lost the tip (a room appended to before any load, a lane dropped by an unload
//! racing a new load) the store reads the room again and writes only if its last seq is still
//! the one the actor knows, else the actor is fenced. Listings read rooms through a second
//! log, so they never move the tip an owner's appends are fenced against.
//!
//! Takeover. `load` is what the relay calls on the node that owns the room (after placing it),
//! so it loads through [`RoomLog::take_over`]: the takeover record it writes fences every
//! stale owner's append at once. With [`Claims`] (cluster mode) the record carries this node's
//! lease epoch, and a room this node holds no lease on (a change feed resuming on a node that
//! does not own the room) is only read; without, every load takes over (epoch 0). A lost tip
//! is re-read only if this node's takeover is still the room's latest one.
//!
//! Must not know: sockets, yrs, leases (which node may own a room is the placement's).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use weaver_relay::store::{
    Detail, NewVersion, Retention, RoomStore, StoreError, StoredRoom, StoredRoomInfo, VersionMeta,
};

use crate::claims::Claims;
use crate::error::{LogError, TakenOver, VersionError};
use crate::room_log::{self, RoomLog, RoomLogConfig, TakeoverId};
use crate::versions::{Added, VersionStore};

/// Rooms whose stats one listing reads at once.
const LIST_READS_IN_FLIGHT: usize = 8;

/// The relay's room storage on JetStream.
#[derive(Debug)]
pub struct JetStreamRoomStore {
    /// Loads and writes of room actors.
    log: RoomLog,
    /// Reads for listings (its own lanes, forgotten after each read).
    reader: RoomLog,
    /// What the actor of each loaded room knows. Locked only to read or write an entry.
    known: Mutex<HashMap<Arc<str>, Known>>,
    /// The leases this node holds (cluster mode); `None`: every load takes over, at epoch 0.
    claims: Option<Claims>,
    stopped: AtomicBool,
    /// Document versions of every room (versions.rs).
    versions: VersionStore,
}

/// What a room's actor knows of the room.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// The room's last seq.
    seq: u64,
    /// This node's takeover of the room, if its load wrote one.
    takeover: Option<TakeoverId>,
}

impl JetStreamRoomStore {
    /// Opens the room log's streams (creating them if missing) on `client`.
    pub async fn open(
        client: async_nats::Client,
        cfg: RoomLogConfig,
    ) -> Result<JetStreamRoomStore, LogError> {
        let js = crate::connect::jetstream(client.clone(), cfg.request_timeout);
        let versions = VersionStore::open(&js, &cfg.stream_prefix, cfg.replicas)
            .await
            .map_err(|e| LogError::Versions(Box::new(e)))?;
        let log = RoomLog::open(client.clone(), cfg.clone()).await?;
        let reader = RoomLog::open(client, cfg).await?;
        Ok(JetStreamRoomStore {
            log,
            reader,
            known: Mutex::new(HashMap::new()),
            claims: None,
            stopped: AtomicBool::new(false),
            versions,
        })
    }

    /// Takes rooms over with the lease epochs in `claims` (shared with `LeasePlacement`), and
    /// only rooms this node holds a lease on.
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = Some(claims);
        self
    }

    /// The room log underneath (tests, diagnostics).
    pub fn log(&self) -> &RoomLog {
        &self.log
    }

    fn known(&self, room: &str) -> Option<Known> {
        self.known.lock().ok().and_then(|k| k.get(room).copied())
    }

    /// The room's last seq as its actor knows it now (its takeover stays).
    fn set_known(&self, room: &Arc<str>, seq: u64) {
        if let Ok(mut k) = self.known.lock() {
            k.entry(room.clone())
                .and_modify(|known| known.seq = seq)
                .or_insert(Known {
                    seq,
                    takeover: None,
                });
        }
    }

    fn set_taken_over(&self, room: &Arc<str>, seq: u64, takeover: TakeoverId) {
        if let Ok(mut k) = self.known.lock() {
            k.insert(
                room.clone(),
                Known {
                    seq,
                    takeover: Some(takeover),
                },
            );
        }
    }

    /// Loads the room to own it: reads it and writes a takeover record (see the module doc).
    async fn take_over(&self, room: &Arc<str>) -> Result<room_log::StoredRoom, LogError> {
        let (epoch, node) = match &self.claims {
            None => (0, Arc::from("")),
            Some(claims) => match claims.epoch(room) {
                Some(epoch) => (epoch, claims.node_id()),
                None => return self.log.load(room.clone()).await,
            },
        };
        let (stored, takeover) = self.log.take_over(room.clone(), epoch, node).await?;
        self.set_taken_over(room, last_seq(&stored), takeover);
        Ok(stored)
    }

    fn drop_known(&self, room: &str) {
        if let Ok(mut k) = self.known.lock() {
            k.remove(room);
        }
    }

    async fn load_room(&self, room: Arc<str>) -> Result<StoredRoom, StoreError> {
        let stored = self.take_over(&room).await.map_err(|e| {
            if e.is_fenced() {
                StoreError::Fenced(Box::new(e))
            } else {
                read_error(e)
            }
        })?;
        self.set_known(&room, last_seq(&stored));
        Ok(relay_room(stored))
    }

    /// Called when the log lost the room's tip: reads it again and goes on only if nobody
    /// wrote since what the actor knows (no seq it does not know, no takeover but its own).
    /// A room written before any load is taken over first.
    async fn reread_tip(&self, room: &Arc<str>) -> Result<(), StoreError> {
        let before = self.known(room);
        let stored = match before.and_then(|k| k.takeover) {
            Some(takeover) => self.log.resume(room.clone(), takeover).await,
            None => self.take_over(room).await,
        }
        .map_err(write_error)?;
        let found = last_seq(&stored);
        match before.map(|k| k.seq) {
            Some(known) if known != found => Err(StoreError::Fenced(Box::new(TakenOver {
                room: room.to_string(),
                known,
                found,
            }))),
            _ => {
                self.set_known(room, found);
                Ok(())
            }
        }
    }

    async fn append_room(&self, room: Arc<str>, updates: Vec<Bytes>) -> Result<u64, StoreError> {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let first = self
            .log
            .append_with_id(room.clone(), updates.clone(), msg_id.clone())
            .await;
        let seq = match first {
            Err(LogError::NotLoaded { .. }) => {
                self.reread_tip(&room).await?;
                self.log
                    .append_with_id(room.clone(), updates, msg_id)
                    .await
                    .map_err(write_error)?
            }
            other => other.map_err(write_error)?,
        };
        self.set_known(&room, seq);
        Ok(seq)
    }

    async fn compact_room(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), StoreError> {
        match self
            .log
            .compact(room.clone(), upto_seq, snapshot.clone())
            .await
        {
            Err(LogError::NotLoaded { .. }) => {
                self.reread_tip(&room).await?;
                self.log
                    .compact(room, upto_seq, snapshot)
                    .await
                    .map_err(write_error)
            }
            other => other.map_err(write_error),
        }
    }

    async fn list_rooms(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> Result<Vec<StoredRoomInfo>, StoreError> {
        let rooms = self.log.rooms().await.map_err(read_error)?;
        let page = rooms
            .into_iter()
            .filter(|r| r.name.starts_with(&prefix))
            .filter(|r| after.as_ref().is_none_or(|a| r.name.as_str() > a.as_str()))
            .take(limit);
        if detail == Detail::Seq {
            return Ok(page
                .map(|r| StoredRoomInfo {
                    name: r.name,
                    last_seq: r.last_seq,
                    ..StoredRoomInfo::default()
                })
                .collect());
        }
        let infos: Vec<Result<StoredRoomInfo, StoreError>> = futures_util::stream::iter(page)
            .map(|r| async move {
                let name: Arc<str> = Arc::from(r.name.as_str());
                let read = self.reader.load(name.clone()).await;
                self.reader.forget(&name);
                let stored = read.map_err(read_error)?;
                let last = last_seq(&stored).max(r.last_seq);
                let stored = relay_room(stored);
                Ok(StoredRoomInfo {
                    name: r.name,
                    last_seq: last,
                    snapshot_seq: stored.snapshot_seq,
                    snapshot_bytes: stored.snapshot.as_ref().map_or(0, |s| s.len() as u64),
                    log_updates: stored.tail.len() as u64,
                    log_bytes: stored.tail_bytes(),
                })
            })
            .buffered(LIST_READS_IN_FLIGHT)
            .collect()
            .await;
        infos.into_iter().collect()
    }
}

impl RoomStore for JetStreamRoomStore {
    fn load(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.load_room(room).boxed()
    }

    fn read_room(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        async move {
            let stored = self.log.load(room).await.map_err(read_error)?;
            Ok(relay_room(stored))
        }
        .boxed()
    }

    fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> BoxFuture<'_, Result<u64, Arc<StoreError>>> {
        async move { self.append_room(room, updates).await.map_err(Arc::new) }.boxed()
    }

    fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        async move {
            self.compact_room(room, upto_seq, snapshot)
                .await
                .map_err(Arc::new)
        }
        .boxed()
    }

    fn delete(&self, room: Arc<str>) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        async move {
            let r = self.log.delete(room.clone()).await;
            self.drop_known(&room);
            r.map_err(|e| Arc::new(write_error(e)))?;
            self.versions
                .delete(&room)
                .await
                .map_err(|e| Arc::new(version_error(e)))
        }
        .boxed()
    }

    fn rooms(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        async move {
            let rooms = self.log.rooms().await.map_err(read_error)?;
            Ok(rooms.into_iter().map(|r| r.name).collect())
        }
        .boxed()
    }

    fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> BoxFuture<'_, Result<Vec<StoredRoomInfo>, StoreError>> {
        self.list_rooms(prefix, after, limit, detail).boxed()
    }

    fn add_version(
        &self,
        room: Arc<str>,
        version: NewVersion,
        retention: Retention,
    ) -> BoxFuture<'_, Result<VersionMeta, Arc<StoreError>>> {
        async move {
            if self.stopped.load(Ordering::SeqCst) {
                return Err(Arc::new(StoreError::Stopped));
            }
            match self.versions.add(&room, &version, &retention).await {
                Ok(Added::Stored(meta)) => Ok(meta),
                Ok(Added::StaleBase) => Err(Arc::new(StoreError::VersionRefused {
                    room: room.to_string(),
                    base: version.base.unwrap_or_default(),
                })),
                Err(e) => Err(Arc::new(version_error(e))),
            }
        }
        .boxed()
    }

    fn versions(&self, room: Arc<str>) -> BoxFuture<'_, Result<Vec<VersionMeta>, StoreError>> {
        async move { self.versions.list(&room).await.map_err(StoreError::read) }.boxed()
    }

    fn version_data(
        &self,
        room: Arc<str>,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        async move {
            match self.versions.data(&room, &ids).await {
                Ok(Ok(data)) => Ok(data),
                Ok(Err(id)) => Err(StoreError::VersionMissing {
                    room: room.to_string(),
                    id,
                }),
                Err(e) => Err(StoreError::read(e)),
            }
        }
        .boxed()
    }

    /// True while the connection to NATS is down (not sticky: it clears on reconnect).
    fn failed(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst) && self.log.failed()
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        async move {
            self.stopped.store(true, Ordering::SeqCst);
            self.log.stop().await;
            self.reader.stop().await;
        }
        .boxed()
    }

    fn unloaded(&self, room: &str) {
        self.drop_known(room);
        self.log.forget(room);
    }
}

/// The highest seq the room ever had (a tombstone's too, so a re-created room's first append
/// is checked against it).
fn last_seq(stored: &room_log::StoredRoom) -> u64 {
    stored
        .tail
        .last()
        .map_or(stored.snapshot_seq, |(seq, _)| *seq)
}

/// The log's room in the relay's shape. Without a snapshot nothing is covered by
/// `snapshot_seq` (the log sets it to a deleted room's last seq): the relay sees 0.
pub(crate) fn relay_room(stored: room_log::StoredRoom) -> StoredRoom {
    let snapshot_seq = if stored.snapshot.is_some() {
        stored.snapshot_seq
    } else {
        0
    };
    StoredRoom {
        snapshot: stored.snapshot,
        snapshot_seq,
        tail: stored.tail,
    }
}

fn read_error(e: LogError) -> StoreError {
    match e {
        LogError::Stopped => StoreError::Stopped,
        e => StoreError::read(e),
    }
}

/// Another writer changing the room's versions is a takeover, like a fenced append.
fn version_error(e: VersionError) -> StoreError {
    match e {
        VersionError::Conflict { .. } => StoreError::Fenced(Box::new(e)),
        e => StoreError::write(e),
    }
}

fn write_error(e: LogError) -> StoreError {
    match e {
        LogError::Stopped => StoreError::Stopped,
        e if e.is_fenced() => StoreError::Fenced(Box::new(e)),
        LogError::CompactionRefused { room, reason, .. } => StoreError::CompactionRefused {
            room,
            reason: reason.to_owned(),
        },
        e => StoreError::write(e),
    }
}
