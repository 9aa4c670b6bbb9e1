//! Room storage: the [`RoomStore`] trait, the one seam through which room actors and the relay
//! reach stored rooms, and the data it speaks in ([`StoredRoom`], [`StoredRoomInfo`]).
//!
//! Owns: what every storage engine must guarantee (the contract on [`RoomStore`]), checked once
//! for every engine by the conformance suite in `contract.rs` (feature `contract-tests`).
//! Engines live in sub-folders: `redb/` is the one `weaver serve` builds. Deliberately not
//! here: yrs documents (updates and snapshots are opaque bytes), sockets, rooms' memory.

#[cfg(feature = "contract-tests")]
pub mod contract;
mod error;
pub mod redb;
pub mod versions;
#[cfg(feature = "contract-tests")]
pub mod wrapped;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub use error::{EngineError, StoreError};
pub use versions::{NewVersion, Retention, VersionKind, VersionMeta};

/// Durable storage of rooms: each room is an optional snapshot plus a log of updates, numbered
/// by a per-room seq. Used as `Arc<dyn RoomStore>`; every method may be called concurrently.
///
/// The contract every engine keeps (ARCHITECTURE.md, "Invariants"; checked by
/// `store::contract`):
///
/// - **Durable on acknowledgement.** When [`append`](Self::append) resolves `Ok(seq)`, the
///   updates survive a crash of the process (and of the machine, as far as the engine's
///   medium allows): the relay broadcasts them only after that. An `Err` acknowledges nothing.
/// - **Seqs.** Within a room, seqs start at 1 and every append's updates get the next
///   consecutive seqs, in order; `append` returns the last one. Seqs are strictly increasing
///   and never reused, not across restarts and not after a compaction that emptied the log.
///   Only [`delete`](Self::delete) ends a room: the next append starts a new room, which
///   loads without anything of the old one. Its seqs start over at 1 (redb) or continue above
///   the deleted room's (JetStream, whose tombstone keeps the last seq); either way they are
///   strictly increasing within the new room's life (consumers tell the two rooms apart by the
///   deletion, e.g. weaver-notify's generation).
/// - **Load is complete.** [`load`](Self::load) returns every acknowledged update of the room,
///   either inside the snapshot (`seq <= snapshot_seq`) or in the tail, in seq order.
/// - **Compaction is atomic and never loses data.** [`compact`](Self::compact) replaces the
///   snapshot and drops the log up to `upto_seq` in one step, or refuses with
///   [`StoreError::CompactionRefused`] (and changes nothing) when `upto_seq` is beyond the
///   room's last seq or below the seq of its existing snapshot.
/// - **Listing** sees exactly the rooms with stored content (appended to and not deleted since),
///   in byte order of their names.
/// - **Failure is reported.** Once a write failed because of the engine (not a refusal),
///   [`failed`](Self::failed) is true and the relay answers `/readyz` with 503. The redb
///   engine keeps it true until the process restarts (redb refuses writes after an I/O
///   error); an engine that recovers by itself (JetStream, once NATS is reachable again) may
///   clear it.
/// - **Fencing.** An engine shared by several nodes refuses a write made after another writer
///   appended to the room with [`StoreError::Fenced`]: not a failure of the store; the room's
///   actor steps down.
/// - **Stop** commits what was queued before it and releases the engine; later writes fail with
///   [`StoreError::Stopped`]. Stopping twice is harmless.
/// - **Versions** ([`add_version`](Self::add_version)) are kept per room beside its log and
///   snapshot: compaction does not touch them, they survive restarts, and
///   [`delete`](Self::delete) removes them with the room. Ids start at 1 and grow by one per
///   added version, never reused while the room lives. A version with a `base` is refused
///   ([`StoreError::VersionRefused`], nothing written) unless `base` is the room's newest row.
///   In the same atomic write the engine applies the [`Retention`] (`versions::retire`:
///   unlists) and removes the rows no listed version needs (`versions::removable`); a row a
///   listed version chains through stays readable, unlisted.
/// - The relay issues a room's appends one at a time (its actor awaits each); a compaction of
///   the room may run alongside them, and other rooms' requests run concurrently.
pub trait RoomStore: Send + Sync + std::fmt::Debug + 'static {
    /// The room's snapshot and the log entries after it. A room never stored (or deleted) is
    /// `StoredRoom::default()`.
    fn load(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>>;

    /// What [`load`](Self::load) returns, for a reader that does not run the room (a resumed
    /// change feed): an engine whose load prepares the room's writes (a cluster's takeover)
    /// reads without doing so here. The default is `load`, for engines whose load only reads.
    fn read_room(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.load(room)
    }

    /// Appends `updates` (non-empty, v1 encoded) to the room's log, durably. Returns the seq of
    /// the last one once it is durable.
    fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> BoxFuture<'_, Result<u64, Arc<StoreError>>>;

    /// Replaces the room's snapshot with `snapshot` (the merged document of every update
    /// `<= upto_seq`) and drops the log entries it covers, atomically.
    fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Arc<StoreError>>>;

    /// Deletes everything stored for the room.
    fn delete(&self, room: Arc<str>) -> BoxFuture<'_, Result<(), Arc<StoreError>>>;

    /// Names of every room with stored content, in no particular order.
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// Whether `needle` may occur in the room's stored bytes (snapshot and log), read without
    /// loading the room. `false` must mean it is in none of them; an engine that cannot scan
    /// cheaply keeps the default `true` (its callers then load the room to find out).
    fn stored_bytes_contain(
        &self,
        _room: Arc<str>,
        _needle: Vec<u8>,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(std::future::ready(Ok(true)))
    }

    /// Up to `limit` stored rooms whose names start with `prefix` and sort (bytewise) after
    /// `after`, in byte order of the name, with what each one holds. One consistent picture
    /// even while rooms are written.
    fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> BoxFuture<'_, Result<Vec<StoredRoomInfo>, StoreError>>;

    /// True once a write failed in the engine; stays true until the process restarts.
    fn failed(&self) -> bool;

    /// Commits everything queued so far and stops the engine; later writes fail with
    /// [`StoreError::Stopped`].
    fn stop(&self) -> BoxFuture<'_, ()>;

    /// Stores a version of the room (see the contract above) and returns its row.
    fn add_version(
        &self,
        room: Arc<str>,
        version: NewVersion,
        retention: Retention,
    ) -> BoxFuture<'_, Result<VersionMeta, Arc<StoreError>>>;

    /// Every stored version row of the room, listed or not, in ascending id.
    fn versions(&self, room: Arc<str>) -> BoxFuture<'_, Result<Vec<VersionMeta>, StoreError>>;

    /// The data of the rows `ids`, in that order, from one consistent read. A row that is not
    /// stored is [`StoreError::VersionMissing`].
    fn version_data(
        &self,
        room: Arc<str>,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>>;

    /// The room's actor ended (idle, deleted, failed, shutdown): an engine that keeps per-room
    /// state for loaded rooms (a cluster engine's tip and task) may drop it. The next `load`
    /// starts afresh.
    fn unloaded(&self, _room: &str) {}
}

/// A room as stored: the latest snapshot (if any) and the log entries after it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    pub snapshot: Option<Vec<u8>>,
    /// Seq the snapshot covers (0: no snapshot).
    pub snapshot_seq: u64,
    /// `(seq, update)` in seq order, all > `snapshot_seq`.
    pub tail: Vec<(u64, Vec<u8>)>,
}

impl StoredRoom {
    /// Bytes of the updates in the tail.
    pub fn tail_bytes(&self) -> u64 {
        self.tail.iter().map(|(_, u)| u.len() as u64).sum()
    }
}

/// How much [`RoomStore::list`] reads per room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Only `name` and `last_seq` (the rest stays 0): cheap, for scans over every room.
    Seq,
    /// Everything in [`StoredRoomInfo`].
    Full,
}

/// What one room holds in storage (`GET /api/rooms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRoomInfo {
    pub name: String,
    /// The highest seq ever assigned in the room.
    pub last_seq: u64,
    /// Seq the snapshot covers (0: no snapshot yet).
    pub snapshot_seq: u64,
    pub snapshot_bytes: u64,
    /// Updates logged after the snapshot, and their bytes: what the next compaction folds in.
    pub log_updates: u64,
    pub log_bytes: u64,
}
