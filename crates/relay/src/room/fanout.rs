//! What goes out of a room: its connections (join, leave, refusals, slow consumers) and the frames
//! queued to them, and after each durable commit the broadcast (one merged frame per batch,
//! `merged_frame`, also used by a connection merging what queued behind a busy socket) and the
//! `Committed` events.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use tracing::{debug, warn};
use weaver_protocol::{AwarenessEntry, encode_awareness, encode_awareness_message};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use super::actor::{ConnState, Pending, Room};
use super::cmd::ConnLink;
use crate::error::close_code;
use crate::events::{CommittedUpdate, RelayEvent, UpdateOrigin};
use crate::metrics as m;
use crate::send_queue::PushError;

/// Batches above this size are sent per update: the outbound queues are bounded in frames, so
/// an unbounded merged frame would raise the memory a slow consumer can pin before it is closed,
/// and large updates gain nothing from sharing a frame (the cost saved is per frame).
pub(crate) const MERGE_MAX_BYTES: usize = 256 * 1024;

/// One update frame for a whole persisted batch, so each connection gets one frame (one
/// write) per flush instead of one per update; what Hocuspocus does per tick. A merged update
/// applies to the same state as its parts in any order. `None` for a single update (nothing
/// to merge), for batches larger than `MERGE_MAX_BYTES`, or when yrs refuses or panics: the
/// caller then sends one frame per update.
pub(crate) fn merged_frame(updates: &[&[u8]]) -> Option<Bytes> {
    if updates.len() < 2 || updates.iter().map(|u| u.len()).sum::<usize>() > MERGE_MAX_BYTES {
        return None;
    }
    match catch_unwind(AssertUnwindSafe(|| yrs::merge_updates_v1(updates))) {
        Ok(Ok(merged)) => Some(Bytes::from(weaver_protocol::encode_update(&merged))),
        Ok(Err(e)) => {
            warn!(error = %e, updates = updates.len(), "merging a batch failed; sending it per update");
            None
        }
        Err(_) => {
            warn!(
                updates = updates.len(),
                "yrs panicked merging a batch; sending it per update"
            );
            None
        }
    }
}

impl Room {
    /// What follows a durable commit of `batch`: one merged frame (or one frame per update) to
    /// every connection, one `Committed` event per stored update, then the replies.
    pub(super) fn committed(&mut self, batch: Vec<Pending>) {
        let persisted: Vec<&[u8]> = batch
            .iter()
            .filter(|p| p.persist)
            .map(|p| p.update.as_ref())
            .collect();
        let merged = merged_frame(&persisted);
        drop(persisted);
        let merged_sent = merged.is_some();
        // The store numbered the persisted updates of the batch consecutively, ending at
        // `last_seq`.
        let mut seq = self.last_seq.saturating_sub(persisted_count(&batch)) + 1;
        if let Some(frame) = merged {
            self.broadcast(frame);
        }
        for p in batch {
            let ack_to = match p.origin {
                UpdateOrigin::Client { conn_id } if p.ack => Some(conn_id),
                _ => None,
            };
            if p.persist {
                let origin_label = match p.origin {
                    UpdateOrigin::Client { .. } => "client",
                    UpdateOrigin::Http => "http",
                    UpdateOrigin::Internal(_) => "internal",
                };
                metrics::counter!(m::UPDATES_IN_TOTAL, "origin" => origin_label).increment(1);
                metrics::counter!(m::UPDATE_BYTES_IN_TOTAL).increment(p.update.len() as u64);
                if !merged_sent {
                    let frame = Bytes::from(weaver_protocol::encode_update(&p.update));
                    self.broadcast(frame);
                }
                // Subscribers (the bridge) keep one event per update, with its origin.
                self.deps
                    .events
                    .publish(RelayEvent::Committed(CommittedUpdate {
                        room: self.name.clone(),
                        update: p.update,
                        origin: p.origin,
                        seq,
                    }));
                seq += 1;
            }
            if let Some(r) = p.reply {
                let _ = r.send(Ok(()));
            }
            if let Some(conn_id) = ack_to {
                self.send_to(conn_id, Bytes::from_static(super::cmd::ACK_FRAME));
            }
        }
    }
}

fn persisted_count(batch: &[Pending]) -> u64 {
    batch.iter().filter(|p| p.persist).count() as u64
}

impl Room {
    pub(super) fn join(&mut self, link: ConnLink) {
        let id = link.id;
        let sv = self.doc.transact().state_vector().encode_v1();
        self.conns.insert(
            id,
            ConnState {
                link,
                clients: HashSet::new(),
            },
        );
        self.send_to(id, Bytes::from(weaver_protocol::encode_sync_step1(&sv)));
        if let Some(frame) = self.all_awareness_frame() {
            self.send_to(id, frame);
        }
        debug!(conn = id, conns = self.conns.len(), "connection joined");
    }

    pub(super) fn reject(&mut self, conn_id: u64, code: u16, reason: &'static str, detail: &str) {
        warn!(conn = conn_id, code, reason, detail, "closing connection");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
        if let Some(c) = self.conns.get(&conn_id) {
            c.link.queue.close(code, reason);
        }
        self.remove_conn(conn_id);
    }

    /// Queues a frame to one connection; a full queue closes it (1013), never skips silently.
    pub(super) fn send_to(&mut self, conn_id: u64, frame: Bytes) {
        let Some(c) = self.conns.get(&conn_id) else {
            return;
        };
        let len = frame.len() as u64;
        match c.link.queue.push(frame) {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT_TOTAL).increment(1);
                metrics::counter!(m::BYTES_OUT_TOTAL).increment(len);
            }
            Err(PushError::Full) => self.slow_consumer(conn_id),
            Err(PushError::Gone) => self.remove_conn(conn_id),
        }
    }

    /// Sends one shared frame to every connection (sender included, as the reference server).
    pub(super) fn broadcast(&mut self, frame: Bytes) {
        let mut failed = Vec::new();
        for (id, c) in &self.conns {
            match c.link.queue.push(frame.clone()) {
                Ok(()) => {}
                Err(PushError::Full) => failed.push((*id, true)),
                Err(PushError::Gone) => failed.push((*id, false)),
            }
        }
        let delivered = (self.conns.len() - failed.len()) as u64;
        metrics::counter!(m::MESSAGES_OUT_TOTAL).increment(delivered);
        metrics::counter!(m::BYTES_OUT_TOTAL).increment(delivered * frame.len() as u64);
        for (id, full) in failed {
            if full {
                self.slow_consumer(id);
            } else {
                self.remove_conn(id);
            }
        }
    }

    pub(super) fn slow_consumer(&mut self, conn_id: u64) {
        warn!(conn = conn_id, "outbound queue full; closing slow consumer");
        metrics::counter!(m::SLOW_CONSUMER_CLOSES_TOTAL).increment(1);
        if let Some(c) = self.conns.get(&conn_id) {
            c.link
                .queue
                .close(close_code::SLOW_CONSUMER, "slow consumer");
        }
        self.remove_conn(conn_id);
    }

    /// Forgets a connection and tells the others its awareness states are gone.
    pub(super) fn remove_conn(&mut self, conn_id: u64) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        debug!(conn = conn_id, conns = self.conns.len(), "connection left");
        let mut gone = Vec::new();
        for client in conn.clients {
            if let Some(slot) = self.awareness.get_mut(&client)
                && slot.state.take().is_some()
            {
                gone.push(AwarenessEntry {
                    client_id: client,
                    clock: slot.clock,
                    state: "null".into(),
                });
            }
        }
        if !gone.is_empty() && !self.conns.is_empty() {
            // Recursion through broadcast → remove_conn is bounded by the number of connections.
            self.broadcast(Bytes::from(encode_awareness_message(&encode_awareness(
                &gone,
            ))));
        }
    }

    pub(super) fn close_all(&mut self, code: u16, reason: &'static str) {
        for (_, c) in self.conns.take_all() {
            c.link.queue.close(code, reason);
        }
    }
}
