//! Carrying out the rules (`rules.rs`) against the outbox: creating the APICalls entries ask
//! for, cancelling calls whose entry is gone or superseded, sweeping a whole room, and
//! requesting re-indexes when the debounce fires.

use std::collections::BTreeSet;

use tokio::time::Instant;
use weaver_doc::{BRIDGE_ORIGIN, Status, StatusRecord};

use super::blocking;
use super::doc_actor::DocActor;
use super::rules::{self, Action};
use crate::model::ApiCall;
use crate::outbox::CallFilter;
use crate::{BridgeError, now_ms};

impl DocActor {
    /// Handles the change sets the room's mirror collected.
    pub(super) async fn drain(&mut self, room: &str) {
        let sets = match self.rooms.get(room) {
            Some(m) => m.take_changes(),
            None => return,
        };
        let mut touched = BTreeSet::new();
        for cs in sets {
            let own = cs.is_from(BRIDGE_ORIGIN);
            for ch in cs.changes {
                match rules::change_action(ch, own) {
                    Some(Action::Cancel {
                        block_id,
                        index_name,
                        reason,
                    }) => {
                        self.cancel_calls(room, &block_id, index_name.as_deref(), reason)
                            .await;
                    }
                    Some(Action::ContentEdited { block_id }) => {
                        self.dirty.edited(room, block_id, Instant::now());
                    }
                    Some(Action::Evaluate { block_id }) => {
                        touched.insert(block_id);
                    }
                    None => {}
                }
            }
        }
        let touched: Vec<String> = touched.into_iter().collect();
        self.evaluate_blocks(room, &touched).await;
    }

    /// Rule "entry requests attempt N with no APICall → exactly one APICall".
    pub(super) async fn evaluate_block(&mut self, room: &str, block_id: &str) {
        self.evaluate_blocks(room, std::slice::from_ref(&block_id.to_owned()))
            .await;
    }

    /// The same rule for several blocks, creating all missing calls in one transaction.
    async fn evaluate_blocks(&mut self, room: &str, block_ids: &[String]) {
        let Some(m) = self.rooms.get(room) else {
            return;
        };
        let mut specs = Vec::new();
        for block_id in block_ids {
            let Some(view) = m.ws.block(block_id).ok().flatten() else {
                continue;
            };
            let (calls, skipped) = rules::wanted_calls(room, &view, |i| self.inner.cfg.route(i));
            for s in skipped {
                tracing::warn!(room, block = %block_id, index = %s.index_name, attempt = s.attempt, "attempt out of range; ignored");
            }
            specs.extend(calls);
        }
        if specs.is_empty() {
            return;
        }
        let ob = self.inner.outbox.clone();
        // Read first: most evaluations find the calls already there, and a read costs no fsync.
        let created = blocking(move || {
            let mut missing = Vec::new();
            for spec in specs {
                if ob
                    .find_by_trigger(&spec.room, &spec.block_id, &spec.index_name, spec.attempt)?
                    .is_none()
                {
                    missing.push(spec);
                }
            }
            if missing.is_empty() {
                return Ok(Vec::new());
            }
            ob.create_calls(missing, now_ms())
        })
        .await;
        match created {
            Ok(v) => {
                let mut any = false;
                for (call, fresh) in v {
                    if !fresh {
                        continue;
                    }
                    any = true;
                    metrics::counter!(crate::metrics::CALLS_CREATED_TOTAL, "integration" => call.integration.clone()).increment(1);
                    tracing::info!(call_id = %call.id, room, block = %call.block_id, index = %call.index_name, attempt = call.attempt, integration = %call.integration, "APICall created");
                    if call.attempt > 1 {
                        self.cancel_older(room, &call.block_id, &call.index_name, call.attempt)
                            .await;
                    }
                }
                if any {
                    self.inner.dispatch_wake.notify_one();
                }
            }
            Err(err) => tracing::error!(room, error = %err, "cannot create APICalls"),
        }
    }

    pub(super) async fn non_terminal_calls(
        &self,
        room: &str,
        block_id: Option<&str>,
    ) -> Vec<ApiCall> {
        let ob = self.inner.outbox.clone();
        let filter = CallFilter {
            room: Some(room.to_owned()),
            block_id: block_id.map(str::to_owned),
            status: None,
            limit: None,
        };
        match blocking(move || ob.list(&filter)).await {
            Ok(v) => v.into_iter().filter(|c| !c.status.is_terminal()).collect(),
            Err(e) => {
                tracing::error!(room, error = %e, "cannot list calls");
                Vec::new()
            }
        }
    }

    pub(super) async fn cancel(&self, call: &ApiCall, reason: &str) {
        let ob = self.inner.outbox.clone();
        let id = call.id;
        let why = reason.to_owned();
        match blocking(move || ob.cancel(&id, &why, now_ms())).await {
            Ok(true) => {
                tracing::info!(call_id = %id, room = %call.room, reason, "APICall cancelled")
            }
            Ok(false) => {}
            Err(e) => tracing::error!(call_id = %id, error = %e, "cannot cancel call"),
        }
    }

    async fn cancel_calls(&self, room: &str, block_id: &str, index: Option<&str>, reason: &str) {
        for c in self.non_terminal_calls(room, Some(block_id)).await {
            if index.is_none_or(|i| i == c.index_name) {
                self.cancel(&c, reason).await;
            }
        }
    }

    async fn cancel_older(&self, room: &str, block_id: &str, index: &str, attempt: u32) {
        for c in self.non_terminal_calls(room, Some(block_id)).await {
            if c.index_name == index && c.attempt < attempt {
                self.cancel(&c, &format!("superseded by attempt {attempt}"))
                    .await;
            }
        }
    }

    /// Level-triggered reconciliation of one room (start-up, lag, first sight).
    pub(super) async fn sweep_room(&mut self, room: &str) -> Result<(), BridgeError> {
        let Some(blocks) = self.rooms.get(room).map(|m| m.ws.blocks()) else {
            return Ok(());
        };
        let blocks = blocks.map_err(BridgeError::Doc)?;
        let ids: Vec<String> = blocks.iter().map(|b| b.id.clone()).collect();
        self.evaluate_blocks(room, &ids).await;
        for c in self.non_terminal_calls(room, None).await {
            if let Some(reason) = rules::sweep_verdict(&c, &blocks) {
                self.cancel(&c, &reason).await;
            }
        }
        // Done entries whose content changed while the bridge was away (down, or the mirror
        // was idle) get re-indexed, through the debounce since the user may still be typing.
        for b in &blocks {
            if b.indexing_list.iter().any(|e| e.status == Status::Done)
                && !self.stale_entries(room, &b.id, false).await.is_empty()
            {
                self.dirty.mark(room, &b.id, Instant::now());
            }
        }
        Ok(())
    }

    /// `done` entries of a block whose indexed content differs from the current content, with
    /// the attempt to request. `unknown_is_stale`: whether a `done` without a known APICall
    /// (pruned, or written elsewhere) counts as stale.
    async fn stale_entries(
        &self,
        room: &str,
        block_id: &str,
        unknown_is_stale: bool,
    ) -> Vec<(String, u64)> {
        let Some(view) = self
            .rooms
            .get(room)
            .and_then(|m| m.ws.block(block_id).ok().flatten())
        else {
            return Vec::new();
        };
        let hash = rules::content_hash(&view.content);
        let mut out = Vec::new();
        for e in view
            .indexing_list
            .iter()
            .filter(|e| e.status == Status::Done)
        {
            let Ok(attempt) = u32::try_from(e.attempt) else {
                continue;
            };
            let ob = self.inner.outbox.clone();
            let (r, b, i) = (room.to_owned(), block_id.to_owned(), e.index_name.clone());
            let call = blocking(move || ob.find_by_trigger(&r, &b, &i, attempt))
                .await
                .ok()
                .flatten();
            if rules::done_is_stale(call.as_ref(), &hash, unknown_is_stale) {
                out.push((e.index_name.clone(), e.attempt + 1));
            }
        }
        out
    }

    /// Rule "content of a `done` entry changed → request attempt N+1". `unknown_is_stale`:
    /// whether a `done` without a known APICall (pruned, or written elsewhere) counts as stale.
    pub(super) async fn reindex_check(
        &mut self,
        room: &str,
        block_id: &str,
        unknown_is_stale: bool,
    ) {
        let requests = self.stale_entries(room, block_id, unknown_is_stale).await;
        for (index, next) in requests {
            tracing::info!(room, block = block_id, index = %index, attempt = next, "content changed; re-index requested");
            let rec = StatusRecord::new(next, Status::NotStarted);
            if let Err(e) = self.write_record(room, block_id, &index, &rec).await {
                tracing::warn!(room, block = block_id, error = %e, "re-index request not written");
            }
        }
        self.drain(room).await;
    }

    /// Re-index checks for the blocks whose debounce has run out.
    pub(super) async fn fire_debounce(&mut self) {
        for key in self.dirty.due(Instant::now()) {
            self.dirty.remove(&key);
            self.reindex_check(&key.0, &key.1, true).await;
        }
    }
}
