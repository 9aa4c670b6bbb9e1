//! Turning bytes into the room's document: one update applied with yrs panics contained
//! (`apply_update`), a document built from storage skipping poison records (`build_doc`, `load`),
//! and the room's own apply path (`Room::apply`: the document size limit, refusals, and a rebuild
//! from storage when yrs panicked or parked too much). Updates reach here already admitted
//! (admit.rs); what this adds is what only the document can tell.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{error, warn};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, Transact, Update};

use super::RoomDeps;
use super::actor::{Pending, Room};
use crate::error::{RelayError, close_code};
use crate::events::UpdateOrigin;
use crate::metrics as m;
use crate::store::StoredRoom;

/// Documents are created the same way everywhere (UTF-16 offsets, like Yjs).
pub(crate) fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

pub(crate) enum Applied {
    Changed,
    Noop,
    Invalid(String),
    Panicked,
    /// Applied, but the room now parks more than the allowed bytes of causally incomplete
    /// updates; the caller must discard the doc.
    PendingTooLarge(usize),
}

/// Applies one v1 update. yrs may panic on hostile input; the caller must discard the doc then.
pub(crate) fn apply_update(doc: &Doc, bytes: &[u8], max_pending: usize) -> Applied {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let update = match Update::decode_v1(bytes) {
            Ok(u) => u,
            Err(e) => return Applied::Invalid(e.to_string()),
        };
        let mut txn = doc.transact_mut();
        if let Err(e) = weaver_doc::apply_update_retrying_pending(&mut txn, update) {
            return Applied::Invalid(e.to_string());
        }
        let store = ReadTxn::store(&txn);
        // Missing dependencies park the update as "pending": it must still be persisted.
        let pending = store.pending_update().is_some() || store.pending_ds().is_some();
        if let Some(p) = store.pending_update()
            && max_pending < usize::MAX
        {
            let size = p.update.encode_v1().len();
            if size > max_pending {
                return Applied::PendingTooLarge(size);
            }
        }
        if pending || !txn.insert_set().is_empty() || !txn.delete_set().is_empty() {
            Applied::Changed
        } else {
            Applied::Noop
        }
    }));
    r.unwrap_or(Applied::Panicked)
}

/// Builds a document from storage. A record that fails to apply is skipped (and reported); one
/// that makes yrs panic is skipped and the build restarts without it, so a poison record can
/// never crash-loop the process or take the rest of the room with it.
pub(super) fn build_doc(room: &str, stored: &StoredRoom) -> Doc {
    let mut skip: HashSet<u64> = HashSet::new();
    // Seq 0 stands for the snapshot.
    let records = stored.tail.len() + 1;
    for _ in 0..=records {
        let doc = new_doc();
        let mut panicked = None;
        let parts = stored
            .snapshot
            .as_deref()
            .map(|s| (0u64, s))
            .into_iter()
            .chain(stored.tail.iter().map(|(seq, u)| (*seq, u.as_slice())));
        for (seq, bytes) in parts {
            if skip.contains(&seq) {
                continue;
            }
            match apply_update(&doc, bytes, usize::MAX) {
                Applied::Changed | Applied::Noop | Applied::PendingTooLarge(_) => {}
                Applied::Invalid(e) => {
                    error!(room, seq, error = %e, "stored record does not apply; skipped");
                    metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                    skip.insert(seq);
                }
                Applied::Panicked => {
                    panicked = Some(seq);
                    break;
                }
            }
        }
        match panicked {
            None => return doc,
            Some(seq) => {
                error!(
                    room,
                    seq, "stored record made yrs panic; rebuilding without it"
                );
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                skip.insert(seq);
            }
        }
    }
    new_doc()
}

/// A room as rebuilt from storage.
pub(super) struct Loaded {
    pub(super) doc: Doc,
    pub(super) last_seq: u64,
    pub(super) log_updates: u64,
    pub(super) log_bytes: u64,
    /// Snapshot + log bytes: the estimate the document size limit is checked against.
    pub(super) doc_bytes: u64,
}

pub(super) async fn load(deps: &RoomDeps, name: &Arc<str>) -> Result<Loaded, RelayError> {
    // Bounded: a reconnect storm queues here instead of loading every room at once.
    // Saturated for longer than `load_wait` → refused (1013 / 503) rather than queued forever.
    let wait = deps.config.limits.load_wait;
    let _permit = match tokio::time::timeout(wait, deps.load_permits.acquire()).await {
        Ok(p) => p.map_err(|_| RelayError::ShuttingDown)?,
        Err(_) => {
            warn!("room loads saturated; refusing");
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "load_saturated")
                .increment(1);
            return Err(RelayError::Overloaded("too many rooms loading; try again"));
        }
    };
    let stored = deps.store.load(name.clone()).await?;
    let room = name.clone();
    tokio::task::spawn_blocking(move || {
        let doc = build_doc(&room, &stored);
        let last_seq = stored
            .tail
            .last()
            .map(|(s, _)| *s)
            .unwrap_or(stored.snapshot_seq);
        let log_bytes = stored.tail_bytes();
        let snapshot_bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
        Loaded {
            doc,
            last_seq,
            log_updates: stored.tail.len() as u64,
            log_bytes,
            doc_bytes: snapshot_bytes + log_bytes,
        }
    })
    .await
    .map_err(|e| RelayError::Internal(format!("room load task failed: {e}")))
}

impl Room {
    pub(super) async fn apply(
        &mut self,
        update: Bytes,
        origin: UpdateOrigin,
        reply: Option<oneshot::Sender<Result<(), RelayError>>>,
    ) {
        let cfg = &self.deps.config;
        let (max_doc, max_pending) = (cfg.max_doc_bytes, cfg.max_pending_bytes);
        let pending_bytes: u64 = self.batch.iter().map(|p| p.update.len() as u64).sum();
        if self.doc_bytes + pending_bytes + update.len() as u64 > max_doc {
            self.refuse(
                origin,
                reply,
                (close_code::POLICY, "document_too_large"),
                RelayError::DocumentTooLarge { limit: max_doc },
            );
            return;
        }
        match apply_update(&self.doc, &update, max_pending) {
            Applied::Changed => {
                self.rate.add(Instant::now());
                self.batch.push(Pending {
                    update,
                    origin,
                    persist: true,
                    reply,
                    ack: false,
                })
            }
            Applied::Noop => self.batch.push(Pending {
                update,
                origin,
                persist: false,
                reply,
                ack: false,
            }),
            Applied::Invalid(e) => self.refuse(
                origin,
                reply,
                (close_code::INVALID_PAYLOAD, "invalid_update"),
                RelayError::InvalidUpdate(e),
            ),
            Applied::Panicked => {
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                error!(origin = ?origin, "yrs panicked applying an update; dropping it and rebuilding the room");
                self.refuse(
                    origin,
                    reply,
                    (close_code::INTERNAL, "update_panicked"),
                    RelayError::InvalidUpdate("update could not be applied".into()),
                );
                Box::pin(self.rebuild()).await;
            }
            Applied::PendingTooLarge(size) => {
                warn!(origin = ?origin, size, "too many bytes of causally incomplete updates; refusing");
                self.refuse(
                    origin,
                    reply,
                    (close_code::POLICY, "pending_limit"),
                    RelayError::InvalidUpdate(format!(
                        "update depends on missing updates and would park {size} bytes"
                    )),
                );
                Box::pin(self.rebuild()).await;
            }
        }
    }

    /// Refuses one update: its connection is closed with `close`, an API caller gets `err`.
    pub(super) fn refuse(
        &mut self,
        origin: UpdateOrigin,
        reply: Option<oneshot::Sender<Result<(), RelayError>>>,
        close: (u16, &'static str),
        err: RelayError,
    ) {
        if let UpdateOrigin::Client { conn_id } = origin {
            self.reject(conn_id, close.0, close.1, &err.to_string());
        } else {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => close.1).increment(1);
        }
        if let Some(r) = reply {
            let _ = r.send(Err(err));
        }
    }

    /// The doc may hold a refused update (half-applied on panic, or parked as pending): rebuild
    /// it from storage and re-apply the batch items accepted before (they are not stored yet).
    pub(super) async fn rebuild(&mut self) {
        if let Err(e) = self.reload().await {
            error!(error = %e, "rebuilding the room failed");
            self.fail_batch(&e);
            self.dead = true;
            return;
        }
        let max_pending = self.deps.config.max_pending_bytes;
        let mut kept = Vec::new();
        for p in std::mem::take(&mut self.batch) {
            match apply_update(&self.doc, &p.update, max_pending) {
                Applied::Changed | Applied::Noop => kept.push(p),
                _ => {
                    if let Some(r) = p.reply {
                        let _ =
                            r.send(Err(RelayError::Internal("update lost in a rebuild".into())));
                    }
                }
            }
        }
        self.batch = kept;
    }

    pub(super) async fn reload(&mut self) -> Result<(), RelayError> {
        let loaded = load(&self.deps, &self.name).await?;
        self.doc = loaded.doc;
        self.last_seq = loaded.last_seq;
        self.log_updates = loaded.log_updates;
        self.log_bytes = loaded.log_bytes;
        self.doc_bytes = loaded.doc_bytes;
        Ok(())
    }

    pub(super) fn fail_batch(&mut self, e: &RelayError) {
        for p in self.batch.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(RelayError::Internal(e.to_string())));
            }
        }
    }
}
