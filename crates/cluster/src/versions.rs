//! `VersionStore`: document versions (the relay's `RoomStore::add_version` and its reads) on
//! JetStream, one KV bucket and one object store per deployment (named after the room log's
//! stream prefix, `{prefix}_versions`).
//!
//! Owns: the layout. A room's version index (every row's metadata, `versions::VersionMeta`) is
//! one KV entry under the room's escaped name, written with compare-and-set on its revision, so
//! two writers never both extend a room's chain (the loser is fenced); a row's data is the
//! object `{room}.{id}` (the object store chunks it, so a version may exceed a message).
//! Data goes in before the index names it and out after the index forgot it: a crash leaves at
//! worst an object nobody lists, overwritten when the id is used again after a room deletion.
//! The rules (ids, retention, which rows stay) are the relay's, in `store::versions`.
//!
//! Must not know: yrs (the data is opaque bytes), sockets, leases.

use async_nats::jetstream::{self, kv, object_store};
use tokio::io::AsyncReadExt;
use weaver_relay::store::versions::{self, NewVersion, Retention, VersionMeta};

use crate::error::VersionError;
use crate::names::encode_room;

/// Leading byte of an index entry (`[1] ++ JSON array of rows`).
const INDEX_V1: u8 = 1;

/// Versions of every room of a deployment.
#[derive(Clone)]
pub(crate) struct VersionStore {
    index: kv::Store,
    data: object_store::ObjectStore,
}

/// The object store has no `Debug`; the bucket's name says enough.
impl std::fmt::Debug for VersionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionStore")
            .field("index", &self.index.name)
            .finish_non_exhaustive()
    }
}

/// What `add` decided.
pub(crate) enum Added {
    Stored(VersionMeta),
    /// The version's base is not the room's newest row.
    StaleBase,
}

impl VersionStore {
    /// Creates the bucket and the object store if missing.
    pub(crate) async fn open(
        js: &jetstream::Context,
        prefix: &str,
        replicas: usize,
    ) -> Result<VersionStore, VersionError> {
        let bucket = format!("{prefix}_versions");
        let index = js
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|source| VersionError::Bucket {
                bucket: bucket.clone(),
                source,
            })?;
        let data = js
            .create_object_store(object_store::Config {
                bucket: bucket.clone(),
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|source| VersionError::Objects { bucket, source })?;
        Ok(VersionStore { index, data })
    }

    /// The room's rows and the index entry's revision (`None`: no entry).
    async fn read_index(
        &self,
        room: &str,
    ) -> Result<(Vec<VersionMeta>, Option<u64>), VersionError> {
        let entry = self
            .index
            .entry(encode_room(room))
            .await
            .map_err(|source| VersionError::Index {
                room: room.to_owned(),
                source,
            })?;
        let Some(entry) = entry else {
            return Ok((Vec::new(), None));
        };
        // A purged (deleted) room reads as an entry with an empty value.
        if entry.operation != kv::Operation::Put {
            return Ok((Vec::new(), Some(entry.revision)));
        }
        let rows = match entry.value.split_first() {
            Some((&INDEX_V1, json)) => serde_json::from_slice(json).ok(),
            _ => None,
        }
        .ok_or_else(|| VersionError::Corrupt {
            room: room.to_owned(),
        })?;
        Ok((rows, Some(entry.revision)))
    }

    pub(crate) async fn list(&self, room: &str) -> Result<Vec<VersionMeta>, VersionError> {
        Ok(self.read_index(room).await?.0)
    }

    /// Stores `version`, applies `retention` and drops the rows no listed version needs.
    pub(crate) async fn add(
        &self,
        room: &str,
        version: &NewVersion,
        retention: &Retention,
    ) -> Result<Added, VersionError> {
        let (mut rows, revision) = self.read_index(room).await?;
        let newest = rows.last().map(|m| m.id);
        if version.base.is_some() && version.base != newest {
            return Ok(Added::StaleBase);
        }
        let meta = version.meta(newest.unwrap_or(0) + 1);
        let name = object_name(room, meta.id);
        self.data
            .put(name.as_str(), &mut version.data.as_slice())
            .await
            .map_err(|source| VersionError::PutData {
                room: room.to_owned(),
                source,
            })?;
        rows.push(meta.clone());
        let retired = versions::retire(&rows, retention);
        for m in rows.iter_mut().filter(|m| retired.contains(&m.id)) {
            m.listed = false;
        }
        let gone = versions::removable(&rows);
        rows.retain(|m| !gone.contains(&m.id));
        let mut value = vec![INDEX_V1];
        serde_json::to_writer(&mut value, &rows).map_err(VersionError::Encode)?;
        self.write_index(room, value, revision).await?;
        for id in gone {
            self.remove_object(room, id).await;
        }
        Ok(Added::Stored(meta))
    }

    /// The data of rows `ids`, in order; `Ok(None)` when one of them is not stored.
    pub(crate) async fn data(
        &self,
        room: &str,
        ids: &[u64],
    ) -> Result<Result<Vec<Vec<u8>>, u64>, VersionError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let mut object = match self.data.get(object_name(room, id)).await {
                Ok(o) => o,
                Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(Err(id)),
                Err(source) => {
                    return Err(VersionError::GetData {
                        room: room.to_owned(),
                        source,
                    });
                }
            };
            let mut bytes = Vec::new();
            object
                .read_to_end(&mut bytes)
                .await
                .map_err(|source| VersionError::ReadData {
                    room: room.to_owned(),
                    source,
                })?;
            out.push(bytes);
        }
        Ok(Ok(out))
    }

    /// Stores the data of row `id` (a restore, before [`VersionStore::put_index`] names it).
    pub(crate) async fn put_data(
        &self,
        room: &str,
        id: u64,
        data: &[u8],
    ) -> Result<(), VersionError> {
        let mut reader = data;
        self.data
            .put(object_name(room, id).as_str(), &mut reader)
            .await
            .map(|_| ())
            .map_err(|source| VersionError::PutData {
                room: room.to_owned(),
                source,
            })
    }

    /// Refuses ([`VersionError::Conflict`]) when the room has an index other than `rows`: checked
    /// before a restore writes the versions' data, which would replace a node's own rows' data.
    pub(crate) async fn check_vacant(
        &self,
        room: &str,
        rows: &[VersionMeta],
    ) -> Result<(), VersionError> {
        let (existing, _) = self.read_index(room).await?;
        if existing.is_empty() || existing.as_slice() == rows {
            Ok(())
        } else {
            Err(VersionError::Conflict {
                room: room.to_owned(),
            })
        }
    }

    /// Writes the room's whole index as `rows` (a restore, after their data), where the room
    /// has none (never had, or deleted): created, or compare-and-set on a deleted one's entry,
    /// so an index a node wrote meanwhile is never overwritten ([`VersionError::Conflict`]).
    /// The same rows there already are taken as written: a restore cut off after its index is
    /// resumed.
    pub(crate) async fn put_index(
        &self,
        room: &str,
        rows: &[VersionMeta],
    ) -> Result<(), VersionError> {
        let mut value = vec![INDEX_V1];
        serde_json::to_writer(&mut value, rows).map_err(VersionError::Encode)?;
        match self.read_index(room).await? {
            (existing, Some(_)) if existing.as_slice() == rows && !rows.is_empty() => Ok(()),
            (existing, Some(_)) if !existing.is_empty() => Err(VersionError::Conflict {
                room: room.to_owned(),
            }),
            (_, revision) => self.write_index(room, value, revision).await,
        }
    }

    /// Writes the room's index entry as `value`: compare-and-set on `revision` (the entry read),
    /// created where there was none; [`VersionError::Conflict`] when another writer was first.
    async fn write_index(
        &self,
        room: &str,
        value: Vec<u8>,
        revision: Option<u64>,
    ) -> Result<(), VersionError> {
        let key = encode_room(room);
        let conflict = || VersionError::Conflict {
            room: room.to_owned(),
        };
        match revision {
            Some(rev) => self
                .index
                .update(&key, value.into(), rev)
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                        conflict()
                    } else {
                        VersionError::Write {
                            room: room.to_owned(),
                            source: e,
                        }
                    }
                }),
            None => self
                .index
                .create(&key, value.into())
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.kind() == kv::CreateErrorKind::AlreadyExists {
                        conflict()
                    } else {
                        VersionError::Create {
                            room: room.to_owned(),
                            source: e,
                        }
                    }
                }),
        }
    }

    /// Removes every version of the room (the room is deleted).
    pub(crate) async fn delete(&self, room: &str) -> Result<(), VersionError> {
        let (rows, revision) = self.read_index(room).await?;
        if revision.is_none() {
            return Ok(());
        }
        self.index
            .purge(encode_room(room))
            .await
            .map_err(|source| VersionError::Purge {
                room: room.to_owned(),
                source,
            })?;
        for m in rows {
            self.remove_object(room, m.id).await;
        }
        Ok(())
    }

    /// Best effort: an object left behind is unlisted and overwritten when its id comes again.
    async fn remove_object(&self, room: &str, id: u64) {
        if let Err(e) = self.data.delete(object_name(room, id)).await {
            tracing::warn!(room, id, error = %e, "could not remove a version's data");
        }
    }
}

fn object_name(room: &str, id: u64) -> String {
    format!("{}.{id}", encode_room(room))
}
