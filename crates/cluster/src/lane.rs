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

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull},
    context::PublishErrorKind,
    message::PublishMessage,
    stream::{DirectGetErrorKind, Stream},
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::LogError;
use crate::record::{Record, Takeover};
use crate::room_log::{Shared, StoredRoom};

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

/// How the message after a given subject sequence relates to a write of ours.
enum After {
    Ours(u64),
    Other,
    Nothing,
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

    async fn load(&mut self, mode: LoadMode) -> Result<StoredRoom, LogError> {
        match mode {
            LoadMode::Read => Ok(self.read_room().await?.0),
            LoadMode::TakeOver(claim) => self.take_over(&claim).await,
            LoadMode::Resume { token } => {
                let (room, latest) = self.read_room().await?;
                if latest.is_some_and(|t| t.token == token) {
                    Ok(room)
                } else {
                    self.known = None;
                    Err(LogError::Superseded { room: self.room() })
                }
            }
        }
    }

    /// Reads the room, then writes a takeover record right after the tip it read. Refused
    /// (someone appended in between): reads again, a few times. A takeover in the log with a
    /// newer lease epoch than the claim's means this node's lease is stale: refused.
    async fn take_over(&mut self, claim: &Claim) -> Result<StoredRoom, LogError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (room, latest) = self.read_room().await?;
            if claim.epoch != 0 && latest.is_some_and(|t| t.epoch > claim.epoch) {
                self.known = None;
                return Err(LogError::Superseded { room: self.room() });
            }
            let Some(mut known) = self.known.take() else {
                return Err(LogError::NotLoaded { room: self.room() });
            };
            let record = Record::Takeover(Takeover {
                last_seq: known.last_seq,
                stored: room.snapshot.is_some() || !room.tail.is_empty(),
                epoch: claim.epoch,
                token: claim.token,
                node: claim.node.to_string(),
            });
            let msg_id = uuid::Uuid::new_v4().to_string();
            match self.write(&record, known.tip, &msg_id, false).await {
                Ok((seq, _)) => {
                    known.tip = seq;
                    self.known = Some(known);
                    return Ok(room);
                }
                Err(LogError::Fenced { .. }) if attempts < TAKEOVER_ATTEMPTS => {
                    debug!(room = %self.room, attempts, "takeover refused; reading the room again");
                }
                Err(LogError::Fenced { .. }) => {
                    return Err(LogError::TakeoverRefused {
                        room: self.room(),
                        attempts,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the room from the subject's start up to its tip, learning the tip (`known`).
    /// Returns the room and the latest takeover record on the subject.
    async fn read_room(&mut self) -> Result<(StoredRoom, Option<Takeover>), LogError> {
        self.known = None;
        let Some(tip) = self.tip().await? else {
            self.known = Some(Known::default());
            return Ok((StoredRoom::default(), None));
        };
        let mut latest = None;
        let mut known = Known {
            tip,
            ..Known::default()
        };
        let mut room = StoredRoom::default();
        for (seq, record) in self.read(DeliverPolicy::All, tip).await? {
            known.tip = known.tip.max(seq);
            known.last_seq = known.last_seq.max(record.last_seq());
            match record {
                Record::Updates { first_seq, updates } => {
                    known.records.push((known.last_seq, seq));
                    room.tail.extend(
                        updates
                            .into_iter()
                            .enumerate()
                            .map(|(i, u)| (first_seq + i as u64, u.to_vec())),
                    );
                }
                Record::Snapshot {
                    snapshot_seq,
                    snapshot,
                    tail,
                } => {
                    known.records = vec![(known.last_seq, seq)];
                    known.snapshot_seq = snapshot_seq;
                    room = StoredRoom {
                        snapshot: Some(snapshot.to_vec()),
                        snapshot_seq,
                        tail: tail.into_iter().map(|(s, u)| (s, u.to_vec())).collect(),
                    };
                }
                Record::Tombstone { last_seq } => {
                    // A re-created room continues after the deleted one's seqs.
                    known.records = vec![(known.last_seq, seq)];
                    known.snapshot_seq = last_seq;
                    room = StoredRoom {
                        snapshot: None,
                        snapshot_seq: last_seq,
                        tail: Vec::new(),
                    };
                }
                // Takes no seqs and holds no updates: only who owns the room since.
                Record::Takeover(t) => latest = Some(t),
                Record::Chunked { .. } => {
                    return Err(LogError::Corrupt {
                        room: self.room(),
                        seq,
                        source: crate::record::DecodeError::nested(),
                    });
                }
            }
        }
        self.known = Some(known);
        Ok((room, latest))
    }

    async fn append(&mut self, updates: Vec<Bytes>, msg_id: &str) -> Result<u64, LogError> {
        let Some(known) = self.known.as_ref() else {
            return Err(LogError::NotLoaded { room: self.room() });
        };
        if updates.is_empty() {
            return Ok(known.last_seq);
        }
        let record = Record::Updates {
            first_seq: known.last_seq + 1,
            updates,
        };
        let expected = known.tip;
        // Any failure leaves the tip unknown (the write may have landed): the room must be
        // loaded again, which is what the room actor does when it steps down.
        let known = self.known.take();
        let (seq, _) = self.write(&record, expected, msg_id, false).await?;
        let mut known = known.unwrap_or_default();
        known.tip = seq;
        known.last_seq = record.last_seq();
        known.records.push((known.last_seq, seq));
        let last = known.last_seq;
        self.known = Some(known);
        Ok(last)
    }

    async fn compact(&mut self, upto_seq: u64, snapshot: Bytes) -> Result<(), LogError> {
        let Some(known) = self.known.as_ref() else {
            return Err(LogError::NotLoaded { room: self.room() });
        };
        let refuse = |reason, seq| LogError::CompactionRefused {
            room: self.room(),
            reason,
            upto_seq,
            seq,
        };
        if upto_seq > known.last_seq {
            return Err(refuse("upto_seq is beyond the last seq", known.last_seq));
        }
        if known.snapshot_seq > upto_seq {
            return Err(refuse(
                "the existing snapshot covers more",
                known.snapshot_seq,
            ));
        }
        // The rollup erases the whole subject, so it carries the updates logged after
        // `upto_seq` (the room actor compacts in the background while appends go on).
        let mut tail = Vec::new();
        if let Some(&(_, from)) = known.records.iter().find(|(last, _)| *last > upto_seq) {
            let tip = known.tip;
            for (_, record) in self
                .read(
                    DeliverPolicy::ByStartSequence {
                        start_sequence: from,
                    },
                    tip,
                )
                .await?
            {
                match record {
                    Record::Updates { first_seq, updates } => tail.extend(
                        updates
                            .into_iter()
                            .enumerate()
                            .map(|(i, u)| (first_seq + i as u64, u))
                            .filter(|(s, _)| *s > upto_seq),
                    ),
                    Record::Snapshot { tail: t, .. } => {
                        tail.extend(t.into_iter().filter(|(s, _)| *s > upto_seq));
                    }
                    Record::Tombstone { .. } | Record::Chunked { .. } | Record::Takeover(_) => {}
                }
            }
        }
        let record = Record::Snapshot {
            snapshot_seq: upto_seq,
            snapshot,
            tail,
        };
        let Some(known) = self.known.take() else {
            return Err(LogError::NotLoaded { room: self.room() });
        };
        let msg_id = uuid::Uuid::new_v4().to_string();
        let (seq, first_chunk) = self.write(&record, known.tip, &msg_id, true).await?;
        self.known = Some(Known {
            tip: seq,
            last_seq: known.last_seq.max(record.last_seq()),
            snapshot_seq: upto_seq,
            records: vec![(known.last_seq, seq)],
        });
        // Chunks older than the snapshot's own belong to records the rollup erased. A failure
        // only leaves garbage that the next compaction removes.
        self.purge_chunks_below(first_chunk.unwrap_or(seq)).await;
        Ok(())
    }

    async fn delete(&mut self) -> Result<(), LogError> {
        self.known = None;
        // A concurrent writer can move the tip between reading it and the tombstone; retry a
        // few times, and the writer that lost is fenced.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(tip) = self.tip_record().await? else {
                return Ok(());
            };
            let (tip_seq, record) = tip;
            // Nothing stored (deleted already, or only taken over since): nothing to delete.
            if matches!(
                record,
                Record::Tombstone { .. } | Record::Takeover(Takeover { stored: false, .. })
            ) {
                return Ok(());
            }
            // Seqs are never reused: the tombstone keeps the last one, and a re-created room
            // continues after it.
            let tombstone = Record::Tombstone {
                last_seq: record.last_seq(),
            };
            let msg_id = uuid::Uuid::new_v4().to_string();
            match self.write(&tombstone, tip_seq, &msg_id, true).await {
                Ok(_) => break,
                Err(LogError::Fenced { .. }) if attempts < 5 => continue,
                Err(e) => return Err(e),
            }
        }
        if let Err(source) = self.stream.purge().filter(self.chunk_subject.clone()).await {
            return Err(LogError::Purge {
                room: self.room(),
                source,
            });
        }
        Ok(())
    }

    /// Writes `room` (a restore) as one record, fenced on an empty subject: a snapshot record
    /// (a rollup, like a compaction's) carrying the tail, or an updates record at the tail's
    /// own seqs when there is no snapshot. Seqs are the stored ones. Refused with
    /// [`LogError::Occupied`] when the subject holds anything (a room, a tombstone, a
    /// takeover), so a restore never writes over a room or reuses a deleted room's seqs.
    async fn import(&mut self, room: StoredRoom) -> Result<(), LogError> {
        self.known = None;
        if self.tip().await?.is_some() {
            return Err(LogError::Occupied { room: self.room() });
        }
        let (record, rollup) = match room.snapshot {
            Some(snapshot) => (
                Record::Snapshot {
                    snapshot_seq: room.snapshot_seq,
                    snapshot: Bytes::from(snapshot),
                    tail: room
                        .tail
                        .into_iter()
                        .map(|(s, u)| (s, Bytes::from(u)))
                        .collect(),
                },
                true,
            ),
            None => {
                let Some(&(first_seq, _)) = room.tail.first() else {
                    return Ok(());
                };
                // The updates record numbers its updates from `first_seq` on: only a dense
                // tail keeps its seqs (every engine writes dense tails).
                if room
                    .tail
                    .iter()
                    .enumerate()
                    .any(|(i, (s, _))| *s != first_seq + i as u64)
                {
                    return Err(LogError::NotDense { room: self.room() });
                }
                (
                    Record::Updates {
                        first_seq,
                        updates: room.tail.into_iter().map(|(_, u)| Bytes::from(u)).collect(),
                    },
                    false,
                )
            }
        };
        let msg_id = uuid::Uuid::new_v4().to_string();
        match self.write(&record, 0, &msg_id, rollup).await {
            Ok(_) => Ok(()),
            Err(LogError::Fenced { .. }) => Err(LogError::Occupied { room: self.room() }),
            Err(e) => Err(e),
        }
    }

    /// Stream sequence of the last message on the room's subject, `None` if it has none.
    async fn tip(&self) -> Result<Option<u64>, LogError> {
        match self
            .stream
            .direct_get_last_for_subject(self.subject.clone())
            .await
        {
            Ok(m) => Ok(Some(m.sequence)),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(source) => Err(LogError::Read {
                room: self.room(),
                source,
            }),
        }
    }

    /// The last message on the room's subject, decoded (a chunked record's manifest as is).
    async fn tip_record(&self) -> Result<Option<(u64, Record)>, LogError> {
        match self
            .stream
            .direct_get_last_for_subject(self.subject.clone())
            .await
        {
            Ok(m) => Ok(Some((m.sequence, self.decode(m.sequence, &m.payload)?))),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(source) => Err(LogError::Read {
                room: self.room(),
                source,
            }),
        }
    }

    fn decode(&self, seq: u64, payload: &Bytes) -> Result<Record, LogError> {
        decode(&self.room, seq, payload)
    }

    /// Every record on the room's subject from `from` up to (at least) stream sequence `tip`,
    /// in order, chunked records reassembled. An ordered consumer streams them in one go and
    /// is deleted when the read ends, whatever the outcome: a server keeps an unused one for
    /// 30 s, and a stream's consumer limit (`max_consumers`) counts them, so reads in a row
    /// would otherwise run into "maximum consumers limit reached".
    async fn read(&self, from: DeliverPolicy, tip: u64) -> Result<Vec<(u64, Record)>, LogError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: from,
                ..Default::default()
            })
            .await
            .map_err(|source| LogError::Consumer {
                room: self.room(),
                source,
            })?;
        let name = consumer.cached_info().name.clone();
        let read = self.read_from(consumer, tip).await;
        // Best effort: the server drops it by itself after 30 s unused. A consumer the client
        // recreated under a new name after a stall (`{name}_{n}`, rare) is left to that too.
        if let Err(e) = self.stream.delete_consumer(&name).await {
            debug!(room = %self.room, consumer = %name, error = %e, "deleting the read's consumer failed");
        }
        read
    }

    async fn read_from(
        &self,
        consumer: async_nats::jetstream::consumer::Consumer<pull::OrderedConfig>,
        tip: u64,
    ) -> Result<Vec<(u64, Record)>, LogError> {
        let consume_err = |source| LogError::Consume {
            room: self.room(),
            source,
        };
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| consume_err(Box::new(e)))?;
        let mut out = Vec::new();
        let wait = self.shared.cfg.request_timeout;
        loop {
            let next = tokio::time::timeout(wait, messages.next())
                .await
                .map_err(|_| LogError::Timeout {
                    room: self.room(),
                    after: wait,
                })?;
            let Some(message) = next else {
                return Err(consume_err("the ordered consumer ended early".into()));
            };
            let message = message.map_err(|e| consume_err(Box::new(e)))?;
            let seq = message.info().map_err(consume_err)?.stream_sequence;
            let record = self.decode(seq, &message.payload)?;
            let record = self.unchunk(seq, record).await?;
            out.push((seq, record));
            if seq >= tip {
                return Ok(out);
            }
        }
    }

    /// Reassembles a chunked record from its chunk messages; other records pass through.
    async fn unchunk(&self, seq: u64, record: Record) -> Result<Record, LogError> {
        unchunk(&self.stream, &self.chunk_subject, &self.room, seq, record).await
    }

    /// Writes `record` after subject sequence `expected` (chunked when it exceeds the
    /// server's message size). Returns the stream sequence of the room-subject message and,
    /// if chunked, the stream sequence of its first chunk.
    async fn write(
        &self,
        record: &Record,
        expected: u64,
        msg_id: &str,
        rollup: bool,
    ) -> Result<(u64, Option<u64>), LogError> {
        let encoded = record.encode()?;
        let (payload, first_chunk) = if encoded.len() > self.shared.chunk_size {
            let chunks = self.publish_chunks(&encoded).await?;
            let first = chunks.first().copied();
            let manifest = Record::Chunked {
                last_seq: record.last_seq(),
                len: encoded.len() as u64,
                chunks,
            };
            (manifest.encode()?, first)
        } else {
            (encoded, None)
        };
        let seq = self
            .publish_fenced(payload, expected, msg_id, rollup)
            .await?;
        Ok((seq, first_chunk))
    }

    /// Publishes the parts of a large record to the chunk subject, pipelined (all sent, then
    /// every ack awaited). Chunks are not fenced: only the manifest that names them is, and a
    /// chunk no manifest names is garbage the next compaction purges.
    async fn publish_chunks(&self, encoded: &Bytes) -> Result<Vec<u64>, LogError> {
        let publish_err = |source| LogError::Publish {
            room: self.room(),
            source,
        };
        let mut acks = Vec::new();
        let mut at = 0;
        while at < encoded.len() {
            let end = (at + self.shared.chunk_size).min(encoded.len());
            acks.push(
                self.shared
                    .js
                    .publish(self.chunk_subject.clone(), encoded.slice(at..end))
                    .await
                    .map_err(publish_err)?,
            );
            at = end;
        }
        let mut seqs = Vec::with_capacity(acks.len());
        for ack in acks {
            seqs.push(ack.await.map_err(publish_err)?.sequence);
        }
        Ok(seqs)
    }

    /// Publishes `payload` on the room's subject only if the subject still ends at `expected`.
    /// Only JetStream's ack makes it durable; a lost ack is resolved by reading what follows
    /// `expected` on the subject and looking for our own message id.
    async fn publish_fenced(
        &self,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
        rollup: bool,
    ) -> Result<u64, LogError> {
        let deadline = Instant::now() + self.shared.cfg.request_timeout * 3;
        loop {
            let mut headers = HeaderMap::new();
            if rollup {
                headers.insert(async_nats::header::NATS_ROLLUP, "sub");
            }
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .headers(headers)
                .message_id(msg_id)
                .expected_last_subject_sequence(expected);
            let error = match self
                .shared
                .js
                .send_publish(self.subject.clone(), publish)
                .await
            {
                Ok(ack) => match ack.await {
                    Ok(ack) => return Ok(ack.sequence),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match error.kind() {
                // Since nats-server 2.15 the sequence check runs before de-duplication, so a
                // retry of a write that did land is refused here too: look for it.
                PublishErrorKind::WrongLastSequence => {
                    return match self.after(expected, msg_id).await? {
                        After::Ours(seq) => Ok(seq),
                        After::Other | After::Nothing => Err(LogError::Fenced {
                            room: self.room(),
                            expected,
                        }),
                    };
                }
                // `StreamNotFound` is how "no responders" surfaces: a server that restarts
                // accepts connections before it has restored its streams. Nothing was stored
                // then, but the tail read decides, as for a lost ack.
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::Other => {
                    match self.after(expected, msg_id).await {
                        Ok(After::Ours(seq)) => return Ok(seq),
                        Ok(After::Other) => {
                            return Err(LogError::Fenced {
                                room: self.room(),
                                expected,
                            });
                        }
                        // Not written: the same message id and expectation again.
                        Ok(After::Nothing) => {}
                        Err(e) => debug!(error = %e, "outcome of a publish still unknown"),
                    }
                    if Instant::now() >= deadline {
                        return Err(LogError::Publish {
                            room: self.room(),
                            source: error,
                        });
                    }
                    warn!(room = %self.room, error = %error, "publish unacknowledged; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => {
                    return Err(LogError::Publish {
                        room: self.room(),
                        source: error,
                    });
                }
            }
        }
    }

    /// The first message on the room's subject after stream sequence `expected`: ours (by
    /// message id), someone else's, or none.
    async fn after(&self, expected: u64, msg_id: &str) -> Result<After, LogError> {
        match self
            .stream
            .direct_get_next_for_subject(self.subject.clone(), Some(expected + 1))
            .await
        {
            Ok(m) => {
                let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
                if id.is_some_and(|id| id.as_str() == msg_id) {
                    Ok(After::Ours(m.sequence))
                } else {
                    Ok(After::Other)
                }
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(After::Nothing),
            Err(source) => Err(LogError::Read {
                room: self.room(),
                source,
            }),
        }
    }

    async fn purge_chunks_below(&self, seq: u64) {
        if let Err(e) = self
            .stream
            .purge()
            .filter(self.chunk_subject.clone())
            .sequence(seq)
            .await
        {
            warn!(room = %self.room, error = %e, "purging old chunks failed; the next compaction retries");
        }
    }
}

/// Reassembles a chunked record of `room` (its manifest at stream sequence `seq`) from its chunk
/// messages on `chunk_subject`; other records pass through. Shared by the lanes and the change
/// stream (`changes.rs`).
pub(crate) async fn unchunk(
    stream: &Stream,
    chunk_subject: &str,
    room: &str,
    seq: u64,
    record: Record,
) -> Result<Record, LogError> {
    let Record::Chunked { len, chunks, .. } = record else {
        return Ok(record);
    };
    let mut bytes = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    for chunk in chunks {
        match stream.direct_get(chunk).await {
            Ok(m) if m.subject.as_str() == chunk_subject => bytes.extend_from_slice(&m.payload),
            Ok(_) => {
                return Err(LogError::MissingChunk {
                    room: room.to_owned(),
                    seq,
                });
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                return Err(LogError::MissingChunk {
                    room: room.to_owned(),
                    seq,
                });
            }
            Err(source) => {
                return Err(LogError::Read {
                    room: room.to_owned(),
                    source,
                });
            }
        }
    }
    let bytes = bytes.freeze();
    if bytes.len() as u64 != len {
        return Err(LogError::MissingChunk {
            room: room.to_owned(),
            seq,
        });
    }
    match decode(room, seq, &bytes)? {
        Record::Chunked { .. } => Err(LogError::Corrupt {
            room: room.to_owned(),
            seq,
            source: crate::record::DecodeError::nested(),
        }),
        inner => Ok(inner),
    }
}

fn decode(room: &str, seq: u64, payload: &Bytes) -> Result<Record, LogError> {
    Record::decode(payload).map_err(|source| LogError::Corrupt {
        room: room.to_owned(),
        seq,
        source,
    })
}
