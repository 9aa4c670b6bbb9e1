//! The relay's redb tables and row formats (docs/storage.md), the storage format version in
//! `relay_meta` and its in-place upgrade, and the rules that read a room's last seq from them.
//! Only this folder opens `relay_*` tables.

use redb::{Database, ReadableTable, TableDefinition};
use tracing::info;

use super::open::{OpenError, redb_err};
use crate::store::StoreError;

/// `(room, seq)` → `[FORMAT_V1] ++ v1 update`. Seqs are per room, strictly increasing, never reused.
pub(crate) const UPDATES: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("relay_updates");
/// `room` → `[FORMAT_V1] ++ last_seq (u64 LE) ++ v1 update of the merged state up to last_seq`.
pub(crate) const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("relay_snapshots");
/// `room` → a lower bound of the highest seq ever assigned in the room, exact whenever the log
/// holds no row above it (after compaction emptied the log). The room's last seq is the larger
/// of this and its last log key (`last_seq`). Written at a room's first append and at
/// compaction only, so an ordinary append touches one table (fewer pages per commit).
pub(crate) const ROOMS: TableDefinition<&str, u64> = TableDefinition::new("relay_rooms");
/// `(room, version id)` → `versions::encode_meta` of the row (docs/storage.md, "Versions").
pub(crate) const VERSIONS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("relay_versions");
/// `(room, version id)` → the row's data: a v1 update of the whole document, or of what
/// changed since the row before it.
pub(crate) const VERSION_DATA: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("relay_version_data");
/// Global facts: `format` → `[STORAGE_FORMAT]`.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("relay_meta");

/// Leading byte of every log and snapshot row.
pub(super) const FORMAT_V1: u8 = 1;
/// Version of the table layout as a whole, kept in `relay_meta`. 1: `relay_rooms` held the
/// exact last seq, rewritten on every append. 2: it is a lower bound (see `ROOMS`). A version 1
/// database is valid version 2 data and is upgraded in place at open; binaries that know only
/// version 1 refuse a version 2 database, which matters: they would take the stale
/// `relay_rooms` value as the last seq and overwrite log rows.
pub(super) const STORAGE_FORMAT: u8 = 2;
pub(super) const STORAGE_FORMAT_V1: u8 = 1;

/// Creates the relay tables if missing and checks (or records, or upgrades) the storage format.
pub(super) fn prepare(db: &Database) -> Result<(), OpenError> {
    let txn = db.begin_write().map_err(redb_err)?;
    {
        txn.open_table(UPDATES).map_err(redb_err)?;
        txn.open_table(SNAPSHOTS).map_err(redb_err)?;
        txn.open_table(ROOMS).map_err(redb_err)?;
        txn.open_table(VERSIONS).map_err(redb_err)?;
        txn.open_table(VERSION_DATA).map_err(redb_err)?;
        let mut meta = txn.open_table(META).map_err(redb_err)?;
        let existing = meta
            .get("format")
            .map_err(redb_err)?
            .map(|v| v.value().to_vec());
        match existing.as_deref() {
            None | Some([STORAGE_FORMAT_V1]) => {
                if existing.is_some() {
                    info!("upgrading relay storage format 1 -> 2 (no data rewritten)");
                }
                meta.insert("format", [STORAGE_FORMAT].as_slice())
                    .map_err(redb_err)?;
            }
            Some([STORAGE_FORMAT]) => {}
            Some(found) => {
                return Err(OpenError::UnknownFormat {
                    found: found.to_vec(),
                });
            }
        }
    }
    txn.commit().map_err(redb_err)?;
    Ok(())
}

pub(super) fn encode_snapshot(seq: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 9);
    v.push(FORMAT_V1);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

/// [`decode_snapshot`], with the error that names the room when the row is unreadable.
pub(super) fn stored_snapshot<'a>(v: &'a [u8], room: &str) -> Result<(u64, &'a [u8]), StoreError> {
    decode_snapshot(v).ok_or_else(|| StoreError::Corrupt {
        table: "relay_snapshots",
        room: room.to_owned(),
        reason: "bad snapshot row",
    })
}

pub(super) fn decode_snapshot(v: &[u8]) -> Option<(u64, &[u8])> {
    let (&format, rest) = v.split_first()?;
    if format != FORMAT_V1 || rest.len() < 8 {
        return None;
    }
    let (seq, bytes) = rest.split_at(8);
    let seq = u64::from_le_bytes(seq.try_into().ok()?);
    Some((seq, bytes))
}

/// The room's last key in the log, if it has any rows.
pub(super) fn last_logged(
    log: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
) -> Result<Option<u64>, redb::StorageError> {
    Ok(log
        .range((room, 0)..=(room, u64::MAX))?
        .next_back()
        .transpose()?
        .map(|(k, _)| k.value().1))
}

/// The highest seq ever assigned in `room` (0 if none), and whether the room has its
/// `relay_rooms` row. Seqs only grow and compaction records the last one before it deletes
/// rows, so the larger of the row and the last log key is exact.
pub(super) fn last_seq(
    log: &redb::Table<(&str, u64), &[u8]>,
    rooms: &redb::Table<&str, u64>,
    room: &str,
) -> Result<(u64, bool), redb::StorageError> {
    let recorded = rooms.get(room)?.map(|v| v.value());
    let logged = last_logged(log, room)?;
    let seq = recorded.unwrap_or(0).max(logged.unwrap_or(0));
    Ok((seq, recorded.is_some()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::store::RoomStore;
    use crate::store::redb::test_support::{b, start};
    use crate::store::redb::{CommitMode, DB_FILE_NAME, RedbRoomStore, open_database};

    fn rooms_row(dir: &Path, room: &str) -> Option<u64> {
        let db = Database::create(dir.join(DB_FILE_NAME)).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let rooms = txn.open_table(ROOMS).unwrap();
        rooms.get(room).unwrap().map(|v| v.value())
    }

    /// Format 2: an append after a room's first writes only the log, and the seq still
    /// continues exactly across a restart and across a compaction that empties the log.
    #[tokio::test]
    async fn appends_write_only_the_log_and_seqs_survive_restarts_and_full_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = start(dir.path(), CommitMode::OnePhase);
        let r: Arc<str> = Arc::from("e");
        assert_eq!(
            store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
            2
        );
        assert_eq!(store.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
        store.stop().await;
        drop(store);
        assert_eq!(
            rooms_row(dir.path(), "e"),
            Some(2),
            "the row is not rewritten"
        );

        let store = start(dir.path(), CommitMode::OnePhase);
        assert_eq!(store.append(r.clone(), vec![b("4")]).await.unwrap(), 4);
        store
            .compact(r.clone(), 4, b"snap-4".to_vec())
            .await
            .unwrap();
        store.stop().await;
        drop(store);
        assert_eq!(
            rooms_row(dir.path(), "e"),
            Some(4),
            "compaction records the last seq"
        );

        let store = start(dir.path(), CommitMode::OnePhase);
        assert_eq!(store.append(r.clone(), vec![b("5")]).await.unwrap(), 5);
        let loaded = store.load(r).await.unwrap();
        assert_eq!(loaded.snapshot_seq, 4);
        assert_eq!(loaded.tail, vec![(5, b"5".to_vec())]);
    }

    /// A database written by a format-1 binary (relay_rooms exact, rewritten on every append)
    /// is upgraded in place and continues its seqs; an unknown format is refused.
    #[tokio::test]
    async fn a_format_1_database_is_upgraded_and_unknown_formats_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open_database(dir.path()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("format", [STORAGE_FORMAT_V1].as_slice())
                    .unwrap();
                let mut rooms = txn.open_table(ROOMS).unwrap();
                rooms.insert("old", 5).unwrap();
                rooms.insert("empty", 7).unwrap();
                let mut log = txn.open_table(UPDATES).unwrap();
                log.insert(("old", 4), [FORMAT_V1, b'4'].as_slice())
                    .unwrap();
                log.insert(("old", 5), [FORMAT_V1, b'5'].as_slice())
                    .unwrap();
                let mut snaps = txn.open_table(SNAPSHOTS).unwrap();
                snaps
                    .insert("old", encode_snapshot(3, b"s3").as_slice())
                    .unwrap();
                snaps
                    .insert("empty", encode_snapshot(7, b"s7").as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let db = open_database(dir.path()).unwrap();
        let store = RedbRoomStore::start(db.clone(), CommitMode::OnePhase).unwrap();
        {
            let txn = redb::ReadableDatabase::begin_read(&*db).unwrap();
            let meta = txn.open_table(META).unwrap();
            assert_eq!(
                meta.get("format").unwrap().unwrap().value(),
                &[STORAGE_FORMAT]
            );
        }
        assert_eq!(
            store.append(Arc::from("old"), vec![b("6")]).await.unwrap(),
            6
        );
        assert_eq!(
            store
                .append(Arc::from("empty"), vec![b("8")])
                .await
                .unwrap(),
            8
        );
        drop(db);
        store.stop().await;
        drop(store);

        {
            let db = open_database(dir.path()).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", [STORAGE_FORMAT + 1].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let refused =
            RedbRoomStore::start(open_database(dir.path()).unwrap(), CommitMode::OnePhase);
        let Err(e) = refused else {
            panic!("a format-3 database was opened")
        };
        assert!(matches!(&e, OpenError::UnknownFormat { found } if found == &[3]));
        assert!(e.to_string().contains("storage format [3]"), "{e}");
    }

    #[test]
    fn snapshot_rows_round_trip_and_reject_garbage() {
        let row = encode_snapshot(42, b"abc");
        assert_eq!(decode_snapshot(&row), Some((42, &b"abc"[..])));
        assert_eq!(decode_snapshot(&[2, 0, 0]), None);
        assert_eq!(decode_snapshot(&[]), None);
        assert_eq!(decode_snapshot(&[1, 1, 2]), None);
        assert!(matches!(
            stored_snapshot(&[], "r"),
            Err(StoreError::Corrupt { room, .. }) if room == "r"
        ));
    }
}
