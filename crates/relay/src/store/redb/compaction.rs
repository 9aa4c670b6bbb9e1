//! Compaction inside the persister's write transaction: the checks that keep it from losing
//! data, then the snapshot row, the log prefix removal and the room's recorded last seq, all
//! in the group's one transaction (atomic).
//!
//! Tested through the store by `contract::compaction_then_load` and
//! `contract::compaction_refuses_what_would_lose_data` (tests/it/store_contract.rs).

use redb::ReadableTable;

use super::format::{decode_snapshot, encode_snapshot, last_seq};
use crate::store::StoreError;

/// Replaces `room`'s snapshot and deletes its log entries `<= upto_seq`. Refused (this request
/// only, nothing written) when `upto_seq` is beyond the room's last seq or below the seq of the
/// snapshot already stored.
pub(super) fn compact_in_txn(
    log: &mut redb::Table<(&str, u64), &[u8]>,
    snaps: &mut redb::Table<&str, &[u8]>,
    rooms: &mut redb::Table<&str, u64>,
    room: &str,
    upto_seq: u64,
    snapshot: &[u8],
) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::CompactionRefused {
        room: room.to_owned(),
        reason,
    };
    let (high, _) = last_seq(log, rooms, room).map_err(super::write_err)?;
    if upto_seq > high {
        return Err(refuse(format!(
            "upto_seq {upto_seq} beyond last seq {high}"
        )));
    }
    if let Some(v) = snaps.get(room).map_err(super::write_err)?
        && let Some((old_seq, _)) = decode_snapshot(v.value())
        && old_seq > upto_seq
    {
        return Err(refuse(format!(
            "existing snapshot covers {old_seq} > {upto_seq}"
        )));
    }
    snaps
        .insert(room, encode_snapshot(upto_seq, snapshot).as_slice())
        .map_err(super::write_err)?;
    log.retain_in((room, 0)..=(room, upto_seq), |_, _| false)
        .map_err(super::write_err)?;
    // The log may now be empty: `relay_rooms` must carry the last seq so it is never reused.
    rooms.insert(room, high).map_err(super::write_err)?;
    Ok(())
}
