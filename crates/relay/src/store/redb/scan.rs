//! Scanning a room's stored bytes for a marker without loading it: one read transaction over
//! its snapshot and log tail, no copy of the rows and no yrs document. The bridge's start-up
//! sweep asks this of every stored room, so it must stay far cheaper than a load.

use redb::{Database, ReadableDatabase, ReadableTable};

use super::format::{FORMAT_V1, SNAPSHOTS, UPDATES, decode_snapshot};
use super::read_err;
use crate::store::StoreError;

/// Whether `needle` occurs in `room`'s stored snapshot or in any row of its log after it.
///
/// Every row is a whole v1 update, so a marker that names a root type never spans two rows.
/// Rows this engine cannot decode count as containing it: the caller then loads the room and
/// the load decides, rather than this scan hiding content.
pub(super) fn contains_blocking(
    db: &Database,
    room: &str,
    needle: &[u8],
) -> Result<bool, StoreError> {
    if needle.is_empty() {
        return Ok(true);
    }
    let found = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let txn = db.begin_read().map_err(read_err)?;
    let snaps = txn.open_table(SNAPSHOTS).map_err(read_err)?;
    let mut start = 1;
    if let Some(v) = snaps.get(room).map_err(read_err)? {
        let Some((seq, bytes)) = decode_snapshot(v.value()) else {
            return Ok(true);
        };
        if found(bytes) {
            return Ok(true);
        }
        start = seq.saturating_add(1);
    }
    let log = txn.open_table(UPDATES).map_err(read_err)?;
    for row in log
        .range((room, start)..=(room, u64::MAX))
        .map_err(read_err)?
    {
        let (_, v) = row.map_err(read_err)?;
        match v.value().split_first() {
            Some((&FORMAT_V1, update)) if !found(update) => {}
            _ => return Ok(true),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::super::CommitMode;
    use super::super::test_support::{b, start};
    use crate::store::RoomStore;

    /// The marker is found in the log, in a snapshot, not after compaction dropped the row
    /// that held it, and never in another room's bytes.
    #[tokio::test]
    async fn finds_the_marker_in_snapshot_and_log_only_of_its_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = start(dir.path(), CommitMode::OnePhase);
        let (a, z): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("z"));
        let has = |room: &Arc<str>| store.stored_bytes_contain(room.clone(), b"blocks".to_vec());
        assert!(!has(&a).await.unwrap(), "a room never stored has nothing");
        store
            .append(a.clone(), vec![b("text"), b("more")])
            .await
            .unwrap();
        store.append(z.clone(), vec![b("xblocksx")]).await.unwrap();
        assert!(!has(&a).await.unwrap());
        assert!(has(&z).await.unwrap());
        store.append(a.clone(), vec![b("..blocks")]).await.unwrap();
        assert!(has(&a).await.unwrap(), "in the log");
        store
            .compact(a.clone(), 3, b"snap with blocks".to_vec())
            .await
            .unwrap();
        assert!(has(&a).await.unwrap(), "in the snapshot");
        store
            .compact(a.clone(), 3, b"plain".to_vec())
            .await
            .unwrap();
        store.append(a.clone(), vec![b("tail")]).await.unwrap();
        assert!(!has(&a).await.unwrap(), "gone with the compacted rows");
        store.stop().await;
    }
}
