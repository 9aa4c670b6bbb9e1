//! `RoomTransfer`: what a backup and a restore need of the cluster's rooms. Reading a room
//! copies it as stored (snapshot + log tail, and its versions) without taking it over: no
//! takeover record, no lease, so a backup never moves a room or fences its owner. Importing
//! writes a room read elsewhere (a backup file) at its own seqs into a subject that never held
//! anything, so a restore never overwrites a room nor reuses a deleted room's seqs.
//!
//! Consistency is per room: its versions are read first, then its log, so every version a copy
//! holds shows a state the copied room contains (the log only grows). Different rooms are read
//! at different moments. Order of an import: the versions' data, their index, then the room's
//! one log record, the commit point (a room whose record is missing has no versions anyone
//! lists, and a new import of it overwrites them).
//!
//! Must not know: files, redb, HTTP, yrs (the bytes are opaque).

use std::sync::Arc;

use futures_util::StreamExt;

use weaver_relay::store::StoredRoom;
use weaver_relay::store::versions::VersionMeta;

use crate::error::{LogError, VersionError};
use crate::room_log::{self, RoomLog, RoomLogConfig};
use crate::versions::VersionStore;

/// Rooms whose subjects [`RoomTransfer::occupied`] checks at once.
const CHECKS_AT_ONCE: usize = 32;

/// How often a copy re-reads a room's version index when retention removed a row's data
/// between reading the index and the data.
const VERSION_READS: usize = 3;

/// One room as copied: what the relay's storage shape holds, and every version row (listed or
/// kept as the base of a listed one) with its data, ascending id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomCopy {
    pub stored: StoredRoom,
    pub versions: Vec<(VersionMeta, Vec<u8>)>,
}

/// Errors of copying rooms out of or into the cluster.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Versions(#[from] VersionError),
}

/// Reads and writes whole rooms of a deployment (its streams, its version bucket).
#[derive(Debug)]
pub struct RoomTransfer {
    /// A log of its own: its lanes are dropped after every room.
    log: RoomLog,
    versions: VersionStore,
}

impl RoomTransfer {
    /// Opens the room streams and the version bucket (creating them if missing, with the
    /// replicas of `cfg`: a restore into a new cluster creates them).
    pub async fn open(
        client: async_nats::Client,
        cfg: RoomLogConfig,
    ) -> Result<RoomTransfer, TransferError> {
        let js = crate::connect::jetstream(client.clone(), cfg.request_timeout);
        let versions = VersionStore::open(&js, &cfg.stream_prefix, cfg.replicas).await?;
        let log = RoomLog::open(client, cfg).await?;
        Ok(RoomTransfer { log, versions })
    }

    /// Names of every stored room, sorted.
    pub async fn rooms(&self) -> Result<Vec<String>, LogError> {
        Ok(self
            .log
            .rooms()
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect())
    }

    /// Copies `room` as stored now: `None` when it holds nothing (deleted meanwhile).
    pub async fn read(&self, room: &str) -> Result<Option<RoomCopy>, TransferError> {
        let versions = self.read_versions(room).await?;
        let name: Arc<str> = Arc::from(room);
        let stored = self.log.load(name.clone()).await;
        self.log.forget(&name);
        let stored = crate::room_store::relay_room(stored?);
        if stored.snapshot.is_none() && stored.tail.is_empty() {
            return Ok(None);
        }
        Ok(Some(RoomCopy { stored, versions }))
    }

    async fn read_versions(
        &self,
        room: &str,
    ) -> Result<Vec<(VersionMeta, Vec<u8>)>, TransferError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let rows = self.versions.list(room).await?;
            let ids: Vec<u64> = rows.iter().map(|m| m.id).collect();
            match self.versions.data(room, &ids).await? {
                Ok(data) => return Ok(rows.into_iter().zip(data).collect()),
                Err(id) if attempt >= VERSION_READS => {
                    return Err(VersionError::Missing {
                        room: room.to_owned(),
                        id,
                    }
                    .into());
                }
                Err(_) => {}
            }
        }
    }

    /// Which of `rooms` the cluster holds anything of already (stored, deleted or loaded
    /// once): what [`RoomTransfer::import`] refuses.
    pub async fn occupied(&self, rooms: &[String]) -> Result<Vec<String>, LogError> {
        let found: Vec<Result<Option<String>, LogError>> = futures_util::stream::iter(rooms)
            .map(|room| async move { Ok(self.log.occupied(room).await?.then(|| room.clone())) })
            .buffered(CHECKS_AT_ONCE)
            .collect()
            .await;
        let mut out = Vec::new();
        for f in found {
            out.extend(f?);
        }
        Ok(out)
    }

    /// Writes `copy` as room `room`, at its own seqs with its versions (module doc for the
    /// order). [`LogError::Occupied`] when the cluster holds anything of the room already;
    /// nothing is written then.
    pub async fn import(&self, room: &str, copy: RoomCopy) -> Result<(), TransferError> {
        if self.log.occupied(room).await? {
            return Err(LogError::Occupied {
                room: room.to_owned(),
            }
            .into());
        }
        if !copy.versions.is_empty() {
            let rows: Vec<VersionMeta> = copy.versions.iter().map(|(m, _)| m.clone()).collect();
            self.versions.check_vacant(room, &rows).await?;
            for (meta, data) in &copy.versions {
                self.versions.put_data(room, meta.id, data).await?;
            }
            self.versions.put_index(room, &rows).await?;
        }
        let stored = room_log::StoredRoom {
            snapshot: copy.stored.snapshot,
            snapshot_seq: copy.stored.snapshot_seq,
            tail: copy.stored.tail,
        };
        self.log.import(Arc::from(room), stored).await?;
        Ok(())
    }

    /// Stops the log's lanes and flushes the connection.
    pub async fn stop(&self) {
        self.log.stop().await;
    }
}
