//! weaver-redb-backup: the table copy every part of an online backup (`weaver backup`,
//! `GET /api/backup`) is made of.
//!
//! A backup is one read transaction of the shared redb file copied into a fresh database; each
//! crate that owns tables (the relay's `relay_*`, the bridge's `bridge_*`, the notifier's
//! `notify_*`) copies its own, because redb opens a table only through its typed definition and
//! each crate keeps those private. This crate holds the one generic step they share, so the
//! bridge need not depend on the relay to reuse it.
//!
//! Must not know: which tables exist, what their rows mean, files, HTTP.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use redb::{
    ReadTransaction, ReadableTable, TableDefinition, TableError, TableHandle, WriteTransaction,
};

/// A table could not be copied (reading the snapshot or writing the backup file).
// The cause is part of the message (`weaver backup` prints it), not repeated as `source()`.
#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct CopyError(redb::Error);

impl CopyError {
    /// The database error underneath, for an owner whose own error type wraps redb's directly.
    pub fn into_redb(self) -> redb::Error {
        self.0
    }
}

impl<E: Into<redb::Error>> From<E> for CopyError {
    fn from(e: E) -> Self {
        CopyError(e.into())
    }
}

/// Copies table `def` from the snapshot `src` into `dst` and records its name in `copied`. A
/// table never created in `src` is skipped (nothing copied, nothing recorded): the caller
/// compares `copied` with the snapshot's table list to refuse a backup that misses one.
pub fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<(), CopyError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut to = dst.open_table(def)?;
    for row in from.iter()? {
        let (k, v) = row?;
        to.insert(k.value(), v.value())?;
    }
    copied.push(def.name().to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::{Database, ReadableDatabase};

    use super::*;

    const ROWS: TableDefinition<&str, u64> = TableDefinition::new("rows");
    const NEVER: TableDefinition<u64, &[u8]> = TableDefinition::new("never");

    #[test]
    fn copies_every_row_and_skips_a_table_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let src_db = Database::create(dir.path().join("src.redb")).unwrap();
        let w = src_db.begin_write().unwrap();
        {
            let mut t = w.open_table(ROWS).unwrap();
            t.insert("a", 1).unwrap();
            t.insert("b", 2).unwrap();
        }
        w.commit().unwrap();

        let dst_db = Database::create(dir.path().join("dst.redb")).unwrap();
        let src = src_db.begin_read().unwrap();
        let dst = dst_db.begin_write().unwrap();
        let mut copied = Vec::new();
        copy_table(&src, &dst, ROWS, &mut copied).unwrap();
        copy_table(&src, &dst, NEVER, &mut copied).unwrap();
        dst.commit().unwrap();
        assert_eq!(copied, ["rows"]);

        let r = dst_db.begin_read().unwrap();
        let t = r.open_table(ROWS).unwrap();
        let rows: Vec<(String, u64)> = t
            .iter()
            .unwrap()
            .map(|row| {
                let (k, v) = row.unwrap();
                (k.value().to_owned(), v.value())
            })
            .collect();
        assert_eq!(rows, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert!(matches!(
            r.open_table(NEVER),
            Err(TableError::TableDoesNotExist(_))
        ));
    }
}
