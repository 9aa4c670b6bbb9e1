//! Retention in the redb engine: deletes finished calls past their retention with every row
//! that points at them (events, room index, trigger key, external id), and webhook ids and
//! parked webhooks past theirs.

use std::collections::HashSet;

use redb::{ReadableTable, WriteTransaction};

use super::tables::{
    BY_ROOM, CALLS, EVENTS, EXTERNAL, PARKED, ParkedEvent, TRIGGERS, WEBHOOK_SEEN, by_room_key,
    dec, event_key, ext_key, trigger_key,
};
use crate::config::RetentionConfig;
use crate::model::{ApiCall, CallStatus};
use crate::outbox::OutboxError;

/// Prunes; `pending_wb` are the ids of calls with a queued write-back (kept). Returns the
/// number of calls deleted.
pub(super) fn prune(
    t: &WriteTransaction,
    now: u64,
    retention: &RetentionConfig,
    pending_wb: &HashSet<String>,
) -> Result<usize, OutboxError> {
    let victims: Vec<ApiCall> = {
        let calls = t.open_table(CALLS).map_err(OutboxError::db)?;
        let mut v = Vec::new();
        for item in calls.iter().map_err(OutboxError::db)? {
            let (_, val) = item.map_err(OutboxError::db)?;
            let call: ApiCall = dec(val.value())?;
            let keep_for = match call.status {
                CallStatus::Completed | CallStatus::Cancelled => retention.completed_ms,
                CallStatus::Failed => retention.failed_ms,
                _ => continue,
            };
            let done_at = call.completed_at.unwrap_or(call.created_at);
            if now.saturating_sub(done_at) > keep_for && !pending_wb.contains(&call.id.to_string())
            {
                v.push(call);
            }
        }
        v
    };
    for call in &victims {
        delete_call(t, call)?;
    }
    let mut seen = t.open_table(WEBHOOK_SEEN).map_err(OutboxError::db)?;
    seen.retain(|_, at| now.saturating_sub(at) <= retention.webhook_ids_ms)
        .map_err(OutboxError::db)?;
    let mut parked = t.open_table(PARKED).map_err(OutboxError::db)?;
    parked
        .retain(|_, v| {
            dec::<ParkedEvent>(v)
                .is_ok_and(|p| now.saturating_sub(p.at) <= retention.webhook_ids_ms)
        })
        .map_err(OutboxError::db)?;
    Ok(victims.len())
}

fn delete_call(t: &WriteTransaction, call: &ApiCall) -> Result<(), OutboxError> {
    t.open_table(CALLS)
        .map_err(OutboxError::db)?
        .remove(call.id.as_bytes().as_slice())
        .map_err(OutboxError::db)?;
    t.open_table(BY_ROOM)
        .map_err(OutboxError::db)?
        .remove(by_room_key(call).as_slice())
        .map_err(OutboxError::db)?;
    let lo = event_key(&call.id, 0);
    let hi = event_key(&call.id, u32::MAX);
    t.open_table(EVENTS)
        .map_err(OutboxError::db)?
        .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
        .map_err(OutboxError::db)?;
    let mut triggers = t.open_table(TRIGGERS).map_err(OutboxError::db)?;
    let tk = trigger_key(&call.room, &call.block_id, &call.index_name, call.attempt);
    // After a room deletion the key may belong to a newer call of the re-created room: only
    // remove it while it still points at this call.
    let ours = triggers
        .get(tk.as_slice())
        .map_err(OutboxError::db)?
        .is_some_and(|v| v.value() == call.id.as_bytes().as_slice());
    if ours {
        triggers.remove(tk.as_slice()).map_err(OutboxError::db)?;
    }
    if let Some(ext) = &call.external_id {
        t.open_table(EXTERNAL)
            .map_err(OutboxError::db)?
            .remove(ext_key(&call.integration, ext).as_slice())
            .map_err(OutboxError::db)?;
    }
    Ok(())
}
