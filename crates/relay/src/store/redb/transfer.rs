//! A relay database as an interchange file between engines: writing rooms (snapshot + log tail
//! and their versions) into a fresh relay database, and reading them out of one. A cluster
//! backup (`GET /api/backup` in cluster mode) writes the rooms it reads from JetStream with
//! these functions, so the file is exactly what `weaver serve --data` opens; `weaver restore
//! --cluster` reads a backup (a cluster's or a single node's) with them. The row formats stay
//! in `format.rs` and `versions.rs`: nothing here encodes a row of its own.
//!
//! Everything works on a transaction the caller holds (the caller decides how many rooms go
//! in one commit and where the file lives). Deliberately not here: files, HTTP, other engines.

use redb::{ReadTransaction, ReadableTable, TableError, TableHandle, WriteTransaction};

use super::format::{
    FORMAT_V1, META, ROOMS, SNAPSHOTS, STORAGE_FORMAT, STORAGE_FORMAT_V1, UPDATES, VERSION_DATA,
    VERSIONS, encode_snapshot,
};
use super::{read_err, write_err};
use crate::store::versions::{VersionMeta, encode_meta};
use crate::store::{StoreError, StoredRoom};

/// Creates every relay table in `txn` and records the storage format: a fresh database this
/// binary (and `weaver serve --data`) opens as its own. Returns the tables' names.
pub fn init_tables(txn: &WriteTransaction) -> Result<Vec<String>, StoreError> {
    txn.open_table(UPDATES).map_err(write_err)?;
    txn.open_table(SNAPSHOTS).map_err(write_err)?;
    txn.open_table(ROOMS).map_err(write_err)?;
    txn.open_table(VERSIONS).map_err(write_err)?;
    txn.open_table(VERSION_DATA).map_err(write_err)?;
    txn.open_table(META)
        .map_err(write_err)?
        .insert("format", [STORAGE_FORMAT].as_slice())
        .map_err(write_err)?;
    let names = [
        META.name(),
        ROOMS.name(),
        SNAPSHOTS.name(),
        UPDATES.name(),
        VERSIONS.name(),
        VERSION_DATA.name(),
    ];
    Ok(names.iter().map(|n| (*n).to_owned()).collect())
}

/// Writes `room` as `stored` into `txn` (a database made by [`init_tables`], without this
/// room): its snapshot, its log tail at the same seqs, and its last seq. A room with nothing
/// stored is not written (it would not be a stored room).
pub fn write_room(
    txn: &WriteTransaction,
    room: &str,
    stored: &StoredRoom,
) -> Result<(), StoreError> {
    let last = stored
        .tail
        .last()
        .map_or(stored.snapshot_seq, |(seq, _)| *seq);
    if stored.snapshot.is_none() && stored.tail.is_empty() {
        return Ok(());
    }
    if let Some(snapshot) = &stored.snapshot {
        txn.open_table(SNAPSHOTS)
            .map_err(write_err)?
            .insert(
                room,
                encode_snapshot(stored.snapshot_seq, snapshot).as_slice(),
            )
            .map_err(write_err)?;
    }
    let mut log = txn.open_table(UPDATES).map_err(write_err)?;
    let mut row = Vec::new();
    for (seq, update) in &stored.tail {
        row.clear();
        row.push(FORMAT_V1);
        row.extend_from_slice(update);
        log.insert((room, *seq), row.as_slice())
            .map_err(write_err)?;
    }
    // Exact: the log holds nothing above it (see `ROOMS`).
    txn.open_table(ROOMS)
        .map_err(write_err)?
        .insert(room, last)
        .map_err(write_err)?;
    Ok(())
}

/// Writes one version row of `room` (its metadata as stored, and its data) into `txn`. Rows
/// keep their ids, bases and listing, so chains resolve as they did where they were read.
pub fn write_version(
    txn: &WriteTransaction,
    room: &str,
    meta: &VersionMeta,
    data: &[u8],
) -> Result<(), StoreError> {
    txn.open_table(VERSIONS)
        .map_err(write_err)?
        .insert((room, meta.id), encode_meta(meta).as_slice())
        .map_err(write_err)?;
    txn.open_table(VERSION_DATA)
        .map_err(write_err)?
        .insert((room, meta.id), data)
        .map_err(write_err)?;
    Ok(())
}

/// Why a database is not one whose rooms can be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    /// No `relay_meta` table, or no storage format in it: not a Weaver store or backup.
    #[error("not a Weaver store or backup (it has no relay storage format)")]
    NotAStore,
    /// A storage format this binary does not know (written by a newer version).
    #[error("storage format {found:?} is not one this binary reads (newer than it?)")]
    UnknownFormat { found: Vec<u8> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks that `txn` reads a relay database in a storage format this binary knows.
pub fn check_format(txn: &ReadTransaction) -> Result<(), ReadFileError> {
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Err(ReadFileError::NotAStore),
        Err(e) => return Err(read_err(e).into()),
    };
    let found = meta.get("format").map_err(read_err)?;
    match found.as_ref().map(|v| v.value()) {
        None => Err(ReadFileError::NotAStore),
        Some([STORAGE_FORMAT] | [STORAGE_FORMAT_V1]) => Ok(()),
        Some(other) => Err(ReadFileError::UnknownFormat {
            found: other.to_vec(),
        }),
    }
}

/// Names of every stored room in `txn`, in name order.
pub fn room_names(txn: &ReadTransaction) -> Result<Vec<String>, StoreError> {
    let rooms = match txn.open_table(ROOMS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut out = Vec::new();
    for row in rooms.iter().map_err(read_err)? {
        out.push(row.map_err(read_err)?.0.value().to_owned());
    }
    Ok(out)
}

/// `room` as stored in `txn`: snapshot and log tail. Unlike a load for serving, a log row in an
/// unknown format is an error here: a copy must not drop what it cannot read.
pub fn read_room(txn: &ReadTransaction, room: &str) -> Result<StoredRoom, StoreError> {
    super::load::read_stored(txn, room, super::load::UnknownRows::Refuse)
}

/// Every version row of `room` in `txn`, ascending id (listed or not).
pub fn read_versions(txn: &ReadTransaction, room: &str) -> Result<Vec<VersionMeta>, StoreError> {
    match txn.open_table(VERSIONS) {
        Ok(rows) => super::versions::metas(&rows, room),
        Err(TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(read_err(e)),
    }
}

/// The data of version `id` of `room` in `txn`.
pub fn read_version_data(
    txn: &ReadTransaction,
    room: &str,
    id: u64,
) -> Result<Vec<u8>, StoreError> {
    let data = txn.open_table(VERSION_DATA).map_err(read_err)?;
    super::versions::data_of(&data, room, id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use redb::ReadableDatabase;

    use super::*;
    use crate::store::RoomStore;
    use crate::store::redb::{CommitMode, RedbRoomStore, open_database};
    use crate::store::versions::VersionKind;

    fn meta(id: u64, base: Option<u64>, listed: bool) -> VersionMeta {
        VersionMeta {
            id,
            seq: 3,
            created_at_ms: 7,
            kind: VersionKind::Explicit,
            label: Some(format!("v{id}")),
            bytes: 2,
            base,
            chain_bytes: 0,
            full_bytes: 2,
            state_vector: vec![0],
            listed,
        }
    }

    /// What `write_room` and `write_version` put in a fresh database is what the redb engine
    /// serves from it (same seqs, a re-created room above 1 included), and what the readers
    /// read back; the appends after it continue the seqs.
    #[tokio::test]
    async fn rooms_written_into_a_fresh_database_are_served_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(dir.path()).unwrap();
        let compacted = StoredRoom {
            snapshot: Some(b"snap".to_vec()),
            snapshot_seq: 5,
            tail: vec![(6, b"six".to_vec()), (7, b"seven".to_vec())],
        };
        // A room deleted and re-created in a cluster: no snapshot, seqs above 1.
        let recreated = StoredRoom {
            snapshot: None,
            snapshot_seq: 0,
            tail: vec![(41, b"a".to_vec()), (42, b"b".to_vec())],
        };
        {
            let txn = db.begin_write().unwrap();
            let tables = init_tables(&txn).unwrap();
            assert_eq!(tables.len(), 6);
            write_room(&txn, "c", &compacted).unwrap();
            write_room(&txn, "r", &recreated).unwrap();
            write_room(&txn, "empty", &StoredRoom::default()).unwrap();
            write_version(&txn, "c", &meta(1, None, false), b"v1").unwrap();
            write_version(&txn, "c", &meta(2, Some(1), true), b"v2").unwrap();
            txn.commit().unwrap();
        }
        {
            let txn = db.begin_read().unwrap();
            check_format(&txn).unwrap();
            assert_eq!(room_names(&txn).unwrap(), ["c", "r"]);
            assert_eq!(read_room(&txn, "c").unwrap(), compacted);
            assert_eq!(read_room(&txn, "r").unwrap(), recreated);
            assert_eq!(
                read_versions(&txn, "c").unwrap(),
                vec![meta(1, None, false), meta(2, Some(1), true)]
            );
            assert_eq!(read_version_data(&txn, "c", 2).unwrap(), b"v2");
            assert!(read_version_data(&txn, "c", 3).is_err());
        }
        let store = RedbRoomStore::start(db.clone(), CommitMode::OnePhase).unwrap();
        assert_eq!(store.load(Arc::from("c")).await.unwrap(), compacted);
        assert_eq!(store.load(Arc::from("r")).await.unwrap(), recreated);
        assert_eq!(store.versions(Arc::from("c")).await.unwrap().len(), 2);
        assert_eq!(
            store
                .append(Arc::from("c"), vec![bytes::Bytes::from_static(b"8")])
                .await
                .unwrap(),
            8
        );
        assert_eq!(
            store
                .append(Arc::from("r"), vec![bytes::Bytes::from_static(b"43")])
                .await
                .unwrap(),
            43
        );
        store.stop().await;
    }

    #[test]
    fn a_database_without_the_relay_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("x.redb")).unwrap();
        let txn = db.begin_read().unwrap();
        assert!(matches!(check_format(&txn), Err(ReadFileError::NotAStore)));
        drop(txn);
        let w = db.begin_write().unwrap();
        w.open_table(META)
            .unwrap()
            .insert("format", [9u8].as_slice())
            .unwrap();
        w.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert!(matches!(
            check_format(&txn),
            Err(ReadFileError::UnknownFormat { found }) if found == [9]
        ));
    }
}
