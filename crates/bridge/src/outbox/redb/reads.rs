//! Reads of the redb engine for the dispatcher and the HTTP API: one call, a call by its
//! trigger, the call listing (by room through `bridge_calls_by_room`), queue sizes and the next
//! due and expiry times. Each runs in one read transaction: a consistent snapshot.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use uuid::Uuid;

use super::tables::{
    BY_ROOM, CALLS, LEASES, READY, TRIGGERS, WRITEBACK, dec, room_prefix, split_time_id,
    trigger_key,
};
use crate::model::ApiCall;
use crate::outbox::{CallFilter, OutboxError};

pub(super) fn get(t: &ReadTransaction, id: &Uuid) -> Result<Option<ApiCall>, OutboxError> {
    let calls = t.open_table(CALLS).map_err(OutboxError::db)?;
    let r = calls
        .get(id.as_bytes().as_slice())
        .map_err(OutboxError::db)?;
    r.map(|g| dec(g.value())).transpose()
}

pub(super) fn find_by_trigger(
    t: &ReadTransaction,
    room: &str,
    block: &str,
    index: &str,
    attempt: u32,
) -> Result<Option<ApiCall>, OutboxError> {
    let triggers = t.open_table(TRIGGERS).map_err(OutboxError::db)?;
    let Some(id) = triggers
        .get(trigger_key(room, block, index, attempt).as_slice())
        .map_err(OutboxError::db)?
        .and_then(|g| Uuid::from_slice(g.value()).ok())
    else {
        return Ok(None);
    };
    get(t, &id)
}

/// Calls matching the filter, newest first.
pub(super) fn list(t: &ReadTransaction, filter: &CallFilter) -> Result<Vec<ApiCall>, OutboxError> {
    let calls = t.open_table(CALLS).map_err(OutboxError::db)?;
    let limit = filter.limit.unwrap_or(usize::MAX);
    let keep = |call: &ApiCall| {
        filter
            .block_id
            .as_deref()
            .is_none_or(|b| b == call.block_id)
            && filter.status.is_none_or(|s| s == call.status)
    };
    let mut out = Vec::new();
    if let Some(room) = filter.room.as_deref() {
        // Room (and block) queries use the index instead of scanning every call.
        let idx = t.open_table(BY_ROOM).map_err(OutboxError::db)?;
        let lo = room_prefix(room, filter.block_id.as_deref());
        let mut hi = lo.clone();
        hi.extend_from_slice(&[0xff; 17]);
        let mut ids = Vec::new();
        for item in idx
            .range(lo.as_slice()..hi.as_slice())
            .map_err(OutboxError::db)?
        {
            let (k, _) = item.map_err(OutboxError::db)?;
            let k = k.value();
            if let Some(id) = k
                .get(k.len().saturating_sub(16)..)
                .and_then(|b| Uuid::from_slice(b).ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            let r = calls
                .get(id.as_bytes().as_slice())
                .map_err(OutboxError::db)?;
            let Some(call) = r.map(|g| dec::<ApiCall>(g.value())).transpose()? else {
                continue;
            };
            if call.room == room && keep(&call) {
                out.push(call);
                if out.len() >= limit {
                    break;
                }
            }
        }
        return Ok(out);
    }
    // Keys are UUIDv7 = creation order; iterate backwards for newest first.
    for item in calls.iter().map_err(OutboxError::db)?.rev() {
        let (_, v) = item.map_err(OutboxError::db)?;
        let call: ApiCall = dec(v.value())?;
        if keep(&call) {
            out.push(call);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

/// (ready, leased, pending write-backs).
pub(super) fn queue_sizes(t: &ReadTransaction) -> Result<(u64, u64, u64), OutboxError> {
    let ready = t
        .open_table(READY)
        .map_err(OutboxError::db)?
        .len()
        .map_err(OutboxError::db)?;
    let leased = t
        .open_table(LEASES)
        .map_err(OutboxError::db)?
        .len()
        .map_err(OutboxError::db)?;
    let wb = t
        .open_table(WRITEBACK)
        .map_err(OutboxError::db)?
        .len()
        .map_err(OutboxError::db)?;
    Ok((ready, leased, wb))
}

/// The earliest time of a time-keyed table (`bridge_ready`, `bridge_lease_expiry`).
pub(super) fn first_time(
    t: &ReadTransaction,
    def: TableDefinition<&[u8], &[u8]>,
) -> Result<Option<u64>, OutboxError> {
    let table = t.open_table(def).map_err(OutboxError::db)?;
    let first = table.first().map_err(OutboxError::db)?;
    Ok(first.and_then(|(k, _)| split_time_id(k.value()).map(|(time, _)| time)))
}
