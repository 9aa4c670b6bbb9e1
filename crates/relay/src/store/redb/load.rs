//! Loading one room from redb: its snapshot and the log tail after it, in one read
//! transaction (run on tokio's blocking pool by the caller).

use redb::{Database, ReadableDatabase, ReadableTable};
use tracing::warn;

use super::format::{FORMAT_V1, SNAPSHOTS, UPDATES, stored_snapshot};
use super::read_err;
use crate::metrics as m;
use crate::store::{StoreError, StoredRoom};

/// Reads `room`'s snapshot and log tail. A log row in an unknown format is skipped and counted
/// as poison, not fatal: the rest of the room still loads.
pub(super) fn load_blocking(db: &Database, room: &str) -> Result<StoredRoom, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let snaps = txn.open_table(SNAPSHOTS).map_err(read_err)?;
    let mut out = StoredRoom::default();
    if let Some(v) = snaps.get(room).map_err(read_err)? {
        let (seq, bytes) = stored_snapshot(v.value(), room)?;
        out.snapshot_seq = seq;
        out.snapshot = Some(bytes.to_vec());
    }
    let log = txn.open_table(UPDATES).map_err(read_err)?;
    let start = out.snapshot_seq.saturating_add(1);
    for row in log
        .range((room, start)..=(room, u64::MAX))
        .map_err(read_err)?
    {
        let (k, v) = row.map_err(read_err)?;
        let (_, seq) = k.value();
        match v.value().split_first() {
            Some((&FORMAT_V1, update)) => out.tail.push((seq, update.to_vec())),
            _ => {
                warn!(room, seq, "skipping log row with unknown format");
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
            }
        }
    }
    Ok(out)
}
