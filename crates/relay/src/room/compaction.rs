//! Background compaction: once a room's log is long, its document is encoded as a snapshot,
//! checked (it must read back as the same state vector) and handed to the store, which replaces
//! the log entries it covers in one transaction. The room keeps serving meanwhile.
//!
//! "Long" grows with the document (`compaction_due`): rewriting a snapshot of S bytes at most
//! every S/256 updates or S/2 log bytes keeps the bytes compaction writes per edit bounded
//! (about 256) however large the document is (docs/storage.md, "Compaction").

use std::panic::{AssertUnwindSafe, catch_unwind};

use tracing::{error, info, warn};
use yrs::{ReadTxn, StateVector, Transact};

use super::actor::Room;
use super::apply::{Applied, apply_update, new_doc};
use crate::metrics as m;

/// Whether a log of `log_updates` updates and `log_bytes` bytes over a snapshot of
/// `snapshot_bytes` is due for compaction: past the configured minimums
/// (`--compact-after-updates`, `--compact-after-bytes`), or past the proportional ones
/// (snapshot/256 updates, snapshot/2 bytes) when those are larger.
pub(crate) fn compaction_due(
    (min_updates, min_bytes): (u64, u64),
    snapshot_bytes: u64,
    log_updates: u64,
    log_bytes: u64,
) -> bool {
    log_updates >= min_updates.max(snapshot_bytes / 256)
        || log_bytes >= min_bytes.max(snapshot_bytes / 2)
}

impl Room {
    /// Starts a background compaction when the log is long. Runs only right after a flush,
    /// when the document equals exactly what is stored up to `last_seq`.
    pub(super) fn maybe_compact(&mut self) {
        let cfg = &self.deps.config;
        let snapshot_bytes = self.doc_bytes.saturating_sub(self.log_bytes);
        if !compaction_due(
            (cfg.compact_after_updates, cfg.compact_after_bytes),
            snapshot_bytes,
            self.log_updates,
            self.log_bytes,
        ) {
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

#[cfg(test)]
mod tests {
    use super::compaction_due;

    const MIN: (u64, u64) = (1000, 4 << 20);

    #[test]
    fn small_documents_compact_at_the_configured_thresholds() {
        assert!(!compaction_due(MIN, 10_000, 999, 100));
        assert!(compaction_due(MIN, 10_000, 1000, 100));
        assert!(compaction_due(MIN, 10_000, 1, 4 << 20));
        assert!(!compaction_due(MIN, 0, 0, 0));
    }

    /// A 50 MB snapshot is rewritten only after ~200k updates (or 25 MB of log): the bytes a
    /// compaction writes per update stay near 256, as for a 256 KB document.
    #[test]
    fn large_documents_compact_in_proportion_to_their_size() {
        let s = 50 << 20;
        assert!(!compaction_due(MIN, s, 1000, 10_000));
        assert!(!compaction_due(MIN, s, s / 256 - 1, 10_000));
        assert!(compaction_due(MIN, s, s / 256, 10_000));
        assert!(!compaction_due(MIN, s, 10, 8 << 20));
        assert!(compaction_due(MIN, s, 10, s / 2));
        let per_update = |s: u64| s / MIN.0.max(s / 256);
        assert!(per_update(s) <= 256 && per_update(256 << 10) <= 256);
    }
}
