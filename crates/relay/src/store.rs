//! The relay's redb tables: per-room update log, snapshots, room index, and the one persister
//! thread that performs every relay write (group commit).
//!
//! Owns: table definitions and row encodings (described in docs/storage.md), loading a room
//! (snapshot + log tail), and the writer thread. Reads run on tokio's blocking pool; writes are
//! queued to the persister, which drains everything queued into ONE write transaction per fsync
//! (`Durability::Immediate`) and then answers each request. Only this file opens `relay_*`
//! tables. Deliberately not here: yrs documents (the bytes are opaque), sockets, rooms.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::metrics as m;

/// `(room, seq)` → `[FORMAT_V1] ++ v1 update`. Seqs are per room, strictly increasing, never reused.
pub(crate) const UPDATES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("relay_updates");
/// `room` → `[FORMAT_V1] ++ last_seq (u64 LE) ++ v1 update of the merged state up to last_seq`.
pub(crate) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("relay_snapshots");
/// `room` → a lower bound of the highest seq ever assigned in the room, exact whenever the log
/// holds no row above it (after compaction emptied the log). The room's last seq is the larger
/// of this and its last log key (`last_seq`). Written at a room's first append and at
/// compaction only, so an ordinary append touches one table (fewer pages per commit).
pub(crate) const ROOMS: TableDefinition<&str, u64> = TableDefinition::new("relay_rooms");
/// Global facts: `format` → `[STORAGE_FORMAT]`.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("relay_meta");

/// Leading byte of every log and snapshot row.
const FORMAT_V1: u8 = 1;
/// Version of the table layout as a whole, kept in `relay_meta`. 1: `relay_rooms` held the
/// exact last seq, rewritten on every append. 2: it is a lower bound (see `ROOMS`). A version 1
/// database is valid version 2 data and is upgraded in place at open; binaries that know only
/// version 1 refuse a version 2 database, which matters: they would take the stale
/// `relay_rooms` value as the last seq and overwrite log rows.
const STORAGE_FORMAT: u8 = 2;
const STORAGE_FORMAT_V1: u8 = 1;
/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "weaver.redb";
/// Upper bound on requests folded into one write transaction: keeps a single commit's latency
/// and memory bounded when thousands of rooms write at once.
const MAX_GROUP_OPS: usize = 4096;
/// Upper bound on update bytes folded into one write transaction.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Depth of the persister's request queue; senders wait (backpressure) when it is full.
const PERSIST_QUEUE: usize = 8192;

/// How the persister commits. Both are `Durability::Immediate` (durable when commit returns);
/// docs/storage.md says why one-phase is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// redb's two-phase commit (two fsyncs): also defeats an attacker who controls the order
    /// in which the disk writes pages, can crash the machine during the fsync, and knows the
    /// database contents well enough to forge an XXH3 collision.
    TwoPhase,
    /// One fsync per commit (1PC + checksum, redb's own default): a torn commit after a crash
    /// fails its checksums and is rolled back to the previous commit. The default: the fsync is
    /// the fan-out latency, and nothing unacknowledged is lost either way.
    #[default]
    OnePhase,
}

/// Errors of storage operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // The inner error is shown in the message and deliberately not exposed as `source()`:
    // error chains (anyhow `{:#}`) would otherwise print it twice.
    #[error("storage error: {0}")]
    Redb(redb::Error),
    #[error("cannot prepare data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error("the persister has stopped")]
    Stopped,
    #[error("corrupt row in {table} for room {room}: {reason}")]
    Corrupt {
        table: &'static str,
        room: String,
        reason: &'static str,
    },
    #[error(
        "the database has relay storage format {found:?}, this binary knows formats 1 and {STORAGE_FORMAT}: \
         run the version that wrote it, or restore a backup taken before the upgrade"
    )]
    UnknownFormat { found: Vec<u8> },
    #[error("refused compaction of room {room}: {reason}")]
    CompactionRefused { room: String, reason: String },
    #[error(
        "the database file {path} is damaged ({detail}); restore a backup \
         (docs/operations.md, \"Backup and restore\")"
    )]
    Damaged { path: String, detail: String },
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Redb(e)
    }
}

fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(e.into())
}

/// Opens (or creates) `<data_dir>/weaver.redb`, creating the directory if needed, with every
/// page checked (see [`open_database_with_cache`]). The returned database is meant to be
/// shared: the bridge opens its own `bridge_*` tables in the same file.
pub fn open_database(data_dir: &Path) -> Result<Arc<Database>, StoreError> {
    open_database_with_cache(data_dir, crate::DEFAULT_STORE_CACHE_BYTES, true)
}

/// [`open_database`] with an explicit page cache size: redb keeps every page it reads or
/// writes in this cache (its own default is 1 GiB), so it bounds what the store adds to the
/// server's memory as the database grows. With `check`, every page's checksum is verified at
/// open: a file damaged outside redb (disk, a bad copy or restore) is refused with
/// [`StoreError::Damaged`], where redb's plain open trusts it and may panic on the first read.
/// The check reads the whole file (about 0.3 s for 500 MB from the page cache).
pub fn open_database_with_cache(
    data_dir: &Path,
    cache_bytes: usize,
    check: bool,
) -> Result<Arc<Database>, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|error| StoreError::DataDir {
        path: data_dir.display().to_string(),
        error,
    })?;
    let path = data_dir.join(DB_FILE_NAME);
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .set_check_integrity_on_open(check)
        .create(&path)
        .map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)) => {
                StoreError::Damaged {
                    path: path.display().to_string(),
                    detail,
                }
            }
            e => redb_err(e),
        })?;
    Ok(Arc::new(db))
}

/// Copies every relay table from `src` into `dst`: the relay's part of an online backup. A read
/// transaction is a consistent snapshot, so a backup taken while rooms are written holds one
/// committed state, never a torn one (copying the file of a running server does not: redb may
/// rewrite pages while the copy reads them). Returns the names of the tables copied; a table
/// never created yet is skipped.
pub fn copy_tables(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
) -> Result<Vec<String>, StoreError> {
    let mut copied = Vec::new();
    copy_table(src, dst, META, &mut copied)?;
    copy_table(src, dst, ROOMS, &mut copied)?;
    copy_table(src, dst, SNAPSHOTS, &mut copied)?;
    copy_table(src, dst, UPDATES, &mut copied)?;
    Ok(copied)
}

// The bridge has the same dozen lines for its tables (`weaver_bridge::outbox::copy_tables`): the
// two crates must not depend on each other, and redb opens a table only through its typed
// definition, which each crate keeps private. Crates built on the relay (weaver-notify) use
// this one.
/// Copies table `def` from `src` to `dst` (absent in `src`: nothing) and records its name.
pub fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<(), StoreError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(redb_err(e)),
    };
    let mut to = dst.open_table(def).map_err(redb_err)?;
    for row in from.iter().map_err(redb_err)? {
        let (k, v) = row.map_err(redb_err)?;
        to.insert(k.value(), v.value()).map_err(redb_err)?;
    }
    copied.push(redb::TableHandle::name(&def).to_owned());
    Ok(())
}

/// A room as stored: the latest snapshot (if any) and the log entries after it.
#[derive(Debug, Default)]
pub(crate) struct StoredRoom {
    pub snapshot: Option<Vec<u8>>,
    pub snapshot_seq: u64,
    /// `(seq, update)` in seq order, all > `snapshot_seq`.
    pub tail: Vec<(u64, Vec<u8>)>,
}

impl StoredRoom {
    pub fn tail_bytes(&self) -> u64 {
        self.tail.iter().map(|(_, u)| u.len() as u64).sum()
    }
}

enum StoreOp {
    Append {
        room: Arc<str>,
        updates: Vec<Bytes>,
        reply: oneshot::Sender<Result<u64, Arc<StoreError>>>,
    },
    Compact {
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
    },
    Delete {
        room: Arc<str>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
    },
    /// Commit everything queued before this, then exit the persister.
    Stop { reply: oneshot::Sender<()> },
}

/// Handle to the relay's storage. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Arc<Database>,
    tx: mpsc::Sender<StoreOp>,
    /// Set for good once a group commit fails: redb refuses every later write after an I/O
    /// error until the database is reopened, i.e. the process restarted.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

/// Joins the persister thread. Dropping every [`Store`] clone lets it finish the queue and exit.
#[derive(Debug)]
pub(crate) struct PersisterThread(std::thread::JoinHandle<()>);

impl PersisterThread {
    /// Blocks until the persister has committed everything queued and exited.
    pub fn join(self) {
        if self.0.join().is_err() {
            error!("persister thread panicked");
        }
    }
}

impl std::fmt::Debug for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreOp::Append { room, updates, .. } => {
                write!(f, "Append({room}, {} updates)", updates.len())
            }
            StoreOp::Compact { room, upto_seq, .. } => write!(f, "Compact({room}, {upto_seq})"),
            StoreOp::Delete { room, .. } => write!(f, "Delete({room})"),
            StoreOp::Stop { .. } => write!(f, "Stop"),
        }
    }
}

impl Store {
    /// Creates the relay tables if missing and starts the persister thread.
    pub(crate) fn start(
        db: Arc<Database>,
        commit: CommitMode,
    ) -> Result<(Store, PersisterThread), StoreError> {
        let txn = db.begin_write().map_err(redb_err)?;
        {
            txn.open_table(UPDATES).map_err(redb_err)?;
            txn.open_table(SNAPSHOTS).map_err(redb_err)?;
            txn.open_table(ROOMS).map_err(redb_err)?;
            let mut meta = txn.open_table(META).map_err(redb_err)?;
            let existing = meta
                .get("format")
                .map_err(redb_err)?
                .map(|v| v.value().to_vec());
            match existing.as_deref() {
                None | Some([STORAGE_FORMAT_V1]) => {
                    if existing.is_some() {
                        info!("upgrading relay storage format 1 -> 2 (no data rewritten)");
                    }
                    meta.insert("format", [STORAGE_FORMAT].as_slice())
                        .map_err(redb_err)?;
                }
                Some([STORAGE_FORMAT]) => {}
                Some(found) => {
                    return Err(StoreError::UnknownFormat {
                        found: found.to_vec(),
                    });
                }
            }
        }
        txn.commit().map_err(redb_err)?;
        let (tx, rx) = mpsc::channel(PERSIST_QUEUE);
        let thread_db = db.clone();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_failed = failed.clone();
        metrics::gauge!(m::STORE_FAILED).set(0.0);
        let handle = std::thread::Builder::new()
            .name("weaver-persister".into())
            .spawn(move || persister_loop(thread_db, rx, commit, thread_failed))
            .map_err(|error| StoreError::DataDir {
                path: "persister thread".into(),
                error,
            })?;
        Ok((Store { db, tx, failed }, PersisterThread(handle)))
    }

    /// Appends updates to a room's log in one durable commit (shared with whatever else is
    /// queued). Returns the seq of the last appended update once it is on disk.
    pub(crate) async fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> Result<u64, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StoreOp::Append {
            room,
            updates,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }

    /// Replaces the room's snapshot and deletes log entries `<= upto_seq`, in one transaction.
    pub(crate) async fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StoreOp::Compact {
            room,
            upto_seq,
            snapshot,
            reply,
        })
        .await?;
        rx.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }

    /// Deletes everything stored for a room.
    pub(crate) async fn delete(&self, room: Arc<str>) -> Result<(), Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(StoreOp::Delete { room, reply }).await?;
        rx.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }

    /// Commits everything queued so far and stops the persister; later writes fail with
    /// [`StoreError::Stopped`].
    pub(crate) async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(StoreOp::Stop { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// True once a group commit failed: every later write fails too until a restart.
    pub(crate) fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn send(&self, op: StoreOp) -> Result<(), Arc<StoreError>> {
        self.tx
            .send(op)
            .await
            .map_err(|_| Arc::new(StoreError::Stopped))
    }

    /// Reads a room's snapshot and log tail (blocking pool; never on the async workers).
    pub(crate) async fn load(&self, room: Arc<str>) -> Result<StoredRoom, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || load_blocking(&db, &room))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// Names of every room with stored content.
    pub(crate) async fn rooms(&self) -> Result<Vec<String>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(redb_err)?;
            let rooms = txn.open_table(ROOMS).map_err(redb_err)?;
            let mut out = Vec::new();
            for row in rooms.iter().map_err(redb_err)? {
                let (k, _) = row.map_err(redb_err)?;
                out.push(k.value().to_owned());
            }
            Ok(out)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
    /// Up to `limit` stored rooms whose names start with `prefix` and sort after `after`, in
    /// byte order of the name, with what each one holds on disk. One read transaction, so the
    /// page is a consistent picture even while rooms are written.
    pub(crate) async fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> Result<Vec<StoredRoomInfo>, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            list_blocking(&db, &prefix, after.as_deref(), limit, detail)
        })
        .await
        .map_err(|_| StoreError::Stopped)?
    }
}

/// How much [`Store::list`] reads per room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    /// Only `name` and `last_seq`: one lookup per room.
    Seq,
    /// Everything in [`StoredRoomInfo`]: also reads the snapshot row and every log row.
    Full,
}

/// What one room holds on disk (`GET /api/rooms`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoredRoomInfo {
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

fn list_blocking(
    db: &Database,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    detail: Detail,
) -> Result<Vec<StoredRoomInfo>, StoreError> {
    let txn = db.begin_read().map_err(redb_err)?;
    let rooms = txn.open_table(ROOMS).map_err(redb_err)?;
    let snaps = txn.open_table(SNAPSHOTS).map_err(redb_err)?;
    let log = txn.open_table(UPDATES).map_err(redb_err)?;
    let range = match after {
        Some(a) if a >= prefix => {
            rooms.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
        }
        _ => rooms.range::<&str>(prefix..),
    }
    .map_err(redb_err)?;
    let mut out = Vec::new();
    for row in range {
        if out.len() >= limit {
            break;
        }
        let (k, recorded) = row.map_err(redb_err)?;
        let name = k.value();
        if !name.starts_with(prefix) {
            break;
        }
        let mut info = StoredRoomInfo {
            name: name.to_owned(),
            last_seq: recorded.value(),
            ..Default::default()
        };
        if detail == Detail::Seq {
            let logged = last_logged(&log, name)?;
            info.last_seq = info.last_seq.max(logged.unwrap_or(0));
            out.push(info);
            continue;
        }
        if let Some(v) = snaps.get(name).map_err(redb_err)? {
            // One unreadable row must not hide every room after it from the listing; loading
            // that room reports it as corrupt.
            match stored_snapshot(v.value(), name) {
                Ok((seq, bytes)) => {
                    info.snapshot_seq = seq;
                    info.snapshot_bytes = bytes.len() as u64;
                }
                Err(e) => {
                    warn!(room = name, error = %e, "listing a room whose snapshot row is unreadable")
                }
            }
        }
        for row in log.range((name, 0)..=(name, u64::MAX)).map_err(redb_err)? {
            let (k, v) = row.map_err(redb_err)?;
            info.last_seq = info.last_seq.max(k.value().1);
            info.log_updates += 1;
            info.log_bytes += v.value().len().saturating_sub(1) as u64;
        }
        out.push(info);
    }
    Ok(out)
}

pub(crate) fn load_blocking(db: &Database, room: &str) -> Result<StoredRoom, StoreError> {
    let txn = db.begin_read().map_err(redb_err)?;
    let snaps = txn.open_table(SNAPSHOTS).map_err(redb_err)?;
    let mut out = StoredRoom::default();
    if let Some(v) = snaps.get(room).map_err(redb_err)? {
        let (seq, bytes) = stored_snapshot(v.value(), room)?;
        out.snapshot_seq = seq;
        out.snapshot = Some(bytes.to_vec());
    }
    let log = txn.open_table(UPDATES).map_err(redb_err)?;
    let start = out.snapshot_seq.saturating_add(1);
    for row in log
        .range((room, start)..=(room, u64::MAX))
        .map_err(redb_err)?
    {
        let (k, v) = row.map_err(redb_err)?;
        let (_, seq) = k.value();
        match v.value().split_first() {
            Some((&FORMAT_V1, update)) => out.tail.push((seq, update.to_vec())),
            _ => {
                // A row we cannot read is skipped, not fatal: the rest of the room still loads.
                warn!(room, seq, "skipping log row with unknown format");
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
            }
        }
    }
    Ok(out)
}

fn encode_snapshot(seq: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 9);
    v.push(FORMAT_V1);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

/// [`decode_snapshot`], with the error that names the room when the row is unreadable.
fn stored_snapshot<'a>(v: &'a [u8], room: &str) -> Result<(u64, &'a [u8]), StoreError> {
    decode_snapshot(v).ok_or_else(|| StoreError::Corrupt {
        table: "relay_snapshots",
        room: room.to_owned(),
        reason: "bad snapshot row",
    })
}

fn decode_snapshot(v: &[u8]) -> Option<(u64, &[u8])> {
    let (&format, rest) = v.split_first()?;
    if format != FORMAT_V1 || rest.len() < 8 {
        return None;
    }
    let (seq, bytes) = rest.split_at(8);
    let seq = u64::from_le_bytes(seq.try_into().ok()?);
    Some((seq, bytes))
}

fn persister_loop(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<StoreOp>,
    commit: CommitMode,
    failed: Arc<std::sync::atomic::AtomicBool>,
) {
    info!("persister started");
    while let Some(first) = rx.blocking_recv() {
        let mut ops = Vec::new();
        let mut stop = None;
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            if let StoreOp::Stop { reply } = op {
                stop = Some(reply);
                break;
            }
            bytes += op_bytes(&op);
            ops.push(op);
            if ops.len() < MAX_GROUP_OPS && bytes < MAX_GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !ops.is_empty() {
            let started = Instant::now();
            let n = ops.len();
            if !commit_group(&db, ops, commit)
                && !failed.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                metrics::gauge!(m::STORE_FAILED).set(1.0);
                error!(
                    "the store refuses writes after this failure until the server is restarted (redb reopens and checks the file at start); /readyz now answers 503"
                );
            }
            metrics::histogram!(m::GROUP_COMMIT_OPS).record(n as f64);
            metrics::histogram!(m::GROUP_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        }
        if let Some(reply) = stop {
            rx.close();
            // Anything that slipped in after Stop is refused (its sender sees a dropped reply).
            while rx.try_recv().is_ok() {}
            let _ = reply.send(());
            break;
        }
    }
    info!("persister stopped");
}

fn op_bytes(op: &StoreOp) -> usize {
    match op {
        StoreOp::Append { updates, .. } => updates.iter().map(|u| u.len()).sum(),
        StoreOp::Compact { snapshot, .. } => snapshot.len(),
        StoreOp::Delete { .. } | StoreOp::Stop { .. } => 0,
    }
}

/// One request of a group: its work and where its answer goes, kept together so that a failure
/// anywhere in the group still answers every request.
enum Job {
    Append {
        room: Arc<str>,
        updates: Vec<Bytes>,
        reply: oneshot::Sender<Result<u64, Arc<StoreError>>>,
        /// The last seq written, once the work is done inside the transaction.
        done: Option<u64>,
    },
    Compact {
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
        /// `Some(Err(..))`: refused on its own, the rest of the group goes on.
        done: Option<Result<(), Arc<StoreError>>>,
    },
    Delete {
        room: Arc<str>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
        done: bool,
    },
}

/// Applies every op to one write transaction and commits once; returns whether it committed.
/// A storage error aborts the whole group and every request in it gets that error (nothing is
/// acknowledged); a semantic refusal (e.g. a compaction that would lose data) fails only its
/// own request.
fn commit_group(db: &Database, ops: Vec<StoreOp>, commit: CommitMode) -> bool {
    let mut jobs: Vec<Job> = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            StoreOp::Append {
                room,
                updates,
                reply,
            } => jobs.push(Job::Append {
                room,
                updates,
                reply,
                done: None,
            }),
            StoreOp::Compact {
                room,
                upto_seq,
                snapshot,
                reply,
            } => jobs.push(Job::Compact {
                room,
                upto_seq,
                snapshot,
                reply,
                done: None,
            }),
            StoreOp::Delete { room, reply } => jobs.push(Job::Delete {
                room,
                reply,
                done: false,
            }),
            // Never reaches a group: the persister splits groups at Stop.
            StoreOp::Stop { reply } => {
                let _ = reply.send(());
            }
        }
    }
    let result = (|| -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(redb_err)?;
        txn.set_two_phase_commit(commit == CommitMode::TwoPhase);
        txn.set_durability(redb::Durability::Immediate)
            .map_err(redb_err)?;
        {
            let mut log = txn.open_table(UPDATES).map_err(redb_err)?;
            let mut snaps = txn.open_table(SNAPSHOTS).map_err(redb_err)?;
            let mut rooms = txn.open_table(ROOMS).map_err(redb_err)?;
            for job in &mut jobs {
                match job {
                    Job::Append {
                        room,
                        updates,
                        done,
                        ..
                    } => {
                        let (mut seq, registered) = last_seq(&log, &rooms, room)?;
                        if !registered {
                            // The key makes the room one of `stored_rooms`; its value only
                            // needs to be a lower bound from now on.
                            rooms
                                .insert(&**room, seq + updates.len() as u64)
                                .map_err(redb_err)?;
                        }
                        let mut row = Vec::new();
                        for u in updates.iter() {
                            seq += 1;
                            row.clear();
                            row.push(FORMAT_V1);
                            row.extend_from_slice(u);
                            log.insert((&**room, seq), row.as_slice())
                                .map_err(redb_err)?;
                        }
                        *done = Some(seq);
                    }
                    Job::Compact {
                        room,
                        upto_seq,
                        snapshot,
                        done,
                        ..
                    } => {
                        let r = compact_in_txn(
                            &mut log, &mut snaps, &mut rooms, room, *upto_seq, snapshot,
                        );
                        *done = Some(match r {
                            Ok(()) => Ok(()),
                            Err(e @ StoreError::CompactionRefused { .. }) => Err(Arc::new(e)),
                            Err(e) => return Err(e),
                        });
                    }
                    Job::Delete { room, done, .. } => {
                        log.retain_in((&**room, 0)..=(&**room, u64::MAX), |_, _| false)
                            .map_err(redb_err)?;
                        snaps.remove(&**room).map_err(redb_err)?;
                        rooms.remove(&**room).map_err(redb_err)?;
                        *done = true;
                    }
                }
            }
        }
        txn.commit().map_err(redb_err)?;
        Ok(())
    })();
    let failure = match result {
        Ok(()) => None,
        Err(e) => {
            error!(error = %e, "group commit failed; nothing in the group was persisted");
            metrics::counter!(m::PERSIST_FAILURES_TOTAL).increment(1);
            Some(Arc::new(e))
        }
    };
    // After a commit every job is done; `Stopped` only guards the impossible.
    let stopped = || Arc::new(StoreError::Stopped);
    for job in jobs {
        match job {
            Job::Append { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None => done.ok_or_else(stopped),
                });
            }
            Job::Compact { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None => done.unwrap_or_else(|| Err(stopped())),
                });
            }
            Job::Delete { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None if done => Ok(()),
                    None => Err(stopped()),
                });
            }
        }
    }
    failure.is_none()
}

fn compact_in_txn(
    log: &mut redb::Table<(&str, u64), &[u8]>,
    snaps: &mut redb::Table<&str, &[u8]>,
    rooms: &mut redb::Table<&str, u64>,
    room: &str,
    upto_seq: u64,
    snapshot: &[u8],
) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::CompactionRefused {
        room: room.to_owned(),
        reason,
    };
    let (high, _) = last_seq(log, rooms, room)?;
    if upto_seq > high {
        return Err(refuse(format!(
            "upto_seq {upto_seq} beyond last seq {high}"
        )));
    }
    if let Some(v) = snaps.get(room).map_err(redb_err)?
        && let Some((old_seq, _)) = decode_snapshot(v.value())
        && old_seq > upto_seq
    {
        return Err(refuse(format!(
            "existing snapshot covers {old_seq} > {upto_seq}"
        )));
    }
    snaps
        .insert(room, encode_snapshot(upto_seq, snapshot).as_slice())
        .map_err(redb_err)?;
    log.retain_in((room, 0)..=(room, upto_seq), |_, _| false)
        .map_err(redb_err)?;
    // The log may now be empty: `relay_rooms` must carry the last seq so it is never reused.
    rooms.insert(room, high).map_err(redb_err)?;
    Ok(())
}

/// The room's last key in the log, if it has any rows.
fn last_logged(
    log: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(log
        .range((room, 0)..=(room, u64::MAX))
        .map_err(redb_err)?
        .next_back()
        .transpose()
        .map_err(redb_err)?
        .map(|(k, _)| k.value().1))
}

/// The highest seq ever assigned in `room` (0 if none), and whether the room has its
/// `relay_rooms` row. Seqs only grow and compaction records the last one before it deletes
/// rows, so the larger of the row and the last log key is exact.
fn last_seq(
    log: &redb::Table<(&str, u64), &[u8]>,
    rooms: &redb::Table<&str, u64>,
    room: &str,
) -> Result<(u64, bool), StoreError> {
    let recorded = rooms.get(room).map_err(redb_err)?.map(|v| v.value());
    let logged = last_logged(log, room)?;
    let seq = recorded.unwrap_or(0).max(logged.unwrap_or(0));
    Ok((seq, recorded.is_some()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn open() -> (tempfile::TempDir, Store, PersisterThread) {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(dir.path()).unwrap();
        let (store, thread) = Store::start(db, CommitMode::OnePhase).unwrap();
        (dir, store, thread)
    }

    fn b(s: &str) -> Bytes {
        Bytes::from(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn seqs_are_per_room_and_continue_across_appends() {
        let (_dir, store, _t) = open().await;
        let r: Arc<str> = Arc::from("a");
        assert_eq!(
            store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
            2
        );
        assert_eq!(store.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
        assert_eq!(store.append(Arc::from("b"), vec![b("x")]).await.unwrap(), 1);
        let loaded = store.load(r).await.unwrap();
        let seqs: Vec<u64> = loaded.tail.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(loaded.tail[2].1, b"3".to_vec());
        let mut rooms = store.rooms().await.unwrap();
        rooms.sort();
        assert_eq!(rooms, vec!["a".to_string(), "b".to_string()]);
    }

    /// Many concurrent requests (many rooms) are all committed and acknowledged; every room's
    /// log is complete and in order.
    #[tokio::test]
    async fn concurrent_appends_from_many_rooms_are_all_committed() {
        let (_dir, store, _t) = open().await;
        let mut tasks = Vec::new();
        for room in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name: Arc<str> = Arc::from(format!("room-{room}"));
                for i in 0..10 {
                    store
                        .append(name.clone(), vec![b(&format!("{room}:{i}"))])
                        .await
                        .unwrap();
                }
                name
            }));
        }
        for t in tasks {
            let name = t.await.unwrap();
            let loaded = store.load(name.clone()).await.unwrap();
            assert_eq!(loaded.tail.len(), 10, "{name}");
            assert!(loaded.tail.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[tokio::test]
    async fn compaction_replaces_the_prefix_atomically_and_refuses_bad_requests() {
        let (_dir, store, _t) = open().await;
        let r: Arc<str> = Arc::from("c");
        store
            .append(r.clone(), vec![b("1"), b("2"), b("3")])
            .await
            .unwrap();
        // Beyond the last seq: refused, nothing changes.
        assert!(store.compact(r.clone(), 9, b"snap".to_vec()).await.is_err());
        store
            .compact(r.clone(), 2, b"snap-2".to_vec())
            .await
            .unwrap();
        let loaded = store.load(r.clone()).await.unwrap();
        assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-2"[..]));
        assert_eq!(loaded.snapshot_seq, 2);
        assert_eq!(loaded.tail, vec![(3, b"3".to_vec())]);
        // An older snapshot never replaces a newer one.
        assert!(store.compact(r.clone(), 1, b"old".to_vec()).await.is_err());
        // Seqs continue after compaction (never reused).
        assert_eq!(store.append(r.clone(), vec![b("4")]).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn delete_removes_the_room_and_stop_refuses_later_writes() {
        let (_dir, store, thread) = open().await;
        let r: Arc<str> = Arc::from("d");
        store.append(r.clone(), vec![b("1")]).await.unwrap();
        store.compact(r.clone(), 1, b"s".to_vec()).await.unwrap();
        store.append(r.clone(), vec![b("2")]).await.unwrap();
        store.delete(r.clone()).await.unwrap();
        let loaded = store.load(r.clone()).await.unwrap();
        assert!(loaded.snapshot.is_none() && loaded.tail.is_empty());
        assert!(store.rooms().await.unwrap().is_empty());
        store.stop().await;
        assert!(store.append(r, vec![b("late")]).await.is_err());
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
    }

    async fn close(store: Store, thread: PersisterThread) {
        store.stop().await;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .unwrap();
        drop(store);
    }

    fn reopen(dir: &Path) -> (Store, PersisterThread) {
        Store::start(open_database(dir).unwrap(), CommitMode::OnePhase).unwrap()
    }

    fn rooms_row(dir: &Path, room: &str) -> Option<u64> {
        let db = Database::create(dir.join(DB_FILE_NAME)).unwrap();
        let txn = db.begin_read().unwrap();
        let rooms = txn.open_table(ROOMS).unwrap();
        rooms.get(room).unwrap().map(|v| v.value())
    }

    /// Format 2: an append after a room's first writes only the log, and the seq still
    /// continues exactly across a restart and across a compaction that empties the log.
    #[tokio::test]
    async fn appends_write_only_the_log_and_seqs_survive_restarts_and_full_compaction() {
        let (dir, store, thread) = open().await;
        let r: Arc<str> = Arc::from("e");
        assert_eq!(
            store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
            2
        );
        assert_eq!(store.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
        close(store, thread).await;
        assert_eq!(
            rooms_row(dir.path(), "e"),
            Some(2),
            "the row is not rewritten"
        );

        let (store, thread) = reopen(dir.path());
        assert_eq!(store.append(r.clone(), vec![b("4")]).await.unwrap(), 4);
        store
            .compact(r.clone(), 4, b"snap-4".to_vec())
            .await
            .unwrap();
        close(store, thread).await;
        assert_eq!(
            rooms_row(dir.path(), "e"),
            Some(4),
            "compaction records the last seq"
        );

        let (store, _thread) = reopen(dir.path());
        assert_eq!(store.append(r.clone(), vec![b("5")]).await.unwrap(), 5);
        let loaded = store.load(r).await.unwrap();
        assert_eq!(loaded.snapshot_seq, 4);
        assert_eq!(loaded.tail, vec![(5, b"5".to_vec())]);
    }

    /// A database written by a format-1 binary (relay_rooms exact, rewritten on every append)
    /// is upgraded in place and continues its seqs; an unknown format is refused.
    #[tokio::test]
    async fn a_format_1_database_is_upgraded_and_unknown_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_database(dir.path()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format", [STORAGE_FORMAT_V1].as_slice())
                    .unwrap();
                let mut rooms = txn.open_table(ROOMS).unwrap();
                rooms.insert("old", 5).unwrap();
                rooms.insert("empty", 7).unwrap();
                let mut log = txn.open_table(UPDATES).unwrap();
                log.insert(("old", 4), [FORMAT_V1, b'4'].as_slice())
                    .unwrap();
                log.insert(("old", 5), [FORMAT_V1, b'5'].as_slice())
                    .unwrap();
                let mut snaps = txn.open_table(SNAPSHOTS).unwrap();
                snaps
                    .insert("old", encode_snapshot(3, b"s3").as_slice())
                    .unwrap();
                snaps
                    .insert("empty", encode_snapshot(7, b"s7").as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let db = open_database(dir.path()).unwrap();
        let (store, thread) = Store::start(db.clone(), CommitMode::OnePhase).unwrap();
        {
            let txn = db.begin_read().unwrap();
            let meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get("format").unwrap().unwrap().value(),
                &[STORAGE_FORMAT]
            );
        }
        assert_eq!(
            store.append(Arc::from("old"), vec![b("6")]).await.unwrap(),
            6
        );
        assert_eq!(
            store
                .append(Arc::from("empty"), vec![b("8")])
                .await
                .unwrap(),
            8
        );
        drop(db);
        close(store, thread).await;

        {
            let db = open_database(dir.path()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", [STORAGE_FORMAT + 1].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let refused = Store::start(open_database(dir.path()).unwrap(), CommitMode::OnePhase);
        let Err(e) = refused else {
            panic!("a format-3 database was opened")
        };
        assert!(matches!(&e, StoreError::UnknownFormat { found } if found == &[3]));
        assert!(e.to_string().contains("storage format [3]"), "{e}");
    }

    #[test]
    fn snapshot_rows_round_trip_and_reject_garbage() {
        let row = encode_snapshot(42, b"abc");
        assert_eq!(decode_snapshot(&row), Some((42, &b"abc"[..])));
        assert_eq!(decode_snapshot(&[2, 0, 0]), None);
        assert_eq!(decode_snapshot(&[]), None);
        assert_eq!(decode_snapshot(&[1, 1, 2]), None);
    }
}
