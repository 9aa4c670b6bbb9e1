//! The steps every write transaction of the redb engine shares: load and save a call, read and
//! append its event log (re-folding its status), move its ready-queue entry, drop its lease,
//! bump a counter, and `settle` (the bookkeeping after a status change: leave the queue and the
//! lease when terminal, queue the write-back and the failure notice the change calls for, note
//! the finished call for the metrics recorded after the commit).

use redb::{ReadableTable, WriteTransaction};
use uuid::Uuid;

use super::tables::{
    CALLS, EVENTS, LEASE_EXPIRY, LEASES, META, READY, dec, decode_lease, enc, event_key, event_seq,
    time_id_key,
};
use super::{notices, writeback};
use crate::metrics::Finished;
use crate::model::{ApiCall, CallStatus, Event, EventKind};
use crate::outbox::{DocStatus, FailureNotice, OutboxError, StoredEvent, Writeback};

/// What the steps of one write transaction need besides the transaction, and what they leave
/// for after its commit.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// A failed call queues a `call.failed` notice (a receiver is configured).
    pub(super) failure_notices: bool,
    /// Calls that became terminal in this transaction: their metrics are recorded once the
    /// commit succeeded, so a transaction that fails counts nothing.
    pub(super) finished: Vec<Finished>,
}

/// Increments and returns the counter `name` of `bridge_meta` (first value 1).
pub(super) fn next_counter(txn: &WriteTransaction, name: &str) -> Result<u64, OutboxError> {
    let mut meta = txn.open_table(META).map_err(OutboxError::db)?;
    let n = meta
        .get(name)
        .map_err(OutboxError::db)?
        .map_or(0, |g| g.value())
        + 1;
    meta.insert(name, n).map_err(OutboxError::db)?;
    Ok(n)
}

/// Raises the counter `name` to at least `floor` (the next `next_counter` is above it).
pub(super) fn raise_counter(
    txn: &WriteTransaction,
    name: &str,
    floor: u64,
) -> Result<(), OutboxError> {
    let mut meta = txn.open_table(META).map_err(OutboxError::db)?;
    let n = meta
        .get(name)
        .map_err(OutboxError::db)?
        .map_or(0, |g| g.value());
    if n < floor {
        meta.insert(name, floor).map_err(OutboxError::db)?;
    }
    Ok(())
}

pub(super) fn load_call(txn: &WriteTransaction, id: &Uuid) -> Result<Option<ApiCall>, OutboxError> {
    let t = txn.open_table(CALLS).map_err(OutboxError::db)?;
    let r = t.get(id.as_bytes().as_slice()).map_err(OutboxError::db)?;
    r.map(|g| dec(g.value())).transpose()
}

pub(super) fn save_call(txn: &WriteTransaction, call: &ApiCall) -> Result<(), OutboxError> {
    let mut t = txn.open_table(CALLS).map_err(OutboxError::db)?;
    t.insert(call.id.as_bytes().as_slice(), enc(call)?.as_slice())
        .map_err(OutboxError::db)?;
    Ok(())
}

/// A call's event log in order, read from an open `EVENTS` table (read or write).
pub(super) fn events_in(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: &Uuid,
) -> Result<Vec<StoredEvent>, OutboxError> {
    let lo = event_key(id, 0);
    let hi = event_key(id, u32::MAX);
    let mut out = Vec::new();
    for item in t
        .range(lo.as_slice()..=hi.as_slice())
        .map_err(OutboxError::db)?
    {
        let (k, v) = item.map_err(OutboxError::db)?;
        out.push(StoredEvent {
            seq: event_seq(k.value()),
            event: dec(v.value())?,
        });
    }
    Ok(out)
}

/// Appends events to a call's log and re-folds its status into `call` (not saved yet).
pub(super) fn append(
    txn: &WriteTransaction,
    call: &mut ApiCall,
    kinds: Vec<EventKind>,
    now: u64,
) -> Result<(), OutboxError> {
    let mut t = txn.open_table(EVENTS).map_err(OutboxError::db)?;
    let mut log = events_in(&t, &call.id)?;
    let mut seq = log.last().map_or(0, |e| e.seq);
    for kind in kinds {
        seq += 1;
        let ev = Event {
            attempt: call.attempt,
            at: now,
            kind,
        };
        t.insert(event_key(&call.id, seq).as_slice(), enc(&ev)?.as_slice())
            .map_err(OutboxError::db)?;
        log.push(StoredEvent { seq, event: ev });
    }
    let events: Vec<Event> = log.into_iter().map(|e| e.event).collect();
    call.apply_fold(&events);
    Ok(())
}

/// Moves the call's ready-queue entry to `at` (`None`: out of the queue).
pub(super) fn set_ready(
    txn: &WriteTransaction,
    call: &mut ApiCall,
    at: Option<u64>,
) -> Result<(), OutboxError> {
    let mut t = txn.open_table(READY).map_err(OutboxError::db)?;
    if let Some(old) = call.next_try_at.take() {
        t.remove(time_id_key(old, &call.id).as_slice())
            .map_err(OutboxError::db)?;
    }
    if let Some(at) = at {
        t.insert(time_id_key(at, &call.id).as_slice(), [].as_slice())
            .map_err(OutboxError::db)?;
        call.next_try_at = Some(at);
    }
    Ok(())
}

/// The call's lease (token, until), if it has one.
pub(super) fn lease(txn: &WriteTransaction, id: &Uuid) -> Result<Option<(u64, u64)>, OutboxError> {
    let t = txn.open_table(LEASES).map_err(OutboxError::db)?;
    let r = t.get(id.as_bytes().as_slice()).map_err(OutboxError::db)?;
    Ok(r.and_then(|g| decode_lease(g.value())))
}

/// Whether the call has a lease row.
pub(super) fn is_leased(txn: &WriteTransaction, id: &Uuid) -> Result<bool, OutboxError> {
    let t = txn.open_table(LEASES).map_err(OutboxError::db)?;
    Ok(t.get(id.as_bytes().as_slice())
        .map_err(OutboxError::db)?
        .is_some())
}

/// Removes the call's lease; returns it (token, until).
pub(super) fn drop_lease(
    txn: &WriteTransaction,
    id: &Uuid,
) -> Result<Option<(u64, u64)>, OutboxError> {
    let mut leases = txn.open_table(LEASES).map_err(OutboxError::db)?;
    let old = leases
        .remove(id.as_bytes().as_slice())
        .map_err(OutboxError::db)?
        .and_then(|g| decode_lease(g.value()));
    if let Some((_, until)) = old {
        let mut exp = txn.open_table(LEASE_EXPIRY).map_err(OutboxError::db)?;
        exp.remove(time_id_key(until, id).as_slice())
            .map_err(OutboxError::db)?;
    }
    Ok(old)
}

/// Bookkeeping after the status may have changed, then saves the call. `was` is the status
/// before this transaction.
pub(super) fn settle(
    txn: &WriteTransaction,
    call: &mut ApiCall,
    was: CallStatus,
    fx: &mut Effects,
) -> Result<(), OutboxError> {
    if call.status.is_terminal() {
        set_ready(txn, call, None)?;
        drop_lease(txn, &call.id)?;
        if !was.is_terminal() {
            fx.finished.push(Finished::of(call));
            match call.status {
                CallStatus::Completed => {
                    writeback::push(txn, &Writeback::for_call(call, DocStatus::Done))?;
                }
                CallStatus::Failed => {
                    writeback::push(txn, &Writeback::for_call(call, DocStatus::Error))?;
                    // In the transaction that fails the call: the notice is queued exactly
                    // once, whatever crashes after the commit.
                    if fx.failure_notices {
                        notices::push(txn, &FailureNotice::for_call(call))?;
                    }
                }
                // A cancelled call's entry is gone or superseded: nothing to show.
                _ => {}
            }
        }
    } else if was == CallStatus::Pending && call.status == CallStatus::Processing {
        writeback::push(txn, &Writeback::for_call(call, DocStatus::Processing))?;
    }
    save_call(txn, call)
}
