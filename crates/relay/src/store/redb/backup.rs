//! The relay's part of an online backup (`weaver backup`, `GET /api/backup`): copying its
//! tables from one read snapshot into the backup file, with `weaver-redb-backup`'s
//! `copy_table` (the bridge and the notifier copy theirs with it too).

pub use weaver_redb_backup::CopyError;
use weaver_redb_backup::copy_table;

use super::format::{META, ROOMS, SNAPSHOTS, UPDATES, VERSION_DATA, VERSIONS};

/// Copies every relay table from `src` into `dst`: the relay's part of an online backup. A read
/// transaction is a consistent snapshot, so a backup taken while rooms are written holds one
/// committed state, never a torn one (copying the file of a running server does not: redb may
/// rewrite pages while the copy reads them). Returns the names of the tables copied; a table
/// never created yet is skipped.
pub fn copy_tables(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
) -> Result<Vec<String>, CopyError> {
    let mut copied = Vec::new();
    copy_table(src, dst, META, &mut copied)?;
    copy_table(src, dst, ROOMS, &mut copied)?;
    copy_table(src, dst, SNAPSHOTS, &mut copied)?;
    copy_table(src, dst, UPDATES, &mut copied)?;
    copy_table(src, dst, VERSIONS, &mut copied)?;
    copy_table(src, dst, VERSION_DATA, &mut copied)?;
    Ok(copied)
}
