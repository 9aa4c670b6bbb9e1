//! One room's lane: the task that performs every JetStream operation on one room, one at a
//! time, and remembers where the room's subject ends (the expected last subject sequence of
//! the next write).
//!
//! Serializing per room is what makes the fencing exact: this node's own compaction can never
//! race its own append, so a `WrongLastSequence` always means another writer. Rooms are
//! independent, so lanes of different rooms run concurrently (fsyncs batch per stream).
//! Deliberately not here: which rooms exist, streams set-up, listing (`room_log.rs`).
//!
//! Takeover. A load to own the room ends with a takeover record written right after the tip
//! it read (fenced like any write): from then on an append of a stale owner, which expects
//! that tip or an earlier one, is refused even if the new owner has appended nothing yet.
//!
//! Files: this one holds the operations, the lane's state and its task (dispatch); `load.rs`
//! loading and taking a room over; `writes.rs` append, compaction, deletion and import;
//! `read.rs` reading the room's subject (tip, records, chunk reassembly); `publish.rs` the
//! fenced publish every write goes through.

use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::LogError;
use crate::room_log::{Shared, StoredRoom};

mod load;
mod publish;
mod read;
mod writes;

pub(crate) use read::unchunk;

/// Depth of a lane's queue; callers wait when it is full.
const LANE_QUEUE: usize = 64;

/// How often a load to own a room reads it again when its takeover record was refused.
const TAKEOVER_ATTEMPTS: u32 = 5;

/// What a load is for.
#[derive(Debug)]
pub(crate) enum LoadMode {
    /// Read only (listings, tests): nothing is written.
    Read,
    /// Owning the room from now on: write a takeover record after the tip read.
    TakeOver(Claim),
    /// Re-reading a room this node took over (its tip was lost): refused with
    /// [`LogError::Superseded`] unless this takeover (by token) is still the latest.
    Resume { token: [u8; 16] },
}

/// Who takes a room over: written into its takeover record.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub epoch: u64,
    pub node: Arc<str>,
    pub token: [u8; 16],
}

/// An operation on one room, with where its answer goes.
#[derive(Debug)]
pub(crate) enum LaneOp {
    Load {
        mode: LoadMode,
        reply: oneshot::Sender<Result<StoredRoom, LogError>>,
    },
    Append {
        updates: Vec<Bytes>,
        msg_id: String,
        reply: oneshot::Sender<Result<u64, LogError>>,
    },
    Compact {
        upto_seq: u64,
        snapshot: Bytes,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    Delete {
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Writes a whole room (restore) into a subject that has never held anything.
    Import {
        room: StoredRoom,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
}

/// What this node knows of the room's subject since it last loaded or wrote it.
#[derive(Debug, Default)]
struct Known {
    /// Stream sequence of the last message on the room's subject (0: none).
    tip: u64,
    /// The room's last seq.
    last_seq: u64,
    /// Seq the latest snapshot (or tombstone) covers.
    snapshot_seq: u64,
    /// `(last room seq, stream seq)` of every record on the subject, oldest first: where a
    /// compaction finds the updates logged after its `upto_seq`.
    records: Vec<(u64, u64)>,
}

struct Lane {
    shared: Arc<Shared>,
    room: Arc<str>,
    stream: Stream,
    subject: String,
    chunk_subject: String,
    /// `None` until loaded, and again after a write whose outcome is unknown or fenced.
    known: Option<Known>,
}

/// Starts the lane of `room`; it ends when every sender is dropped or at shutdown (queued
/// operations are then dropped, and their callers get [`LogError::Stopped`]).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    room: Arc<str>,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> mpsc::Sender<LaneOp> {
    let (tx, rx) = mpsc::channel(LANE_QUEUE);
    let (index, subject, chunk_subject) = shared.subjects(&room);
    let lane = Lane {
        stream: shared.streams[index].clone(),
        shared,
        room,
        subject,
        chunk_subject,
        known: None,
    };
    tracker.spawn(lane.run(rx, shutdown));
    tx
}

impl Lane {
    async fn run(mut self, mut rx: mpsc::Receiver<LaneOp>, shutdown: CancellationToken) {
        loop {
            let op = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
            };
            match op {
                LaneOp::Load { mode, reply } => {
                    let r = self.load(mode).await;
                    let _ = reply.send(r);
                }
                LaneOp::Append {
                    updates,
                    msg_id,
                    reply,
                } => {
                    let r = self.append(updates, &msg_id).await;
                    let _ = reply.send(r);
                }
                LaneOp::Compact {
                    upto_seq,
                    snapshot,
                    reply,
                } => {
                    let r = self.compact(upto_seq, snapshot).await;
                    let _ = reply.send(r);
                }
                LaneOp::Delete { reply } => {
                    let r = self.delete().await;
                    let _ = reply.send(r);
                }
                LaneOp::Import { room, reply } => {
                    let r = self.import(room).await;
                    let _ = reply.send(r);
                }
            }
        }
    }

    fn room(&self) -> String {
        self.room.to_string()
    }
}
