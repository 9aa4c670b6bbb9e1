//! Write-back: terminal and intermediate outcomes queued in the outbox's write-back rows are
//! written into the documents as status records of the bridge's own peer (origin
//! `weaver_doc::BRIDGE_ORIGIN`), one transaction per room and layer, and sent to the host like
//! any client update. A room whose writes the host refuses backs off with the `[retry]`
//! policy and is given up after `max_attempts` refusals.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;
use weaver_doc::{BRIDGE_ORIGIN, Status, StatusRecord};
use weaver_retry::Jitter;

use super::blocking;
use super::doc_actor::DocActor;
use crate::config::RetryPolicy;
use crate::outbox::{DocStatus, Writeback};
use crate::{BridgeError, now_ms};

/// Retry delay after a local (outbox) error while processing write-backs.
pub(super) const WRITEBACK_RETRY: Duration = Duration::from_secs(1);

/// Most write-back rows handled in one pass.
const BATCH: usize = 512;

/// A write-back the host refuses is retried with the delivery policy ([retry]): the delay
/// doubles from `initial_interval_ms` up to `max_interval_ms` (no jitter: one actor, no herd),
/// and after `max_attempts` consecutive refusals the room's queued write-backs are given up: a
/// `writeback_failed` event is kept on each call and the rows are deleted, so a room the host
/// keeps refusing does not cost a retry every second forever.
fn writeback_backoff(policy: &RetryPolicy, failures: u32) -> Duration {
    policy.backoff().with_jitter(Jitter::None).cap(failures)
}

/// room → (consecutive refused write-backs, not before).
#[derive(Debug, Default)]
pub(super) struct WritebackFailures(HashMap<String, (u32, Instant)>);

impl WritebackFailures {
    /// When the room's next try may run, if it is backing off.
    fn not_before(&self, room: &str) -> Option<Instant> {
        self.0.get(room).map(|f| f.1)
    }

    fn failures(&self, room: &str) -> u32 {
        self.0.get(room).map_or(0, |f| f.0)
    }

    pub(super) fn forget(&mut self, room: &str) {
        self.0.remove(room);
    }
}

/// Splits a room's queued write-backs into layers: the k-th queued record of every entry
/// goes into layer k, so a client sees `processing` and `done` as two steps even when a fast
/// call finished before the first was written. Queue order is kept within each layer.
fn layers(wbs: Vec<(u64, Writeback)>) -> Vec<Vec<(u64, Writeback)>> {
    let mut layers: Vec<Vec<(u64, Writeback)>> = Vec::new();
    let mut depth: HashMap<(String, String), usize> = HashMap::new();
    for (seq, wb) in wbs {
        let d = depth
            .entry((wb.block_id.clone(), wb.index_name.clone()))
            .or_default();
        if layers.len() <= *d {
            layers.push(Vec::new());
        }
        layers[*d].push((seq, wb));
        *d += 1;
    }
    layers
}

/// The status record a write-back row stands for.
fn record_for(wb: &Writeback) -> StatusRecord {
    let attempt = u64::from(wb.attempt);
    let id = wb.api_call_id.clone().unwrap_or_default();
    let at = wb.completed_at.unwrap_or_else(now_ms);
    match wb.status {
        DocStatus::NotStarted => StatusRecord::new(attempt, Status::NotStarted),
        DocStatus::Processing => StatusRecord::processing(attempt, id),
        DocStatus::Done => {
            let result = match wb.result.clone() {
                Some(Value::Object(o)) => Value::Object(o),
                None | Some(Value::Null) => json!({}),
                Some(other) => json!({ "value": other }),
            };
            StatusRecord::done(attempt, id, result, at)
        }
        DocStatus::Error => StatusRecord::error(
            attempt,
            id,
            wb.error.clone().unwrap_or_else(|| "failed".into()),
            at,
        ),
    }
}

impl DocActor {
    /// Applies queued write-backs, one bridge transaction (one update, one durable apply) per
    /// room and layer. Returns when to run again: `None` when the queue was drained, else now
    /// (more queued) or the earliest backoff of a room the host refused.
    pub(super) async fn process_writebacks(&mut self) -> Result<Option<Instant>, BridgeError> {
        let ob = self.inner.outbox.clone();
        let items = blocking(move || ob.writebacks(BATCH)).await?;
        let full = items.len() == BATCH;
        let now = Instant::now();
        let mut by_room: HashMap<String, Vec<(u64, Writeback)>> = HashMap::new();
        let mut next: Option<Instant> = None;
        for (seq, wb) in items {
            if let Some(not_before) = self.wb_failures.not_before(&wb.room)
                && not_before > now
            {
                next = Some(next.map_or(not_before, |n| n.min(not_before)));
                continue;
            }
            by_room.entry(wb.room.clone()).or_default().push((seq, wb));
        }
        let mut acks = Vec::new();
        let mut done_blocks = BTreeSet::new();
        for (room, wbs) in by_room {
            let mut layers = layers(wbs).into_iter();
            while let Some(wbs) = layers.next() {
                // Later layers wait for earlier ones, so records keep their order.
                let Err(error) = self
                    .apply_layer(&room, wbs.clone(), &mut acks, &mut done_blocks)
                    .await
                else {
                    self.wb_failures.forget(&room);
                    continue;
                };
                let failures = self.wb_failures.failures(&room) + 1;
                let policy = &self.inner.cfg.retry;
                if failures >= policy.max_attempts {
                    // Give up: keep the failure on each call, delete the rows.
                    self.wb_failures.forget(&room);
                    let rest: Vec<(u64, Writeback)> =
                        wbs.into_iter().chain(layers.by_ref().flatten()).collect();
                    tracing::error!(room, n = rest.len(), tries = failures, error = %error, "write-backs given up: the host keeps refusing them");
                    let msg = format!("write-back refused {failures} times: {error}");
                    for (seq, wb) in &rest {
                        self.note_writeback_failed(wb, &msg).await;
                        acks.push(*seq);
                    }
                    metrics::counter!(crate::metrics::WRITEBACKS_TOTAL, "status" => "given_up")
                        .increment(rest.len() as u64);
                } else {
                    let delay = writeback_backoff(policy, failures);
                    let at = Instant::now() + delay;
                    self.wb_failures.0.insert(room.clone(), (failures, at));
                    tracing::warn!(room, tries = failures, retry_in_ms = delay.as_millis() as u64, error = %error, "write-backs not applied yet");
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                break;
            }
        }
        let progressed = !acks.is_empty();
        let ob = self.inner.outbox.clone();
        blocking(move || ob.ack_writebacks(&acks)).await?;
        // Content edited while the call ran: the result is stale, index again.
        for (room, block) in done_blocks {
            self.reindex_check(&room, &block, false).await;
        }
        if full && progressed {
            return Ok(Some(Instant::now()));
        }
        Ok(next)
    }

    /// Applies one layer of a room's write-backs; the host's error if it refused it.
    async fn apply_layer(
        &mut self,
        room: &str,
        wbs: Vec<(u64, Writeback)>,
        acks: &mut Vec<u64>,
        done_blocks: &mut BTreeSet<(String, String)>,
    ) -> Result<(), BridgeError> {
        self.apply_writebacks(room, &wbs).await?;
        for (seq, wb) in &wbs {
            acks.push(*seq);
            if wb.status == DocStatus::Done {
                done_blocks.insert((room.to_owned(), wb.block_id.clone()));
            }
        }
        self.drain(room).await;
        Ok(())
    }

    /// Writes a room's queued outcomes as one transaction of the bridge peer and sends the
    /// update. Records already present, for a removed entry, or for an attempt older than the
    /// entry's current one are skipped (`record_status` and the guard below), so replays after
    /// a crash change nothing.
    async fn apply_writebacks(
        &mut self,
        room: &str,
        wbs: &[(u64, Writeback)],
    ) -> Result<(), BridgeError> {
        if !self.rooms.contains_key(room) {
            self.load_room(room).await?;
        }
        let Some(m) = self.rooms.get_mut(room) else {
            return Err(BridgeError::RoomNotLoaded(room.to_owned()));
        };
        m.touch();
        let (written, update) = m
            .ws
            .transact(BRIDGE_ORIGIN, |t| {
                let mut written = Vec::new();
                for (_, wb) in wbs {
                    let Some(entry) = t.block(&wb.block_id).and_then(|b| b.entry(&wb.index_name).cloned()) else {
                        continue; // block or entry removed: nothing to show it on
                    };
                    if entry.attempt > u64::from(wb.attempt) {
                        continue; // a newer attempt exists; an old outcome must not add noise
                    }
                    match t.record_status(&wb.block_id, &wb.index_name, &record_for(wb)) {
                        Ok(true) => written.push(wb),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(room, call_id = ?wb.api_call_id, error = %e, "invalid status record skipped"),
                    }
                }
                written
            })
            .map_err(BridgeError::Doc)?;
        if update.is_empty() {
            return Ok(());
        }
        self.send_bridge_update(room, update).await?;
        for wb in written {
            metrics::counter!(crate::metrics::WRITEBACKS_TOTAL, "status" => wb.status.as_str())
                .increment(1);
            tracing::info!(room, block = %wb.block_id, index = %wb.index_name, attempt = wb.attempt, status = wb.status.as_str(), call_id = ?wb.api_call_id, "outcome written back");
        }
        Ok(())
    }

    /// Appends a status record as the bridge peer and sends the update to the host.
    /// Returns whether an update was sent. On a host failure the mirror is rebuilt from the
    /// stored state, so the next try sees what really is stored.
    pub(super) async fn write_record(
        &mut self,
        room: &str,
        block_id: &str,
        index: &str,
        rec: &StatusRecord,
    ) -> Result<bool, BridgeError> {
        // Callers load the room first; loading here would make the rules recursive.
        let Some(m) = self.rooms.get(room) else {
            return Err(BridgeError::RoomNotLoaded(room.to_owned()));
        };
        let (changed, update) =
            m.ws.transact(BRIDGE_ORIGIN, |t| t.record_status(block_id, index, rec))
                .map_err(BridgeError::Doc)?;
        let changed = changed.map_err(BridgeError::Doc)?;
        if !changed || update.is_empty() {
            return Ok(false);
        }
        self.send_bridge_update(room, update).await?;
        Ok(true)
    }

    /// Sends an update the bridge peer made on the mirror to the host.
    async fn send_bridge_update(&mut self, room: &str, update: Vec<u8>) -> Result<(), BridgeError> {
        if let Err(e) = self
            .inner
            .host
            .apply_update(room, update, BRIDGE_ORIGIN)
            .await
        {
            // The mirror holds records the host never stored: rebuild it from stored state.
            self.drop_mirror(room);
            return Err(BridgeError::Host(e));
        }
        Ok(())
    }

    /// Drops a deleted room's queued write-backs, keeping a `writeback_failed` event on each
    /// call. Returns how many were dropped.
    pub(super) async fn forget_writebacks(&mut self, room: &str) -> usize {
        let ob = self.inner.outbox.clone();
        let r = room.to_owned();
        let dropped = match blocking(move || ob.forget_room(&r)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(room, error = %e, "cannot drop write-backs of a deleted room");
                Vec::new()
            }
        };
        for wb in &dropped {
            self.note_writeback_failed(wb, "room deleted before the outcome was written")
                .await;
        }
        dropped.len()
    }

    async fn note_writeback_failed(&self, wb: &Writeback, error: &str) {
        let Some(id) = wb
            .api_call_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return; // a re-index request, not tied to a call
        };
        let ob = self.inner.outbox.clone();
        let why = error.to_owned();
        if let Err(e) = blocking(move || ob.note_writeback_failed(&id, &why, now_ms())).await {
            tracing::error!(call_id = %id, error = %e, "cannot record the write-back failure");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wb(block: &str, index: &str, status: DocStatus) -> Writeback {
        Writeback {
            room: "r".into(),
            block_id: block.into(),
            index_name: index.into(),
            attempt: 1,
            status,
            api_call_id: Some("c".to_owned()),
            result: None,
            error: None,
            completed_at: Some(7),
        }
    }

    #[test]
    fn layers_keep_per_entry_order() {
        let queued = vec![
            (1, wb("b", "i", DocStatus::Processing)),
            (2, wb("b", "j", DocStatus::Processing)),
            (3, wb("b", "i", DocStatus::Done)),
            (4, wb("c", "i", DocStatus::Done)),
            (5, wb("b", "i", DocStatus::Error)),
        ];
        let seqs: Vec<Vec<u64>> = layers(queued)
            .into_iter()
            .map(|l| l.into_iter().map(|(s, _)| s).collect())
            .collect();
        assert_eq!(seqs, [vec![1, 2, 4], vec![3], vec![5]]);
    }

    #[test]
    fn backoff_doubles_without_jitter() {
        let policy = RetryPolicy {
            max_attempts: 8,
            initial_interval_ms: 100,
            max_interval_ms: 1_000,
            lease_ms: 30_000,
        };
        let ms: Vec<u128> = (1..=6)
            .map(|f| writeback_backoff(&policy, f).as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn records_for_rows() {
        let mut done = wb("b", "i", DocStatus::Done);
        done.result = Some(json!(3));
        let mut failed = wb("b", "i", DocStatus::Error);
        failed.error = None;
        for (row, want) in [
            (
                wb("b", "i", DocStatus::NotStarted),
                StatusRecord::new(1, Status::NotStarted),
            ),
            (
                wb("b", "i", DocStatus::Processing),
                StatusRecord::processing(1, "c"),
            ),
            (
                wb("b", "i", DocStatus::Done),
                StatusRecord::done(1, "c", json!({}), 7),
            ),
            (done, StatusRecord::done(1, "c", json!({ "value": 3 }), 7)),
            (failed, StatusRecord::error(1, "c", "failed", 7)),
        ] {
            assert_eq!(record_for(&row), want, "{row:?}");
        }
    }
}
