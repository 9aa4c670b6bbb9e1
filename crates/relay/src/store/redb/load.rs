//! Reading one room from redb: its snapshot and the log tail after it, in one read
//! transaction (run on tokio's blocking pool by the caller). Loading a room to serve it, and
//! reading one out of an interchange file (transfer.rs), share [`read_stored`].

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable};
use tracing::warn;

use super::format::{FORMAT_V1, SNAPSHOTS, UPDATES, stored_snapshot};
use super::read_err;
use crate::metrics as m;
use crate::store::{StoreError, StoredRoom};

/// What a reader does with a log row in a format it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnknownRows {
    /// Skip it and count it as poison: the rest of the room still loads (serving).
    Skip,
    /// Fail: a copy must not drop what it cannot read.
    Refuse,
}

/// Reads `room`'s snapshot and log tail. A log row in an unknown format is skipped and counted
/// as poison, not fatal: the rest of the room still loads.
pub(super) fn load_blocking(db: &Database, room: &str) -> Result<StoredRoom, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    read_stored(&txn, room, UnknownRows::Skip)
}

/// `room`'s snapshot and the log rows after it, as `txn` sees them.
pub(super) fn read_stored(
    txn: &ReadTransaction,
    room: &str,
    unknown: UnknownRows,
) -> Result<StoredRoom, StoreError> {
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
        match (v.value().split_first(), unknown) {
            (Some((&FORMAT_V1, update)), _) => out.tail.push((seq, update.to_vec())),
            (_, UnknownRows::Skip) => {
                warn!(room, seq, "skipping log row with unknown format");
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
            }
            (_, UnknownRows::Refuse) => {
                return Err(StoreError::Corrupt {
                    table: "relay_updates",
                    room: room.to_owned(),
                    reason: "log row in an unknown format",
                });
            }
        }
    }
    Ok(out)
}
