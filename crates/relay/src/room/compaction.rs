//! Background compaction: once a room's log is long, its document is encoded as a snapshot,
//! checked (it must read back as the same state vector) and handed to the store, which replaces
//! the log entries it covers in one transaction. The room keeps serving meanwhile.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tracing::{error, info, warn};
use yrs::{ReadTxn, StateVector, Transact};

use super::actor::Room;
use super::apply::{Applied, apply_update, new_doc};
use crate::metrics as m;

impl Room {
    /// Starts a background compaction when the log is long. Runs only right after a flush,
    /// when the document equals exactly what is stored up to `last_seq`.
    pub(super) fn maybe_compact(&mut self) {
        let cfg = &self.deps.config;
        if self.log_updates < cfg.compact_after_updates && self.log_bytes < cfg.compact_after_bytes
        {
            return;
        }
        if self.compaction.as_ref().is_some_and(|c| !c.is_finished()) || !self.batch.is_empty() {
            return;
        }
        let doc = &self.doc;
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            (
                txn.encode_state_as_update_v1(&StateVector::default()),
                txn.state_vector(),
            )
        }));
        let Ok((snapshot, expected_sv)) = encoded else {
            error!("yrs panicked encoding a snapshot; compaction skipped");
            return;
        };
        let upto = self.last_seq;
        // After compaction the stored document is the snapshot (plus later log entries).
        self.doc_bytes = snapshot.len() as u64;
        let (updates, bytes) = (self.log_updates, self.log_bytes);
        self.log_updates = 0;
        self.log_bytes = 0;
        let store = self.deps.store.clone();
        let name = self.name.clone();
        let span = tracing::Span::current();
        self.compaction = Some(tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Never replace the log with a snapshot that reads back as a smaller document.
                let check = tokio::task::spawn_blocking(move || {
                    let fresh = new_doc();
                    match apply_update(&fresh, &snapshot, usize::MAX) {
                        Applied::Changed | Applied::Noop => {}
                        _ => return Err("snapshot does not apply".to_string()),
                    }
                    let sv = fresh.transact().state_vector();
                    if sv != expected_sv {
                        return Err("snapshot state vector differs from the document's".to_string());
                    }
                    Ok(snapshot)
                })
                .await;
                let snapshot = match check {
                    Ok(Ok(s)) => s,
                    Ok(Err(reason)) => {
                        error!(reason, "compaction refused; the log is kept");
                        return;
                    }
                    Err(e) => {
                        error!(error = %e, "compaction check failed");
                        return;
                    }
                };
                let size = snapshot.len();
                match store.compact(name, upto, snapshot).await {
                    Ok(()) => {
                        metrics::counter!(m::COMPACTIONS_TOTAL).increment(1);
                        info!(
                            upto_seq = upto,
                            updates,
                            log_bytes = bytes,
                            snapshot_bytes = size,
                            "room compacted"
                        );
                    }
                    Err(e) => warn!(error = %e, "compaction failed; the log is kept"),
                }
            },
            span,
        )));
    }
}
