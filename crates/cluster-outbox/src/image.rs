//! The replica and its image. The replica is a redb database in memory
//! (`redb::backends::InMemoryBackend`) holding exactly the redb engine's `bridge_*` tables; an
//! image is those tables copied (with `weaver_bridge::copy_tables`, as a single-node backup
//! copies them) into a fresh database whose bytes are kept in a [`MemFile`]: a snapshot
//! stores the bytes, and an image is also how a backup file's outbox enters a cluster.

use std::sync::{Arc, RwLock};

use redb::backends::InMemoryBackend;
use redb::{BackendError, Database, ReadTransaction, StorageBackend};
use weaver_bridge::config::RetryPolicy;
use weaver_bridge::outbox::{OutboxError, RedbOutbox, copy_tables};

/// A redb file in memory whose bytes can be taken out (redb's own in-memory backend keeps
/// them private).
#[derive(Debug, Clone, Default)]
struct MemFile(Arc<RwLock<Vec<u8>>>);

fn out_of_range() -> BackendError {
    BackendError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        "offset out of range",
    ))
}

impl MemFile {
    fn bytes(&self) -> Vec<u8> {
        match self.0.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        match self.0.write() {
            Ok(mut b) => f(&mut b),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

impl StorageBackend for MemFile {
    fn len(&self) -> Result<u64, BackendError> {
        Ok(self.with(|b| b.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.with(|b| {
            let at = usize::try_from(offset).map_err(|_| out_of_range())?;
            let src = at
                .checked_add(out.len())
                .and_then(|end| b.get(at..end))
                .ok_or_else(out_of_range)?;
            out.copy_from_slice(src);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        self.with(|b| b.resize(len, 0));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.with(|b| {
            let at = usize::try_from(offset).map_err(|_| out_of_range())?;
            let dst = at
                .checked_add(data.len())
                .and_then(|end| b.get_mut(at..end))
                .ok_or_else(out_of_range)?;
            dst.copy_from_slice(data);
            Ok(())
        })
    }
}

fn db_err<E: Into<redb::Error>>(e: E) -> OutboxError {
    OutboxError::Database(e.into())
}

/// The bytes of a redb file holding the bridge tables of `src` (a read transaction of a
/// replica or of a backup file). `None` when `src` has no bridge table at all.
pub(crate) fn image_of(src: &ReadTransaction) -> Result<Option<Vec<u8>>, OutboxError> {
    let file = MemFile::default();
    let db = Database::builder()
        .create_with_backend(file.clone())
        .map_err(db_err)?;
    let txn = db.begin_write().map_err(db_err)?;
    let copied = copy_tables(src, &txn)?;
    txn.commit().map_err(db_err)?;
    drop(db);
    Ok((!copied.is_empty()).then(|| file.bytes()))
}

/// A fresh replica: an empty in-memory database, or the tables of `image`, opened as the redb
/// engine (which checks the schema version).
pub(crate) fn replica(
    image: Option<Vec<u8>>,
    policy: RetryPolicy,
    failure_notices: bool,
) -> Result<RedbOutbox, OutboxError> {
    let db = Database::builder()
        .create_with_backend(InMemoryBackend::new())
        .map_err(db_err)?;
    if let Some(bytes) = image {
        let src = Database::builder()
            .create_with_backend(MemFile(Arc::new(RwLock::new(bytes))))
            .map_err(db_err)?;
        let read = redb::ReadableDatabase::begin_read(&src).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        copy_tables(&read, &txn)?;
        txn.commit().map_err(db_err)?;
    }
    Ok(RedbOutbox::open(Arc::new(db), policy)?.with_failure_notices(failure_notices))
}
