//! Versions in redb (`relay_versions`, `relay_version_data`): adding one inside the
//! persister's group transaction (with retention and the removal of rows no listed version
//! needs, atomically), the reads on the blocking pool, and dropping a deleted room's rows.
//!
//! The rules are engine-neutral (`store::versions`); this file only maps them onto tables.
//! Tested through the store by `contract::versions_*` (tests/it/store_contract.rs).

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use super::format::{VERSION_DATA, VERSIONS};
use super::{read_err, write_err};
use crate::store::StoreError;
use crate::store::versions::{self, NewVersion, Retention, VersionMeta, decode_meta, encode_meta};

/// Every version row of `room`, ascending id.
pub(super) fn metas(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
) -> Result<Vec<VersionMeta>, StoreError> {
    let mut out = Vec::new();
    for row in table
        .range((room, 0)..=(room, u64::MAX))
        .map_err(read_err)?
    {
        let (_, v) = row.map_err(read_err)?;
        out.push(decode_meta(v.value()).ok_or_else(|| StoreError::Corrupt {
            table: "relay_versions",
            room: room.to_owned(),
            reason: "bad version row",
        })?);
    }
    Ok(out)
}

/// Adds `version` to `room` in `txn` (refused on its own when its base is not the newest row),
/// then applies `retention` and removes what no listed version needs.
pub(super) fn add_in_txn(
    txn: &WriteTransaction,
    room: &str,
    version: &NewVersion,
    retention: &Retention,
) -> Result<Result<VersionMeta, StoreError>, StoreError> {
    let mut rows = txn.open_table(VERSIONS).map_err(write_err)?;
    let mut data = txn.open_table(VERSION_DATA).map_err(write_err)?;
    let mut all = metas(&rows, room)?;
    let newest = all.last().map(|m| m.id);
    if let Some(base) = version.base
        && newest != Some(base)
    {
        return Ok(Err(StoreError::VersionRefused {
            room: room.to_owned(),
            base,
        }));
    }
    let meta = version.meta(newest.unwrap_or(0) + 1);
    rows.insert((room, meta.id), encode_meta(&meta).as_slice())
        .map_err(write_err)?;
    data.insert((room, meta.id), version.data.as_slice())
        .map_err(write_err)?;
    all.push(meta.clone());
    let retired = versions::retire(&all, retention);
    for m in all.iter_mut().filter(|m| retired.contains(&m.id)) {
        m.listed = false;
        rows.insert((room, m.id), encode_meta(m).as_slice())
            .map_err(write_err)?;
    }
    for id in versions::removable(&all) {
        rows.remove((room, id)).map_err(write_err)?;
        data.remove((room, id)).map_err(write_err)?;
    }
    Ok(Ok(meta))
}

/// Removes every version of `room` in `txn` (the room is deleted).
pub(super) fn delete_in_txn(txn: &WriteTransaction, room: &str) -> Result<(), StoreError> {
    let mut rows = txn.open_table(VERSIONS).map_err(write_err)?;
    let mut data = txn.open_table(VERSION_DATA).map_err(write_err)?;
    rows.retain_in((room, 0)..=(room, u64::MAX), |_, _| false)
        .map_err(write_err)?;
    data.retain_in((room, 0)..=(room, u64::MAX), |_, _| false)
        .map_err(write_err)?;
    Ok(())
}

pub(super) fn list_blocking(db: &Database, room: &str) -> Result<Vec<VersionMeta>, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let rows = txn.open_table(VERSIONS).map_err(read_err)?;
    metas(&rows, room)
}

pub(super) fn data_blocking(
    db: &Database,
    room: &str,
    ids: &[u64],
) -> Result<Vec<Vec<u8>>, StoreError> {
    let txn = db.begin_read().map_err(read_err)?;
    let data = txn.open_table(VERSION_DATA).map_err(read_err)?;
    ids.iter().map(|&id| data_of(&data, room, id)).collect()
}

/// The data of version `id` of `room`.
pub(super) fn data_of(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room: &str,
    id: u64,
) -> Result<Vec<u8>, StoreError> {
    table
        .get((room, id))
        .map_err(read_err)?
        .map(|v| v.value().to_vec())
        .ok_or_else(|| StoreError::VersionMissing {
            room: room.to_owned(),
            id,
        })
}
