//! The bridge's part of an online backup: every `bridge_*` table copied from one read snapshot
//! into the backup's write transaction.
//!
//! The relay has the same generic `copy_table` (`weaver_relay::copy_table`, which the notifier
//! uses too). The bridge must not depend on the relay, so it keeps its own copy here; the two
//! could move into a tiny shared storage-helpers crate.

use redb::{
    ReadTransaction, ReadableTable, TableDefinition, TableError, TableHandle, WriteTransaction,
};

use super::tables::{BYTE_TABLES, META, WEBHOOK_SEEN, WRITEBACK};
use crate::outbox::OutboxError;

/// Copies every bridge table from `src` into `dst` (a read transaction is one committed state
/// of calls, events, leases and queues together). Returns the names of the tables copied; a
/// table never created yet is skipped.
pub fn copy_tables(
    src: &ReadTransaction,
    dst: &WriteTransaction,
) -> Result<Vec<String>, OutboxError> {
    let mut copied = Vec::new();
    copy_table(src, dst, META, &mut copied)?;
    for def in BYTE_TABLES {
        copy_table(src, dst, def, &mut copied)?;
    }
    copy_table(src, dst, WEBHOOK_SEEN, &mut copied)?;
    copy_table(src, dst, WRITEBACK, &mut copied)?;
    Ok(copied)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<(), OutboxError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(OutboxError::db(e)),
    };
    let mut to = dst.open_table(def).map_err(OutboxError::db)?;
    for row in from.iter().map_err(OutboxError::db)? {
        let (k, v) = row.map_err(OutboxError::db)?;
        to.insert(k.value(), v.value()).map_err(OutboxError::db)?;
    }
    copied.push(def.name().to_owned());
    Ok(())
}
