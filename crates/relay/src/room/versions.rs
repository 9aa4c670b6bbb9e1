//! A room's versions, the actor's part: taking one (automatic after a commit when
//! `--version-every-secs` passed since the last one, explicit on request, pre-restore) and
//! restoring one as a forward update through the room's own apply, persist and broadcast path.
//!
//! A version is the document right after a flush, i.e. exactly what is durable at `last_seq`.
//! It is stored as a diff against the room's newest version (the structs the document gained
//! since that version's state vector, and the deletions since it: a Yjs diff carries the whole
//! delete set, so the room subtracts the one it saw at the newest version when it knows it)
//! while the diffs since the last full version stay smaller than it, else as the whole
//! document: rebuilding one applies at most about twice the document.
//! The room encodes the version (it owns the document) and hands the store write to a task of
//! its own, like compaction: commits never wait for it, and an engine whose write takes several
//! round trips (JetStream) does not hold up the room. The next version first collects the
//! previous task's result, which is the chain's new head.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{IdSet, ReadTxn, StateVector, Transact};

use super::actor::Room;
use crate::error::RelayError;
use crate::events::UpdateOrigin;
use crate::history::{VersionInfo, restore_update, version_state};
use crate::store::{NewVersion, Retention, StoreError, VersionKind, VersionMeta};

/// The store write of a version being taken; its result is the chain's new head.
pub(super) type VersionTask = JoinHandle<Result<VersionMeta, Arc<StoreError>>>;

/// Who hears of an explicit version once it is stored.
type VersionReply = oneshot::Sender<Result<VersionMeta, RelayError>>;

/// What the room knows of its newest stored version.
#[derive(Debug, Default)]
pub(super) enum Head {
    /// Not read yet (read at the first commit after the room loaded).
    #[default]
    Unknown,
    /// The room has no version.
    Empty,
    Known(Box<HeadVersion>),
}

/// The newest stored version, and its delete set when this room took it (not after a load).
#[derive(Debug)]
pub(super) struct HeadVersion {
    meta: VersionMeta,
    delete_set: Option<IdSet>,
}

/// A version being stored: the task writing it and the delete set it was taken at.
#[derive(Debug)]
pub(super) struct PendingVersion {
    pub(super) task: VersionTask,
    delete_set: IdSet,
}

/// An encoded version, ready to store.
struct Encoded {
    version: NewVersion,
    retention: Retention,
    delete_set: IdSet,
}

/// What `POST …/versions/{id}/restore` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    /// The version whose content the room now has.
    pub restored: String,
    /// The room's seq after the restore update was committed.
    pub seq: u64,
    /// The version saved just before (restore it to undo).
    pub pre_restore: VersionInfo,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Room {
    /// After a commit: whether an automatic version may be due (cheap; checked again once the
    /// previous version's write is collected).
    pub(super) fn version_due(&self) -> bool {
        let every = self.deps.config.versions.every;
        if every.is_zero()
            || self
                .version_task
                .as_ref()
                .is_some_and(|p| !p.task.is_finished())
        {
            return false;
        }
        match &self.head {
            Head::Unknown | Head::Empty => true,
            Head::Known(h) => {
                h.meta.seq < self.last_seq
                    && now_ms()
                        >= h.meta
                            .created_at_ms
                            .saturating_add(every.as_millis() as u64)
            }
        }
    }

    /// Takes an automatic version if one is due; failures are logged (the next commit retries).
    pub(super) async fn maybe_take_auto_version(&mut self) {
        if !self.version_due() {
            return;
        }
        self.settle_version_task().await;
        if let Err(e) = self.load_head().await {
            warn!(error = %e, "reading the room's versions failed");
            return;
        }
        if !self.version_due() {
            return;
        }
        match self.encode_version(VersionKind::Auto, None) {
            Ok(encoded) => self.store_version(encoded, None),
            Err(e) => warn!(error = %e, "taking a version failed"),
        }
    }

    /// Stores the document as an explicit version; `reply` hears of it once it is stored.
    pub(super) async fn take_explicit_version(
        &mut self,
        label: Option<String>,
        reply: VersionReply,
    ) {
        self.settle_version_task().await;
        let encoded = match self.load_head().await {
            Ok(()) => self.encode_version(VersionKind::Explicit, label),
            Err(e) => Err(e),
        };
        match encoded {
            Ok(encoded) => self.store_version(encoded, Some(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Collects the previous version's store write: its row is the chain's new head (after a
    /// failure the head is read again before the next version).
    pub(super) async fn settle_version_task(&mut self) {
        if let Some(pending) = self.version_task.take() {
            let PendingVersion { task, delete_set } = *pending;
            self.head = match task.await {
                Ok(Ok(meta)) => Head::Known(Box::new(HeadVersion {
                    meta,
                    delete_set: Some(delete_set),
                })),
                _ => Head::Unknown,
            };
        }
    }

    async fn load_head(&mut self) -> Result<(), RelayError> {
        if matches!(self.head, Head::Unknown) {
            let metas = self.deps.store.versions(self.name.clone()).await?;
            self.head = match metas.into_iter().last() {
                Some(meta) => Head::Known(Box::new(HeadVersion {
                    meta,
                    delete_set: None,
                })),
                None => Head::Empty,
            };
        }
        Ok(())
    }

    /// Encodes the document as it is now (flushed: equal to what is durable at `last_seq`) as
    /// the next version. Call after `settle_version_task` and `load_head`.
    fn encode_version(
        &mut self,
        kind: VersionKind,
        label: Option<String>,
    ) -> Result<Encoded, RelayError> {
        if !self.owns() {
            return Err(RelayError::Unavailable(self.name.to_string()));
        }
        let head = match &self.head {
            Head::Known(h) => Some(h.as_ref()),
            _ => None,
        };
        let doc = &self.doc;
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            let sv = txn.state_vector().encode_v1();
            let delete_set = txn.snapshot().delete_set;
            let diff = head.and_then(|h| {
                let base_sv = StateVector::decode_v1(&h.meta.state_vector).ok()?;
                let mut diff = txn.encode_state_as_update_v1(&base_sv);
                if let Some(base_ds) = &h.delete_set {
                    diff = without_known_deletions(diff, &delete_set, base_ds);
                }
                let m = &h.meta;
                (m.chain_bytes + diff.len() as u64 <= m.full_bytes).then_some((m, diff))
            });
            match diff {
                Some((m, diff)) => (
                    sv,
                    Some(m.id),
                    m.chain_bytes + diff.len() as u64,
                    m.full_bytes,
                    diff,
                    delete_set,
                ),
                None => {
                    let full = txn.encode_state_as_update_v1(&StateVector::default());
                    (sv, None, 0, full.len() as u64, full, delete_set)
                }
            }
        }));
        let Ok((state_vector, base, chain_bytes, full_bytes, data, delete_set)) = encoded else {
            return Err(RelayError::Internal(
                "yrs panicked encoding a version".into(),
            ));
        };
        let cfg = self.deps.config.versions;
        let now = now_ms();
        let version = NewVersion {
            seq: self.last_seq,
            created_at_ms: now,
            kind,
            label,
            base,
            chain_bytes,
            full_bytes,
            state_vector,
            data,
        };
        let retention = Retention {
            keep: cfg.keep,
            max_age_ms: (cfg.keep_days > 0).then(|| cfg.keep_days.saturating_mul(86_400_000)),
            now_ms: now,
        };
        Ok(Encoded {
            version,
            retention,
            delete_set,
        })
    }

    /// Starts the task that stores an encoded version (`version_task`); `reply` hears of it.
    fn store_version(&mut self, encoded: Encoded, reply: Option<VersionReply>) {
        let Encoded {
            version,
            retention,
            delete_set,
        } = encoded;
        let store = self.deps.store.clone();
        let name = self.name.clone();
        let span = tracing::Span::current();
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let stored = store.add_version(name, version, retention).await;
                match &stored {
                    Ok(v) => {
                        info!(id = v.id, seq = v.seq, bytes = v.bytes, kind = ?v.kind, "version taken")
                    }
                    Err(e) => warn!(error = %e, "storing a version failed"),
                }
                if let Some(reply) = reply {
                    let _ = reply.send(stored.clone().map_err(RelayError::Storage));
                }
                stored
            },
            span,
        ));
        self.version_task = Some(Box::new(PendingVersion { task, delete_set }));
    }

    /// Restores version `id`: saves the current state as a pre-restore version, then applies
    /// the update that gives every root the version has the version's content, as an
    /// ordinary committed update (durable, then broadcast and published).
    pub(super) async fn restore(&mut self, id: &str) -> Result<Restored, RelayError> {
        let target = version_state(&self.deps.store, &self.name, id).await?;
        self.settle_version_task().await;
        self.load_head().await?;
        let encoded = self.encode_version(
            VersionKind::PreRestore,
            Some(format!("before restoring version {id}")),
        )?;
        self.store_version(encoded, None);
        // The restore waits for the pre-restore version: it must exist before anything of the
        // restore does.
        self.settle_version_task().await;
        let pre = match &self.head {
            Head::Known(h) if h.meta.kind == VersionKind::PreRestore => h.meta.clone(),
            _ => {
                return Err(RelayError::Internal(
                    "the pre-restore version was not stored".into(),
                ));
            }
        };
        let live = self.encode_state(None)?;
        let update = tokio::task::spawn_blocking(move || restore_update(&live, &target))
            .await
            .map_err(|e| RelayError::Internal(format!("restore task failed: {e}")))?
            .map_err(|e| RelayError::Internal(e.to_string()))?;
        let (reply, done) = oneshot::channel();
        let origin = UpdateOrigin::Internal(Arc::from(RESTORE_ORIGIN));
        self.apply(Bytes::from(update), origin, Some(reply)).await;
        self.flush().await;
        done.await
            .map_err(|_| RelayError::Unavailable(self.name.to_string()))??;
        info!(version = id, seq = self.last_seq, "version restored");
        Ok(Restored {
            restored: id.to_owned(),
            seq: self.last_seq,
            pre_restore: VersionInfo::from(&pre),
        })
    }
}

/// `diff` (a v1 update of the structs since a version, followed by the document's whole delete
/// set `full`) with only the deletions `base` (the version's delete set) does not have. A v1
/// update ends with its delete set, so the structs are what precedes `full`'s encoding; if the
/// bytes do not end with it (another encoding order), the diff is kept whole, which is correct
/// too, only larger.
fn without_known_deletions(diff: Vec<u8>, full: &IdSet, base: &IdSet) -> Vec<u8> {
    let full_bytes = full.encode_v1();
    if !diff.ends_with(&full_bytes) {
        return diff;
    }
    let mut out = diff[..diff.len() - full_bytes.len()].to_vec();
    out.extend_from_slice(&full.diff(base).encode_v1());
    out
}

/// The origin of a restore's update on the relay event stream.
pub const RESTORE_ORIGIN: &str = "weaver-restore";
