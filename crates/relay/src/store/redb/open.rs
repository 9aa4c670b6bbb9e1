//! Opening the redb file: the data directory, the page cache size and the page-checksum
//! integrity check, and the errors of opening (`OpenError`, also those of
//! [`super::RedbRoomStore::start`]). The database is shared: the bridge and the notifier open
//! their own tables in the same file.

use std::path::Path;
use std::sync::Arc;

use redb::Database;

/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "weaver.redb";

/// Errors of opening the database and starting the relay's engine on it.
// As in `StoreError`, the cause is part of the message (what `weaver serve` prints when it
// refuses to start) and not repeated as `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("storage error: {0}")]
    Redb(redb::Error),
    #[error("cannot prepare data directory {path}: {error}")]
    DataDir { path: String, error: std::io::Error },
    #[error("cannot open or replay the journal {path}: {error}")]
    Journal { path: String, error: std::io::Error },
    #[error("cannot start the persister thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "the database has relay storage format {found:?}, this binary knows formats 1 and {known}: \
         run the version that wrote it, or restore a backup taken before the upgrade",
        known = super::format::STORAGE_FORMAT
    )]
    UnknownFormat { found: Vec<u8> },
    #[error(
        "the database file {path} is damaged ({detail}); restore a backup \
         (docs/operations.md, \"Backup and restore\")"
    )]
    Damaged { path: String, detail: String },
}

pub(super) fn redb_err(e: impl Into<redb::Error>) -> OpenError {
    OpenError::Redb(e.into())
}

/// Opens (or creates) `<data_dir>/weaver.redb`, creating the directory if needed, with every
/// page checked (see [`open_database_with_cache`]). The returned database is meant to be
/// shared: the bridge opens its own `bridge_*` tables in the same file.
pub fn open_database(data_dir: &Path) -> Result<Arc<Database>, OpenError> {
    open_database_with_cache(data_dir, crate::DEFAULT_STORE_CACHE_BYTES, true)
}

/// [`open_database`] with an explicit page cache size: redb keeps every page it reads or
/// writes in this cache (its own default is 1 GiB), so it bounds what the store adds to the
/// server's memory as the database grows. With `check`, every page's checksum is verified at
/// open: a file damaged outside redb (disk, a bad copy or restore) is refused with
/// [`OpenError::Damaged`], where redb's plain open trusts it and may panic on the first read.
/// The check reads the whole file (about 0.3 s for 500 MB from the page cache).
pub fn open_database_with_cache(
    data_dir: &Path,
    cache_bytes: usize,
    check: bool,
) -> Result<Arc<Database>, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|error| OpenError::DataDir {
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
                OpenError::Damaged {
                    path: path.display().to_string(),
                    detail,
                }
            }
            e => redb_err(e),
        })?;
    Ok(Arc::new(db))
}
