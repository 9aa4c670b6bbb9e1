//! The failure-notice queue in the redb engine: `bridge_failure_notices`, a FIFO keyed by an
//! increasing sequence number (like the write-back queue), written by `txn::settle` in the
//! transaction that fails a call and deleted once the `call.failed` webhook was delivered.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::tables::{FAILURE_NOTICES, dec, enc};
use super::txn;
use crate::outbox::{FailureNotice, OutboxError};

/// Queues `notice` behind every notice queued before.
pub(super) fn push(t: &WriteTransaction, notice: &FailureNotice) -> Result<(), OutboxError> {
    let seq = txn::next_counter(t, "failure_notice_seq")?;
    t.open_table(FAILURE_NOTICES)
        .map_err(OutboxError::db)?
        .insert(seq, enc(notice)?.as_slice())
        .map_err(OutboxError::db)?;
    Ok(())
}

/// Queued notices in order (at most `max`).
pub(super) fn pending(
    t: &ReadTransaction,
    max: usize,
) -> Result<Vec<(u64, FailureNotice)>, OutboxError> {
    let table = t.open_table(FAILURE_NOTICES).map_err(OutboxError::db)?;
    let mut out = Vec::new();
    for item in table.iter().map_err(OutboxError::db)?.take(max) {
        let (k, v) = item.map_err(OutboxError::db)?;
        out.push((k.value(), dec(v.value())?));
    }
    Ok(out)
}

/// Notices queued.
pub(super) fn count(t: &ReadTransaction) -> Result<u64, OutboxError> {
    t.open_table(FAILURE_NOTICES)
        .map_err(OutboxError::db)?
        .len()
        .map_err(OutboxError::db)
}

/// Deletes delivered (or given up) notices.
pub(super) fn ack(t: &WriteTransaction, seqs: &[u64]) -> Result<(), OutboxError> {
    let mut table = t.open_table(FAILURE_NOTICES).map_err(OutboxError::db)?;
    for s in seqs {
        table.remove(*s).map_err(OutboxError::db)?;
    }
    Ok(())
}
