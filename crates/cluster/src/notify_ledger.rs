//! The cluster's room-change webhook ledger: weaver-notify's [`Ledger`] in a JetStream KV
//! bucket (`weaver_notify`), room → generation, seq delivered, the last deletion counted and
//! the epoch of the notifier that wrote it.
//!
//! Every write is a compare-and-set on the key's revision, under the writer's epoch (the
//! `notifier` role's lease epoch): a key written under a newer epoch refuses the write with
//! [`LedgerError::Superseded`], so a notifier whose term ended cannot move the ledger back.
//! Seqs never restart in cluster mode (a re-created room continues after its tombstone), so a
//! seq at or below the recorded one is covered; a deletion moves the generation on (new
//! `webhook-id`s) once per tombstone, whoever reads it again.
//! Must not know: HTTP, what a webhook says.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weaver_notify::{Delivered, Ledger, LedgerError};

use crate::names::encode_room;
use crate::room_log::RoomLog;

/// Tries of one compare-and-set before giving up (each lost race re-reads the key).
const CAS_TRIES: usize = 5;

/// Rooms whose revision is cached at most (cleared when full: a miss only costs a read).
const MAX_CACHED: usize = 100_000;

/// One room's ledger entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "g")]
    generation: u64,
    #[serde(rename = "s")]
    seq: u64,
    /// The last seq of the newest tombstone counted (a deletion read again changes nothing).
    #[serde(rename = "t", default)]
    tomb: u64,
    /// The epoch of the notifier that wrote it.
    #[serde(rename = "e")]
    epoch: u64,
}

/// Why the ledger bucket could not open.
#[derive(Debug, thiserror::Error)]
#[error("creating the notification ledger bucket {bucket}")]
pub struct NotifyLedgerError {
    bucket: String,
    #[source]
    source: jetstream::context::CreateKeyValueError,
}

/// The default bucket of the ledger.
pub const NOTIFY_BUCKET: &str = "weaver_notify";

/// The ledger of one notifier term (its epoch).
#[derive(Debug)]
pub struct NotifyLedger {
    kv: kv::Store,
    epoch: u64,
    /// Room key → (entry, revision) as last read or written by this term: it is the only
    /// writer while its lease holds, so a cached revision is current unless superseded.
    cache: Mutex<HashMap<String, (Entry, u64)>>,
}

impl NotifyLedger {
    /// Opens (or creates) the bucket `bucket` next to `log`'s streams (same JetStream, same
    /// replicas) for a notifier term with lease epoch `epoch`.
    pub async fn open(
        log: &RoomLog,
        bucket: &str,
        epoch: u64,
    ) -> Result<NotifyLedger, NotifyLedgerError> {
        let shared = log.shared();
        let replicas = shared.cfg.replicas;
        let kv = shared
            .js
            .create_key_value(kv::Config {
                bucket: bucket.to_owned(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|source| NotifyLedgerError {
                bucket: bucket.to_owned(),
                source,
            })?;
        Ok(NotifyLedger {
            kv,
            epoch,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn cached(&self, key: &str) -> Option<(Entry, u64)> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn remember(&self, key: String, entry: Entry, revision: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(&key) {
            cache.clear();
        }
        cache.insert(key, (entry, revision));
    }

    /// The entry and its revision (0: no entry), from the cache or the bucket.
    async fn read(&self, key: &str, fresh: bool) -> Result<(Entry, u64), LedgerError> {
        if !fresh && let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        let found = self.kv.entry(key).await.map_err(store)?;
        let (entry, revision) = match found {
            Some(e) if e.operation == kv::Operation::Put => {
                let entry: Entry = serde_json::from_slice(&e.value).map_err(store)?;
                (entry, e.revision)
            }
            Some(e) => (Entry::default(), e.revision),
            None => (Entry::default(), 0),
        };
        if entry.epoch > self.epoch {
            return Err(LedgerError::Superseded);
        }
        self.remember(key.to_owned(), entry, revision);
        Ok((entry, revision))
    }

    /// Applies `change` to the room's entry with a compare-and-set, re-reading after a lost
    /// race; `change` returning `None` writes nothing.
    async fn update(
        &self,
        room: &str,
        change: impl Fn(Entry) -> Option<Entry>,
    ) -> Result<(), LedgerError> {
        let key = encode_room(room);
        let mut fresh = false;
        for _ in 0..CAS_TRIES {
            let (entry, revision) = self.read(&key, fresh).await?;
            let Some(mut next) = change(entry) else {
                return Ok(());
            };
            next.epoch = self.epoch;
            let value = Bytes::from(serde_json::to_vec(&next).map_err(store)?);
            let written = if revision == 0 {
                self.kv
                    .create(&key, value)
                    .await
                    .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, store(e)))
            } else {
                self.kv
                    .update(&key, value, revision)
                    .await
                    .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, store(e)))
            };
            match written {
                Ok(rev) => {
                    self.remember(key, next, rev);
                    return Ok(());
                }
                // Someone else wrote it: read again (and find out whether it was a newer term).
                Err((true, _)) => fresh = true,
                Err((false, e)) => return Err(e),
            }
        }
        Err(LedgerError::Store(
            format!("room {room:?}: the ledger entry kept changing").into(),
        ))
    }
}

fn store(e: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    LedgerError::Store(Box::new(e))
}

impl Ledger for NotifyLedger {
    async fn delivered(&self, room: &str) -> Result<Option<Delivered>, LedgerError> {
        let (entry, revision) = self.read(&encode_room(room), false).await?;
        Ok((revision != 0).then_some(Delivered {
            generation: entry.generation,
            seq: entry.seq,
        }))
    }

    async fn record(&self, room: &str, generation: u64, seq: u64) -> Result<(), LedgerError> {
        self.update(room, |e| {
            // Deleted meanwhile, or already further: nothing to write.
            (e.generation == generation && seq > e.seq).then_some(Entry { seq, ..e })
        })
        .await
    }

    async fn deleted(&self, room: &str, last_seq: u64) -> Result<(), LedgerError> {
        self.update(room, |e| {
            (last_seq > e.tomb).then_some(Entry {
                generation: e.generation + 1,
                seq: e.seq.max(last_seq),
                tomb: last_seq,
                epoch: e.epoch,
            })
        })
        .await
    }

    fn covers(&self, recorded: u64, seq: u64) -> bool {
        seq <= recorded
    }
}
