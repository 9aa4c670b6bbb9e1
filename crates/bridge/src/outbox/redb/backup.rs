//! The bridge's part of an online backup: every `bridge_*` table copied from one read snapshot
//! into the backup's write transaction, with `weaver-redb-backup`'s `copy_table` (the relay and
//! the notifier copy theirs with it too; the bridge must not depend on the relay).

use redb::{ReadTransaction, WriteTransaction};
use weaver_redb_backup::{CopyError, copy_table};

use super::tables::{BYTE_TABLES, FAILURE_NOTICES, META, WEBHOOK_SEEN, WRITEBACK};
use crate::outbox::OutboxError;

/// Copies every bridge table from `src` into `dst` (a read transaction is one committed state
/// of calls, events, leases and queues together). Returns the names of the tables copied; a
/// table never created yet is skipped.
pub fn copy_tables(
    src: &ReadTransaction,
    dst: &WriteTransaction,
) -> Result<Vec<String>, OutboxError> {
    let mut copied = Vec::new();
    let db = |e: CopyError| OutboxError::Database(e.into_redb());
    copy_table(src, dst, META, &mut copied).map_err(db)?;
    for def in BYTE_TABLES {
        copy_table(src, dst, def, &mut copied).map_err(db)?;
    }
    copy_table(src, dst, WEBHOOK_SEEN, &mut copied).map_err(db)?;
    copy_table(src, dst, WRITEBACK, &mut copied).map_err(db)?;
    copy_table(src, dst, FAILURE_NOTICES, &mut copied).map_err(db)?;
    Ok(copied)
}
