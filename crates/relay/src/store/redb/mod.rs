//! The redb engine of [`RoomStore`]: the relay's `relay_*` tables in the shared redb file,
//! written by one persister thread (group commit), read on tokio's blocking pool.
//!
//! Files: `open.rs` (the file, its integrity check, opening errors), `format.rs` (tables, row
//! formats, storage format versions), `persister.rs` (the writer thread, group commit),
//! `journal.rs` (the write-ahead journal: frames, the file), `replay.rs` (recovery at open, the
//! checkpoint record),
//! `compaction.rs`, `load.rs`, `scan.rs` (a marker in a room's bytes without loading it),
//! `listing.rs`, `versions.rs` (document versions), `backup.rs`
//! (online backup copy), `transfer.rs` (rooms into and out of a relay database file: cluster
//! backup and restore),
//! `test_support.rs` (what the unit tests share). Only this folder opens `relay_*` tables
//! (docs/storage.md). Deliberately not here: yrs documents (the bytes are opaque), sockets,
//! rooms.

mod backup;
mod compaction;
mod format;
pub mod journal;
#[cfg(test)]
mod journal_tests;
mod listing;
mod load;
mod open;
mod persister;
mod replay;
mod scan;
#[cfg(test)]
mod test_support;
pub mod transfer;
mod versions;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redb::Database;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

pub use backup::{CopyError, copy_tables};
pub use journal::JOURNAL_FILE_NAME;
pub use open::{DB_FILE_NAME, OpenError, open_database, open_database_with_cache};
pub use persister::CommitMode;

use self::journal::{CHECKPOINT_EVERY, Journal};
use self::persister::{PERSIST_QUEUE, StoreOp, persister_loop};
use crate::metrics as m;
use crate::store::{
    Detail, NewVersion, Retention, RoomStore, StoreError, StoredRoom, StoredRoomInfo, VersionMeta,
};

pub(super) fn read_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::read(e.into())
}

pub(super) fn write_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::write(e.into())
}

/// The relay's rooms in redb. Writes queue to the persister thread; reads run on the blocking
/// pool. [`RoomStore::stop`] commits what is queued and joins the thread; dropping the store
/// without stopping lets the thread finish the queue and exit on its own.
#[derive(Debug)]
pub struct RedbRoomStore {
    db: Arc<Database>,
    tx: mpsc::Sender<StoreOp>,
    /// Set for good once a group commit fails: redb refuses every later write after an I/O
    /// error until the database is reopened, i.e. the process restarted.
    failed: Arc<AtomicBool>,
    /// Taken by the first `stop`, which joins the thread.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RedbRoomStore {
    /// Creates the relay tables in `db` if missing (checking or upgrading the storage format)
    /// and starts the persister thread.
    pub fn start(db: Arc<Database>, commit: CommitMode) -> Result<Arc<RedbRoomStore>, OpenError> {
        format::prepare(&db)?;
        Self::spawn(db, commit, None)
    }

    /// [`RedbRoomStore::start`] with the write-ahead journal `<data_dir>/weaver.journal`
    /// (docs/storage.md, "Journal"): first replays what a crash left in it, then appends are
    /// made durable by journal frames and checkpointed into redb. With a tokio runtime, a tick
    /// checkpoints an idle journal every 30 s (it ends with the store).
    pub fn start_journaled(
        db: Arc<Database>,
        commit: CommitMode,
        data_dir: &Path,
    ) -> Result<Arc<RedbRoomStore>, OpenError> {
        format::prepare(&db)?;
        let journal = replay::recover(&db, &data_dir.join(JOURNAL_FILE_NAME), commit)?;
        let store = Self::spawn(db, commit, Some(journal))?;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = store.tx.downgrade();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    // Ends once the store is gone or its persister has stopped.
                    let Some(tx) = weak.upgrade() else { break };
                    if tx.send(StoreOp::Checkpoint).await.is_err() {
                        break;
                    }
                }
            });
        }
        Ok(store)
    }

    fn spawn(
        db: Arc<Database>,
        commit: CommitMode,
        journal: Option<Journal>,
    ) -> Result<Arc<RedbRoomStore>, OpenError> {
        let (tx, rx) = mpsc::channel(PERSIST_QUEUE);
        let thread_db = db.clone();
        let failed = Arc::new(AtomicBool::new(false));
        let thread_failed = failed.clone();
        metrics::gauge!(m::STORE_FAILED).set(0.0);
        let handle = std::thread::Builder::new()
            .name("weaver-persister".into())
            .spawn(move || persister_loop(thread_db, rx, commit, thread_failed, journal))
            .map_err(OpenError::Thread)?;
        Ok(Arc::new(RedbRoomStore {
            db,
            tx,
            failed,
            thread: Mutex::new(Some(handle)),
        }))
    }

    async fn send(&self, op: StoreOp) -> Result<(), Arc<StoreError>> {
        self.tx
            .send(op)
            .await
            .map_err(|_| Arc::new(StoreError::Stopped))
    }

    /// Queues a write and waits for the persister's answer (after the group's commit).
    async fn write<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, Arc<StoreError>>>) -> StoreOp,
    ) -> Result<T, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.send(op(reply)).await?;
        rx.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }

    /// Runs a read on the blocking pool: redb reads block on disk.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| StoreError::Stopped)?
    }
}

impl RoomStore for RedbRoomStore {
    fn load(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.read(move |db| load::load_blocking(db, &room)).boxed()
    }

    fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> BoxFuture<'_, Result<u64, Arc<StoreError>>> {
        self.write(move |reply| StoreOp::Append {
            room,
            updates,
            reply,
        })
        .boxed()
    }

    fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.write(move |reply| StoreOp::Compact {
            room,
            upto_seq,
            snapshot,
            reply,
        })
        .boxed()
    }

    fn delete(&self, room: Arc<str>) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.write(move |reply| StoreOp::Delete { room, reply })
            .boxed()
    }

    fn rooms(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.read(listing::rooms_blocking).boxed()
    }

    fn stored_bytes_contain(
        &self,
        room: Arc<str>,
        needle: Vec<u8>,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.read(move |db| scan::contains_blocking(db, &room, &needle))
            .boxed()
    }

    fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> BoxFuture<'_, Result<Vec<StoredRoomInfo>, StoreError>> {
        self.read(move |db| listing::list_blocking(db, &prefix, after.as_deref(), limit, detail))
            .boxed()
    }

    fn add_version(
        &self,
        room: Arc<str>,
        version: NewVersion,
        retention: Retention,
    ) -> BoxFuture<'_, Result<VersionMeta, Arc<StoreError>>> {
        self.write(move |reply| StoreOp::AddVersion {
            room,
            version: Box::new((version, retention)),
            reply,
        })
        .boxed()
    }

    fn versions(&self, room: Arc<str>) -> BoxFuture<'_, Result<Vec<VersionMeta>, StoreError>> {
        self.read(move |db| versions::list_blocking(db, &room))
            .boxed()
    }

    fn version_data(
        &self,
        room: Arc<str>,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        self.read(move |db| versions::data_blocking(db, &room, &ids))
            .boxed()
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        async move {
            let (reply, rx) = oneshot::channel();
            if self.send(StoreOp::Stop { reply }).await.is_ok() {
                let _ = rx.await;
            }
            let thread = self.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                let joined = tokio::task::spawn_blocking(move || thread.join()).await;
                if !matches!(joined, Ok(Ok(()))) {
                    error!("persister thread panicked");
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::test_support::{b, start};
    use super::*;

    #[tokio::test]
    async fn seqs_are_per_room_and_continue_across_appends() {
        let dir = tempfile::tempdir().unwrap();
        let store = start(dir.path(), CommitMode::OnePhase);
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
}
