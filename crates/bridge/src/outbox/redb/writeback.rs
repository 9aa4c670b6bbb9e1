//! The write-back queue in the redb engine: `bridge_writeback`, a FIFO keyed by an increasing
//! sequence number, and the `writeback_failed` note on a call.

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{TRIGGERS, WRITEBACK, dec, enc, lp};
use super::txn;
use crate::model::EventKind;
use crate::outbox::{OutboxError, Writeback};

/// Pending write-backs in order (at most `max`).
pub(super) fn pending(
    t: &ReadTransaction,
    max: usize,
) -> Result<Vec<(u64, Writeback)>, OutboxError> {
    let table = t.open_table(WRITEBACK).map_err(OutboxError::db)?;
    let mut out = Vec::new();
    for item in table.iter().map_err(OutboxError::db)?.take(max) {
        let (k, v) = item.map_err(OutboxError::db)?;
        out.push((k.value(), dec(v.value())?));
    }
    Ok(out)
}

/// Queues `wb` behind every write-back queued before.
pub(super) fn push(t: &WriteTransaction, wb: &Writeback) -> Result<(), OutboxError> {
    let seq = txn::next_counter(t, "writeback_seq")?;
    t.open_table(WRITEBACK)
        .map_err(OutboxError::db)?
        .insert(seq, enc(wb)?.as_slice())
        .map_err(OutboxError::db)?;
    Ok(())
}

/// Deletes the write-backs and trigger keys of a deleted room; returns the write-backs.
pub(super) fn forget_room(t: &WriteTransaction, room: &str) -> Result<Vec<Writeback>, OutboxError> {
    {
        let mut prefix = Vec::new();
        lp(&mut prefix, room);
        let mut triggers = t.open_table(TRIGGERS).map_err(OutboxError::db)?;
        let mut doomed = Vec::new();
        for item in triggers
            .range(prefix.as_slice()..)
            .map_err(OutboxError::db)?
        {
            let (k, _) = item.map_err(OutboxError::db)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            doomed.push(k.value().to_vec());
        }
        for k in &doomed {
            triggers.remove(k.as_slice()).map_err(OutboxError::db)?;
        }
    }
    let mut table = t.open_table(WRITEBACK).map_err(OutboxError::db)?;
    let mut doomed = Vec::new();
    for item in table.iter().map_err(OutboxError::db)? {
        let (k, v) = item.map_err(OutboxError::db)?;
        let wb: Writeback = dec(v.value())?;
        if wb.room == room {
            doomed.push((k.value(), wb));
        }
    }
    for (s, _) in &doomed {
        table.remove(*s).map_err(OutboxError::db)?;
    }
    Ok(doomed.into_iter().map(|(_, wb)| wb).collect())
}

/// Notes on a call that its outcome could not be written into the document.
pub(super) fn note_failed(
    t: &WriteTransaction,
    id: &Uuid,
    error: &str,
    now: u64,
) -> Result<bool, OutboxError> {
    let Some(mut call) = txn::load_call(t, id)? else {
        return Ok(false);
    };
    txn::append(
        t,
        &mut call,
        vec![EventKind::WritebackFailed {
            error: error.to_owned(),
        }],
        now,
    )?;
    txn::save_call(t, &call)?;
    Ok(true)
}

/// Deletes write-backs the host confirmed as durable.
pub(super) fn ack(t: &WriteTransaction, seqs: &[u64]) -> Result<(), OutboxError> {
    let mut table = t.open_table(WRITEBACK).map_err(OutboxError::db)?;
    for s in seqs {
        table.remove(*s).map_err(OutboxError::db)?;
    }
    Ok(())
}
