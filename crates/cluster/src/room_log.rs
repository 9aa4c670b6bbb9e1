//! The room log on JetStream: what the relay's redb store does for one node, for many nodes.
//!
//! Layout. Rooms are spread over `streams` JetStream streams (`{stream_prefix}_{i}`, subjects
//! `{subject_prefix}.{i}.>`) by a stable hash of the room name (`names.rs`), so rooms written
//! at once share fsyncs per stream. A room has two subjects in its stream: `….{i}.r.{room}`
//! holds its records (`record.rs`: update batches, snapshots, a tombstone, manifests) and
//! `….{i}.c.{room}` the chunks of records larger than the server's `max_payload`.
//!
//! Seqs. A room's seqs are dense and per room, exactly like the redb engine's: an append of
//! `n` updates takes the next `n`, carried in the record itself. JetStream's stream sequence
//! only orders and fences the writes (the expected last subject sequence of the next write);
//! it never leaks out. Seqs are never reused, also across a deletion: deleting writes a
//! tombstone (as a subject rollup) that keeps the last seq, and a re-created room continues
//! after it. The tombstone (one small message per deleted room name) stays.
//!
//! Writes. Per room, a lane task (`lane.rs`) runs one operation at a time. `append` publishes
//! one record with `Nats-Expected-Last-Subject-Sequence` and a message id: durable once
//! JetStream acks it (`sync_interval: always` on the server makes that an fsync); a refused
//! expectation means another writer appended and returns [`LogError::Fenced`]; a lost ack is
//! resolved by reading the message after the expected one and comparing message ids. After
//! any failed write the room must be loaded again ([`LogError::NotLoaded`] until then).
//! `compact` publishes a snapshot record as a subject rollup (`Nats-Rollup: sub`), fenced the
//! same way, so the history it covers is replaced atomically; it carries the updates logged
//! after `upto_seq`, which the rollup would otherwise erase. Records over `max_payload` are
//! split over chunk messages first and the fenced message is a small manifest naming them,
//! so a crash between the two leaves only unreferenced chunks.
//!
//! Takeover. [`RoomLog::take_over`] is the load of a node about to own the room: after reading
//! up to the tip it writes a takeover record (lease epoch, node id) fenced on that tip, so a
//! stale owner's append still in flight is refused even before the new owner appends. Loads
//! skip takeover records and they take no seqs; a compaction's rollup drops old ones.
//!
//! Must not know: sockets, yrs (updates and snapshots are opaque bytes), the bridge, leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{self, DirectGetErrorKind},
};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::LogError;
use crate::lane::{self, Claim, LaneOp, LoadMode};
use crate::names::{decode_room, encode_room, stream_index};
use crate::record::Record;

/// Where and how the room log lives on JetStream. Every node of a deployment must use the
/// same values (the stream count decides which stream holds a room).
#[derive(Debug, Clone)]
pub struct RoomLogConfig {
    /// Streams are named `{stream_prefix}_{i}`.
    pub stream_prefix: String,
    /// Subjects are `{subject_prefix}.{i}.r.{room}` and `{subject_prefix}.{i}.c.{room}`.
    pub subject_prefix: String,
    /// Number of streams rooms are spread over; fixed for a deployment's life.
    pub streams: u32,
    /// Replicas per stream: 1 for tests, 3 in production.
    pub replicas: usize,
    /// How long one JetStream request may take (an unacknowledged append is resolved for up
    /// to three times this).
    pub request_timeout: Duration,
}

impl Default for RoomLogConfig {
    fn default() -> Self {
        RoomLogConfig {
            stream_prefix: "WEAVER_ROOMS".to_owned(),
            subject_prefix: "weaver.rooms".to_owned(),
            streams: 8,
            replicas: 1,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A room as stored: the latest snapshot (if any) and the log entries after it. The same shape
/// as the relay's `StoredRoom`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    pub snapshot: Option<Vec<u8>>,
    /// Seq the snapshot covers; after a deletion, the deleted room's last seq (no snapshot).
    pub snapshot_seq: u64,
    /// `(seq, update)` in seq order, all > `snapshot_seq`.
    pub tail: Vec<(u64, Vec<u8>)>,
}

/// A stored room and its last seq (`GET /api/rooms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSeq {
    pub name: String,
    pub last_seq: u64,
}

/// Names one takeover of a room ([`RoomLog::take_over`]), so the taker can check later that
/// nobody took the room over since ([`RoomLog::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeoverId([u8; 16]);

/// What every lane shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub js: jetstream::Context,
    pub streams: Vec<stream::Stream>,
    pub cfg: RoomLogConfig,
    /// Largest room-subject or chunk payload: the server's `max_payload` less room for headers.
    pub chunk_size: usize,
}

/// Room for the headers of a message (message id, expectations, rollup) under `max_payload`.
const HEADER_ROOM: usize = 4096;

impl Shared {
    /// `(stream index, record subject, chunk subject)` of a room.
    pub fn subjects(&self, room: &str) -> (usize, String, String) {
        let i = stream_index(room, self.cfg.streams);
        let token = encode_room(room);
        let p = &self.cfg.subject_prefix;
        (
            i as usize,
            format!("{p}.{i}.r.{token}"),
            format!("{p}.{i}.c.{token}"),
        )
    }
}

/// Handle to the room log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RoomLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    client: async_nats::Client,
    /// One lane per room this node loaded and has not forgotten. Locked only to look up or
    /// insert, never across an await.
    lanes: Mutex<HashMap<Arc<str>, mpsc::Sender<LaneOp>>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl RoomLog {
    /// Creates the streams if missing (file storage, rollups and direct gets allowed).
    pub async fn open(client: async_nats::Client, cfg: RoomLogConfig) -> Result<RoomLog, LogError> {
        let js = crate::connect::jetstream(client.clone(), cfg.request_timeout);
        let mut streams = Vec::new();
        for i in 0..cfg.streams.max(1) {
            let name = format!("{}_{i}", cfg.stream_prefix);
            let stream = js
                .get_or_create_stream(stream::Config {
                    name: name.clone(),
                    subjects: vec![format!("{}.{i}.>", cfg.subject_prefix)],
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    allow_rollup: true,
                    allow_direct: true,
                    ..Default::default()
                })
                .await
                .map_err(|source| LogError::CreateStream {
                    stream: name,
                    source,
                })?;
            streams.push(stream);
        }
        let chunk_size = client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM)
            .max(1024);
        Ok(RoomLog {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    js,
                    streams,
                    cfg,
                    chunk_size,
                }),
                client,
                lanes: Mutex::new(HashMap::new()),
                tracker: TaskTracker::new(),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    /// Reads the room's latest snapshot and every record after it (an ordered consumer from
    /// the subject's start, which a rollup made the snapshot), before returning: what an owner
    /// needs before its first sync reply. Also where this node learns the subject's tip.
    /// Writes nothing: a reader's load, or a test's.
    pub async fn load(&self, room: Arc<str>) -> Result<StoredRoom, LogError> {
        self.call(room, |reply| LaneOp::Load {
            mode: LoadMode::Read,
            reply,
        })
        .await
    }

    /// The load of a node about to own the room: [`RoomLog::load`], then a takeover record
    /// (carrying `epoch`, the taker's lease epoch, 0 without one, and `node`) fenced on the tip
    /// read, so every write that expected an earlier tip is refused from now on. Refused
    /// because someone appended in between: read again, up to 5 times, then
    /// [`LogError::TakeoverRefused`]. [`LogError::Superseded`] when the log already holds a
    /// takeover with a newer epoch (this node's lease is stale).
    pub async fn take_over(
        &self,
        room: Arc<str>,
        epoch: u64,
        node: Arc<str>,
    ) -> Result<(StoredRoom, TakeoverId), LogError> {
        let token = *uuid::Uuid::new_v4().as_bytes();
        let claim = Claim { epoch, node, token };
        let stored = self
            .call(room, |reply| LaneOp::Load {
                mode: LoadMode::TakeOver(claim),
                reply,
            })
            .await?;
        Ok((stored, TakeoverId(token)))
    }

    /// Reads a room this node took over again (its tip was lost, e.g. after a failed write):
    /// [`LogError::Superseded`] unless `id` is still the room's latest takeover.
    pub async fn resume(&self, room: Arc<str>, id: TakeoverId) -> Result<StoredRoom, LogError> {
        self.call(room, |reply| LaneOp::Load {
            mode: LoadMode::Resume { token: id.0 },
            reply,
        })
        .await
    }

    /// Appends updates in one durable record; returns the seq of the last one. The room must
    /// have been loaded by this log; [`LogError::Fenced`] when another writer appended since.
    pub async fn append(&self, room: Arc<str>, updates: Vec<Bytes>) -> Result<u64, LogError> {
        let msg_id = uuid::Uuid::new_v4().to_string();
        self.append_with_id(room, updates, msg_id).await
    }

    /// [`RoomLog::append`] with the caller's message id: a retry of a write whose ack was lost
    /// (same id) is found in the log instead of written twice.
    pub async fn append_with_id(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
        msg_id: String,
    ) -> Result<u64, LogError> {
        self.call(room, |reply| LaneOp::Append {
            updates,
            msg_id,
            reply,
        })
        .await
    }

    /// Replaces the room's history up to `upto_seq` with `snapshot`, atomically (a fenced
    /// subject rollup). Refused, like the redb engine, when `upto_seq` is beyond the last seq
    /// or below the existing snapshot's.
    pub async fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> Result<(), LogError> {
        let snapshot = Bytes::from(snapshot);
        self.call(room, |reply| LaneOp::Compact {
            upto_seq,
            snapshot,
            reply,
        })
        .await
    }

    /// Deletes the room: a tombstone replaces its history (keeping its last seq, so a
    /// re-created room's seqs continue after it) and its chunks are purged. This node forgets
    /// the room; a writer elsewhere is fenced.
    pub async fn delete(&self, room: Arc<str>) -> Result<(), LogError> {
        let r = self
            .call(room.clone(), |reply| LaneOp::Delete { reply })
            .await;
        self.forget(&room);
        r
    }

    /// Writes a whole room read elsewhere (a restore: `weaver restore --cluster`) at its own
    /// seqs, as one record fenced on an empty subject: all of it or nothing.
    /// [`LogError::Occupied`] when the room's subject holds anything already (stored,
    /// deleted, or loaded once). This node forgets the room afterwards.
    pub async fn import(&self, room: Arc<str>, stored: StoredRoom) -> Result<(), LogError> {
        let r = self
            .call(room.clone(), |reply| LaneOp::Import {
                room: stored,
                reply,
            })
            .await;
        self.forget(&room);
        r
    }

    /// Whether the room's subject holds anything (a room, a deleted room's tombstone, a
    /// takeover of an empty room): what [`RoomLog::import`] refuses.
    pub async fn occupied(&self, room: &str) -> Result<bool, LogError> {
        let (i, subject, _) = self.inner.shared.subjects(room);
        match self.inner.shared.streams[i]
            .direct_get_last_for_subject(subject)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(false),
            Err(source) => Err(LogError::Read {
                room: room.to_owned(),
                source,
            }),
        }
    }

    /// Every stored room (tombstoned ones excluded) with its last seq, sorted by name. Reads
    /// the subjects of every stream, then each room's last message (32 at a time).
    pub async fn rooms(&self) -> Result<Vec<RoomSeq>, LogError> {
        let shared = &self.inner.shared;
        let mut subjects = Vec::new();
        for (i, stream) in shared.streams.iter().enumerate() {
            let prefix = format!("{}.{i}.r.", shared.cfg.subject_prefix);
            let list_err = |source| LogError::List {
                stream: stream.cached_info().config.name.clone(),
                source,
            };
            let mut info = stream
                .info_with_subjects(format!("{prefix}>"))
                .await
                .map_err(list_err)?;
            while let Some(entry) = info.next().await {
                let (subject, _count) = entry.map_err(list_err)?;
                if let Some(name) = subject.strip_prefix(&prefix).and_then(decode_room) {
                    subjects.push((stream.clone(), subject, name));
                }
            }
        }
        let tips: Vec<Result<Option<RoomSeq>, LogError>> = futures_util::stream::iter(subjects)
            .map(|(stream, subject, name)| async move {
                match stream.direct_get_last_for_subject(subject).await {
                    Ok(m) => match Record::decode(&m.payload) {
                        Ok(Record::Tombstone { .. }) => Ok(None),
                        // Taken over, but never stored (or deleted): not a stored room.
                        Ok(Record::Takeover(t)) if !t.stored => Ok(None),
                        Ok(record) => Ok(Some(RoomSeq {
                            name,
                            last_seq: record.last_seq(),
                        })),
                        Err(source) => Err(LogError::Corrupt {
                            room: name,
                            seq: m.sequence,
                            source,
                        }),
                    },
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                    Err(source) => Err(LogError::Read { room: name, source }),
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let mut rooms = Vec::new();
        for tip in tips {
            rooms.extend(tip?);
        }
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rooms)
    }

    /// Drops what this node remembers of a room (its lane): call when the room is unloaded.
    /// The next load starts afresh.
    pub fn forget(&self, room: &str) {
        if let Ok(mut lanes) = self.inner.lanes.lock() {
            lanes.remove(room);
        }
    }

    /// True while the connection to NATS is down (writes and loads cannot succeed). Unlike the
    /// redb engine's, this clears by itself when the client reconnects.
    pub fn failed(&self) -> bool {
        self.inner.client.connection_state() != async_nats::connection::State::Connected
    }

    /// Stops every lane (an operation in progress finishes; queued ones fail with
    /// [`LogError::Stopped`]) and flushes the connection.
    pub async fn stop(&self) {
        self.inner.shutdown.cancel();
        if let Ok(mut lanes) = self.inner.lanes.lock() {
            lanes.clear();
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        let _ = self.inner.client.flush().await;
    }

    /// The subject holding a room's records (for tests and diagnostics).
    pub fn subject_of(&self, room: &str) -> String {
        self.inner.shared.subjects(room).1
    }

    /// The stream holding a room (for tests and diagnostics).
    pub fn stream_of(&self, room: &str) -> stream::Stream {
        let (i, _, _) = self.inner.shared.subjects(room);
        self.inner.shared.streams[i].clone()
    }

    /// What every lane shares (streams, subjects): the change stream (`changes.rs`) reads it.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The largest payload of one message this log writes; larger records are chunked.
    pub fn chunk_size(&self) -> usize {
        self.inner.shared.chunk_size
    }

    fn lane(&self, room: &Arc<str>) -> Result<mpsc::Sender<LaneOp>, LogError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(LogError::Stopped);
        }
        let mut lanes = self.inner.lanes.lock().map_err(|_| LogError::Stopped)?;
        if let Some(tx) = lanes.get(room)
            && !tx.is_closed()
        {
            return Ok(tx.clone());
        }
        let tx = lane::spawn(
            self.inner.shared.clone(),
            room.clone(),
            &self.inner.tracker,
            self.inner.shutdown.child_token(),
        );
        lanes.insert(room.clone(), tx.clone());
        Ok(tx)
    }

    async fn call<T>(
        &self,
        room: Arc<str>,
        op: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> LaneOp,
    ) -> Result<T, LogError> {
        let tx = self.lane(&room)?;
        let (reply, rx) = oneshot::channel();
        tx.send(op(reply)).await.map_err(|_| LogError::Stopped)?;
        rx.await.map_err(|_| LogError::Stopped)?
    }
}
