//! The relay's part of an online backup (`weaver backup`, `GET /api/backup`): copying its
//! tables from one read snapshot into the backup file, and the `copy_table` helper that crates
//! built on the relay (weaver-notify) use for theirs.

use redb::{ReadableTable, TableDefinition};

use super::format::{META, ROOMS, SNAPSHOTS, UPDATES};

/// A table could not be copied (reading the snapshot or writing the backup file).
// The cause is part of the message (`weaver backup` prints it), not repeated as `source()`.
#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct CopyError(redb::Error);

impl<E: Into<redb::Error>> From<E> for CopyError {
    fn from(e: E) -> Self {
        CopyError(e.into())
    }
}

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
) -> Result<(), CopyError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(def)?;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
    }
    copied.push(redb::TableHandle::name(&def).to_owned());
    Ok(())
}
