//! Listing stored rooms from redb: every name (`relay_rooms` keys), and pages of rooms by
//! prefix with their last seq and, on request, what each holds. One read transaction each.

use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable};
use tracing::warn;

use super::format::{ROOMS, SNAPSHOTS, UPDATES, last_logged, stored_snapshot};
use super::read_err;
use crate::store::{Detail, StoreError, StoredRoomInfo};

/// Names of every room with stored content (in name order).
pub(super) fn rooms_blocking(db: &Database) -> Result<Vec<String>, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let rooms = txn.open_table(ROOMS).map_err(read_err)?;
    let mut out = Vec::new();
    for row in rooms.iter().map_err(read_err)? {
        let (k, _) = row.map_err(read_err)?;
        out.push(k.value().to_owned());
    }
    Ok(out)
}

/// Up to `limit` rooms starting with `prefix`, after `after`, in byte order of the name.
pub(super) fn list_blocking(
    db: &Database,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
    detail: Detail,
) -> Result<Vec<StoredRoomInfo>, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let rooms = txn.open_table(ROOMS).map_err(read_err)?;
    let snaps = txn.open_table(SNAPSHOTS).map_err(read_err)?;
    let log = txn.open_table(UPDATES).map_err(read_err)?;
    let range = match after {
        Some(a) if a >= prefix => rooms.range((Bound::Excluded(a), Bound::<&str>::Unbounded)),
        _ => rooms.range(prefix..),
    }
    .map_err(read_err)?;
    let mut out = Vec::new();
    for row in range {
        if out.len() >= limit {
            break;
        }
        let (k, recorded) = row.map_err(read_err)?;
        let name = k.value();
        if !name.starts_with(prefix) {
            break;
        }
        let mut info = StoredRoomInfo {
            name: name.to_owned(),
            last_seq: recorded.value(),
            ..Default::default()
        };
        if detail == Detail::Seq {
            let logged = last_logged(&log, name).map_err(read_err)?;
            info.last_seq = info.last_seq.max(logged.unwrap_or(0));
            out.push(info);
            continue;
        }
        if let Some(v) = snaps.get(name).map_err(read_err)? {
            // One unreadable row must not hide every room after it from the listing; loading
            // that room reports it as corrupt.
            match stored_snapshot(v.value(), name) {
                Ok((seq, bytes)) => {
                    info.snapshot_seq = seq;
                    info.snapshot_bytes = bytes.len() as u64;
                }
                Err(e) => {
                    warn!(room = name, error = %e, "listing a room whose snapshot row is unreadable")
                }
            }
        }
        for row in log.range((name, 0)..=(name, u64::MAX)).map_err(read_err)? {
            let (k, v) = row.map_err(read_err)?;
            info.last_seq = info.last_seq.max(k.value().1);
            info.log_updates += 1;
            info.log_bytes += v.value().len().saturating_sub(1) as u64;
        }
        out.push(info);
    }
    Ok(out)
}
