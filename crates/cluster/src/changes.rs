//! The cluster-wide stream of committed room changes: every room's updates, whichever node
//! owns the room, as JetStream stored them. What a cluster-wide role (the bridge) follows
//! instead of one node's relay event stream.
//!
//! One ordered consumer per room stream on its record subjects (`{prefix}.{i}.r.>`), starting
//! at the stream's end when subscribed; all of them feed one bounded queue. A room lives on
//! one stream, so its changes arrive in the order they were stored. Per record:
//! - updates → one [`RoomChange::Update`] per update, with its room seq (a chunked record is
//!   reassembled from its chunks first);
//! - tombstone → [`RoomChange::Deleted`];
//! - takeover → nothing (no seqs, no content);
//! - snapshot (a compaction's rollup) → nothing when every update it folds in was delivered
//!   already, which is the normal case. A rollup erases the history before it, so a consumer
//!   that had fallen behind never receives the updates it erased: then (or when this stream
//!   has not seen the room since it started, so it cannot tell) the snapshot itself is
//!   delivered as [`RoomChange::Resync`] (the room's whole state up to its seq, which a Yjs
//!   peer applies idempotently), followed by the updates logged after it that were not
//!   delivered yet.
//! - A consumer that fails is recreated after the last stream sequence it delivered, and
//!   [`RoomChange::Lagged`] says that a gap was possible.
//!
//! Memory is bounded: the queue holds at most `capacity` changes (a slow reader stalls the
//! consumers, whose pull requests then stop, instead of buffering), and each stream remembers
//! the last seq it delivered for at most `max_tracked_rooms` rooms (forgetting them all when
//! full, which only costs a `Resync` at the rooms' next compactions). Every task ends when the
//! [`RoomChanges`] is stopped or dropped.
//!
//! Must not know: what an update means (yrs), who reads the changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::{ConsumerError, InfoError, Stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::names::decode_room;
use crate::record::Record;
use crate::room_log::RoomLog;

/// Changes queued for the reader at most (see the module doc).
pub const DEFAULT_CHANGES_CAPACITY: usize = 1024;

/// Rooms per stream whose last delivered seq is remembered (see the module doc).
pub const DEFAULT_MAX_TRACKED_ROOMS: usize = 100_000;

/// Wait before recreating a consumer that failed (NATS down, stream gone).
const RECREATE_BACKOFF: Duration = Duration::from_millis(500);

/// One committed change of a room, in order per room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// `update` was durably stored as the room's seq `seq`.
    Update {
        room: Arc<str>,
        seq: u64,
        update: Bytes,
    },
    /// The room's whole state up to `seq` (a compaction's snapshot): delivered instead of
    /// updates a rollup may have erased before they were read. Applying it is idempotent.
    Resync {
        room: Arc<str>,
        seq: u64,
        state: Bytes,
    },
    /// The room was deleted.
    Deleted { room: Arc<str> },
    /// A consumer had to be recreated: changes of any room may have been missed.
    Lagged,
}

/// Why the change stream could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error("reading the state of stream {stream}")]
    Info {
        stream: String,
        #[source]
        source: InfoError,
    },
    #[error("creating an ordered consumer on stream {stream}")]
    Consumer {
        stream: String,
        #[source]
        source: ConsumerError,
    },
    #[error("reading stream {stream} with an ordered consumer")]
    Messages {
        stream: String,
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
}

/// A subscription to every room's committed changes. Dropping it stops its tasks.
#[derive(Debug)]
pub struct RoomChanges {
    rx: mpsc::Receiver<RoomChange>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl RoomChanges {
    /// Subscribes to the changes stored from now on (the consumers exist when this returns:
    /// read room state after it, and nothing falls in between).
    pub async fn subscribe(log: &RoomLog) -> Result<RoomChanges, ChangesError> {
        Self::subscribe_with(log, DEFAULT_CHANGES_CAPACITY, DEFAULT_MAX_TRACKED_ROOMS).await
    }

    /// [`RoomChanges::subscribe`] with explicit bounds.
    pub async fn subscribe_with(
        log: &RoomLog,
        capacity: usize,
        max_tracked_rooms: usize,
    ) -> Result<RoomChanges, ChangesError> {
        let shared = log.shared();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut followers = Vec::new();
        for (i, stream) in shared.streams.iter().enumerate() {
            let p = &shared.cfg.subject_prefix;
            let mut follower = Follower {
                stream: stream.clone(),
                name: stream.cached_info().config.name.clone(),
                record_prefix: format!("{p}.{i}.r."),
                chunk_prefix: format!("{p}.{i}.c."),
                tx: tx.clone(),
                last: 0,
                rooms: HashMap::new(),
                max_rooms: max_tracked_rooms.max(1),
            };
            let info = stream
                .get_info()
                .await
                .map_err(|source| ChangesError::Info {
                    stream: follower.name.clone(),
                    source,
                })?;
            follower.last = info.state.last_sequence;
            let messages = follower.open().await?;
            followers.push((follower, messages));
        }
        for (follower, messages) in followers {
            tracker.spawn(follower.run(messages, shutdown.clone()));
        }
        tracker.close();
        Ok(RoomChanges {
            rx,
            shutdown,
            tracker,
        })
    }

    /// The next change; `None` once stopped.
    pub async fn recv(&mut self) -> Option<RoomChange> {
        self.rx.recv().await
    }

    /// Stops the consumers and waits for their tasks.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.wait().await;
    }
}

impl Drop for RoomChanges {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One stream's consumer and what it remembers.
struct Follower {
    stream: Stream,
    name: String,
    record_prefix: String,
    chunk_prefix: String,
    tx: mpsc::Sender<RoomChange>,
    /// The last stream sequence delivered (or the stream's end when subscribed).
    last: u64,
    /// Room → the last seq delivered for it (or accounted for by a tombstone).
    rooms: HashMap<Arc<str>, u64>,
    max_rooms: usize,
}

impl Follower {
    /// An ordered consumer on the stream's record subjects after `self.last`.
    async fn open(&self) -> Result<pull::Ordered, ChangesError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}>", self.record_prefix),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.last + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|source| ChangesError::Consumer {
                stream: self.name.clone(),
                source,
            })?;
        consumer
            .messages()
            .await
            .map_err(|source| ChangesError::Messages {
                stream: self.name.clone(),
                source,
            })
    }

    async fn run(mut self, mut messages: pull::Ordered, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let ok = match next {
                Some(Ok(message)) => self.handle(message, &shutdown).await,
                Some(Err(e)) => {
                    warn!(stream = %self.name, error = %e, "change stream consumer failed; recreating it");
                    let Some(m) = self.reopen(&shutdown).await else {
                        return;
                    };
                    messages = m;
                    self.lagged(&shutdown).await
                }
                None => {
                    warn!(stream = %self.name, "change stream consumer ended; recreating it");
                    let Some(m) = self.reopen(&shutdown).await else {
                        return;
                    };
                    messages = m;
                    self.lagged(&shutdown).await
                }
            };
            if !ok {
                return;
            }
        }
    }

    /// Recreates the consumer after the last delivered sequence; `None` at shutdown.
    async fn reopen(&mut self, shutdown: &CancellationToken) -> Option<pull::Ordered> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(RECREATE_BACKOFF) => {}
            }
            match self.open().await {
                Ok(m) => return Some(m),
                Err(e) => {
                    warn!(stream = %self.name, error = %e, "recreating the change stream consumer failed")
                }
            }
        }
    }

    /// A gap was possible: what was remembered per room no longer says what was delivered.
    async fn lagged(&mut self, shutdown: &CancellationToken) -> bool {
        self.rooms.clear();
        self.send(RoomChange::Lagged, shutdown).await
    }

    /// Sends one change; false once the reader is gone or at shutdown.
    async fn send(&self, change: RoomChange, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => false,
            r = self.tx.send(change) => r.is_ok(),
        }
    }

    /// Turns one message into changes; false once the reader is gone.
    async fn handle(
        &mut self,
        message: async_nats::jetstream::Message,
        shutdown: &CancellationToken,
    ) -> bool {
        let seq = match message.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                warn!(stream = %self.name, error = %e, "change without delivery info; skipped");
                return self.lagged(shutdown).await;
            }
        };
        self.last = seq;
        let Some(token) = message.subject.as_str().strip_prefix(&self.record_prefix) else {
            return true;
        };
        let Some(name) = decode_room(token) else {
            return true;
        };
        let room: Arc<str> = Arc::from(name);
        let record = match Record::decode(&message.payload) {
            Ok(r) => r,
            Err(e) => {
                warn!(room = %room, seq, error = %e, "unreadable room record in the change stream");
                self.rooms.remove(&room);
                return self.lagged(shutdown).await;
            }
        };
        let chunk_subject = format!("{}{token}", self.chunk_prefix);
        let record = match crate::lane::unchunk(&self.stream, &chunk_subject, &room, seq, record)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(room = %room, seq, error = %e, "cannot reassemble a chunked record of the change stream");
                return self.lagged(shutdown).await;
            }
        };
        let delivered = self.rooms.get(&room).copied();
        let changes = changes_of(&room, record, delivered);
        if let Some(last) = changes.last_seq {
            if self.rooms.len() >= self.max_rooms && !self.rooms.contains_key(&room) {
                self.rooms.clear();
            }
            self.rooms.insert(room, last);
        }
        for change in changes.out {
            if !self.send(change, shutdown).await {
                return false;
            }
        }
        true
    }
}

/// What one record of `room` delivers, given the last seq delivered for it.
struct Changes {
    out: Vec<RoomChange>,
    /// The room's last seq after this record (`None`: unchanged).
    last_seq: Option<u64>,
}

fn changes_of(room: &Arc<str>, record: Record, delivered: Option<u64>) -> Changes {
    let after = |seq: u64| delivered.is_none_or(|d| seq > d);
    match record {
        Record::Updates { first_seq, updates } => {
            let last_seq = first_seq + (updates.len() as u64).saturating_sub(1);
            let out = updates
                .into_iter()
                .enumerate()
                .map(|(i, u)| (first_seq + i as u64, u))
                .filter(|(s, _)| after(*s))
                .map(|(seq, update)| RoomChange::Update {
                    room: room.clone(),
                    seq,
                    update,
                })
                .collect();
            Changes {
                out,
                last_seq: Some(delivered.map_or(last_seq, |d| d.max(last_seq))),
            }
        }
        Record::Snapshot {
            snapshot_seq,
            snapshot,
            tail,
        } => {
            let mut out = Vec::new();
            // Updates folded into the snapshot that were never delivered (erased by the
            // rollup, or unknowable): the snapshot stands in for them.
            if delivered.is_none_or(|d| d < snapshot_seq) {
                out.push(RoomChange::Resync {
                    room: room.clone(),
                    seq: snapshot_seq,
                    state: snapshot,
                });
            }
            let floor = delivered.map_or(snapshot_seq, |d| d.max(snapshot_seq));
            let mut last = floor;
            for (seq, update) in tail {
                if seq > floor {
                    last = last.max(seq);
                    out.push(RoomChange::Update {
                        room: room.clone(),
                        seq,
                        update,
                    });
                }
            }
            Changes {
                out,
                last_seq: Some(last),
            }
        }
        Record::Tombstone { last_seq } => Changes {
            out: vec![RoomChange::Deleted { room: room.clone() }],
            last_seq: Some(last_seq),
        },
        Record::Takeover(_) | Record::Chunked { .. } => Changes {
            out: Vec::new(),
            last_seq: None,
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn seqs(c: &Changes) -> Vec<(char, u64)> {
        c.out
            .iter()
            .map(|c| match c {
                RoomChange::Update { seq, .. } => ('u', *seq),
                RoomChange::Resync { seq, .. } => ('s', *seq),
                RoomChange::Deleted { .. } => ('d', 0),
                RoomChange::Lagged => ('l', 0),
            })
            .collect()
    }

    #[test]
    fn snapshots_stand_in_only_for_what_was_not_delivered() {
        let room: Arc<str> = Arc::from("r");
        let snap = |tail: Vec<(u64, Bytes)>| Record::Snapshot {
            snapshot_seq: 5,
            snapshot: b("s"),
            tail,
        };
        // Everything up to 7 delivered: only nothing new.
        let c = changes_of(&room, snap(vec![(6, b("a")), (7, b("b"))]), Some(7));
        assert_eq!(seqs(&c), vec![]);
        assert_eq!(c.last_seq, Some(7));
        // Up to 6 delivered: the tail's 7 only.
        let c = changes_of(&room, snap(vec![(6, b("a")), (7, b("b"))]), Some(6));
        assert_eq!(seqs(&c), vec![('u', 7)]);
        // Up to 3 delivered: 4 and 5 were erased, the snapshot stands in, then the tail.
        let c = changes_of(&room, snap(vec![(6, b("a"))]), Some(3));
        assert_eq!(seqs(&c), vec![('s', 5), ('u', 6)]);
        assert_eq!(c.last_seq, Some(6));
        // Never seen: cannot tell, so the snapshot too.
        let c = changes_of(&room, snap(vec![]), None);
        assert_eq!(seqs(&c), vec![('s', 5)]);
    }

    #[test]
    fn updates_delivered_once_in_seq_order() {
        let room: Arc<str> = Arc::from("r");
        let rec = Record::Updates {
            first_seq: 3,
            updates: vec![b("a"), b("b"), b("c")],
        };
        let c = changes_of(&room, rec.clone(), None);
        assert_eq!(seqs(&c), vec![('u', 3), ('u', 4), ('u', 5)]);
        assert_eq!(c.last_seq, Some(5));
        let c = changes_of(&room, rec, Some(4));
        assert_eq!(seqs(&c), vec![('u', 5)]);
        let c = changes_of(&room, Record::Tombstone { last_seq: 9 }, Some(5));
        assert_eq!(seqs(&c), vec![('d', 0)]);
        assert_eq!(c.last_seq, Some(9));
    }
}
