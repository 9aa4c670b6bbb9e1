//! The durable feed of every room's stored seqs: weaver-notify's [`Feed`] in cluster mode.
//!
//! One durable pull consumer per room stream on its record subjects (`{prefix}.{i}.r.>`),
//! explicit acks. Each record becomes one [`FeedChange`]: updates, a snapshot (a compaction's
//! rollup) or a chunked record's manifest → `Changed` with the highest seq it accounts for (a
//! rollup erases the messages before it, acknowledged or not; its own seq covers them);
//! tombstone → `Deleted`; takeover → `Other`. A room lives on one stream, so its messages
//! arrive in the order they were stored.
//!
//! Opening resumes each consumer after its ack floor: it is recreated there, so whatever an
//! earlier reader (a notifier that died) had received but not acknowledged is read again at
//! once instead of after the ack wait. Opening must therefore happen while no other reader
//! uses the consumers: the notifier role's lease ensures that, and `open` checks the term's
//! clock before it touches each consumer. A reader of an earlier term whose consumer was
//! recreated sees it deleted and ends. The first open ever starts at the streams' ends:
//! history is not announced. Messages the reader holds longer than the ack wait are delivered
//! again (harmless: the reader's ledger covers them).
//!
//! A stream's reader that ends (its consumer deleted, its message stream closed, a panic)
//! ends the feed: [`Feed::next`] fails, so the notifier ends its term instead of silently
//! missing that stream's rooms; the next term opens the feed again.
//!
//! Memory is bounded: the queue holds at most `capacity` messages, and the server stops
//! delivering past `max_ack_pending` unacknowledged ones per stream. Every task ends when the
//! feed is dropped. Must not know: what an update means, webhooks.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use weaver_notify::{Feed, FeedChange, FeedError, FeedItem, TermClock};

use crate::names::decode_room;
use crate::record::Record;
use crate::room_log::RoomLog;

/// Wait before asking a failed consumer for messages again.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// The feed's consumers; every reader of one name must use the same values.
#[derive(Debug, Clone)]
pub struct RoomFeedConfig {
    /// The durable consumers' name (one per room stream).
    pub durable: String,
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// Unacknowledged messages per stream before the server pauses delivery.
    pub max_ack_pending: i64,
    /// Messages queued for the reader at most.
    pub capacity: usize,
}

impl Default for RoomFeedConfig {
    fn default() -> Self {
        RoomFeedConfig {
            durable: "weaver_notifier".to_owned(),
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 20_000,
            capacity: 1024,
        }
    }
}

/// Why the feed could not open.
#[derive(Debug, thiserror::Error)]
pub enum RoomFeedError {
    #[error("reading consumer {durable} of stream {stream}")]
    Info {
        stream: String,
        durable: String,
        #[source]
        source: async_nats::jetstream::context::ConsumerInfoError,
    },
    #[error("recreating consumer {durable} of stream {stream}")]
    Consumer {
        stream: String,
        durable: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("reading consumer {durable} of stream {stream}")]
    Messages {
        stream: String,
        durable: String,
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
    /// The term's lease ran out: the consumers are not this reader's to recreate any more.
    #[error("the notifier's term ended before the room feed opened")]
    Fenced,
    /// A stream's reader ended while the feed was open: its rooms would go unannounced.
    #[error("the room feed's reader of stream {stream} ended: {why}")]
    ReaderEnded { stream: String, why: String },
}

/// Acknowledges one feed message.
pub struct FeedAck(Acker);

impl std::fmt::Debug for FeedAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedAck")
    }
}

/// Every room's stored seqs, durable across readers. Dropping it stops its tasks.
#[derive(Debug)]
pub struct RoomFeed {
    rx: mpsc::Receiver<FeedItem<FeedAck>>,
    shutdown: CancellationToken,
    /// One reader per stream; each returns (its stream, why) when it ends.
    readers: JoinSet<(String, String)>,
}

impl RoomFeed {
    /// Opens (or first creates) the durable consumers over `log`'s streams, for the notifier
    /// term whose lease `clock` reads: each consumer is recreated only while it is valid.
    pub async fn open(
        log: &RoomLog,
        cfg: &RoomFeedConfig,
        clock: &dyn TermClock,
    ) -> Result<RoomFeed, RoomFeedError> {
        let shared = log.shared();
        let (tx, rx) = mpsc::channel(cfg.capacity.max(1));
        let shutdown = CancellationToken::new();
        let mut readers = Vec::new();
        for (i, stream) in shared.streams.iter().enumerate() {
            let p = &shared.cfg.subject_prefix;
            let record_prefix = format!("{p}.{i}.r.");
            // Recreating a consumer moves every unacknowledged message back to its ack floor:
            // done by a term past its lease, it would pull the current term's messages away.
            if !clock.valid() {
                return Err(RoomFeedError::Fenced);
            }
            let consumer = open_consumer(stream, cfg, &record_prefix).await?;
            readers.push(Reader {
                name: stream.cached_info().config.name.clone(),
                consumer,
                record_prefix,
                tx: tx.clone(),
            });
        }
        let mut set = JoinSet::new();
        for reader in readers {
            set.spawn(reader.run(shutdown.clone()));
        }
        Ok(RoomFeed {
            rx,
            shutdown,
            readers: set,
        })
    }

    /// Stops the consumers' tasks and waits for them (unacknowledged messages stay so).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.readers.join_next().await.is_some() {}
    }
}

impl Drop for RoomFeed {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Feed for RoomFeed {
    type Ack = FeedAck;

    async fn next(&mut self) -> Result<Option<FeedItem<FeedAck>>, FeedError> {
        tokio::select! {
            // First: a dead reader ends the feed even while the others keep it busy.
            biased;
            Some(ended) = self.readers.join_next() => {
                let (stream, why) = ended.unwrap_or_else(|e| ("?".to_owned(), format!("its task failed: {e}")));
                warn!(stream = %stream, why = %why, "room feed reader ended; the feed ends");
                Err(FeedError(Box::new(RoomFeedError::ReaderEnded { stream, why })))
            }
            item = self.rx.recv() => Ok(item),
        }
    }

    async fn ack(&self, ack: FeedAck) -> Result<(), FeedError> {
        ack.0.ack().await.map_err(FeedError)
    }

    async fn retry(&self, ack: FeedAck, delay: Duration) -> Result<(), FeedError> {
        ack.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(FeedError)
    }
}

impl TermClock for crate::lease::LeaseClock {
    fn remaining(&self) -> Option<Duration> {
        crate::lease::LeaseClock::remaining(self)
    }
}

/// The stream's durable consumer, recreated after its ack floor (see the module doc).
async fn open_consumer(
    stream: &Stream,
    cfg: &RoomFeedConfig,
    record_prefix: &str,
) -> Result<pull::Stream, RoomFeedError> {
    let name = stream.cached_info().config.name.clone();
    let consumer_err = |source| RoomFeedError::Consumer {
        stream: name.clone(),
        durable: cfg.durable.clone(),
        source,
    };
    let deliver_policy = match stream.consumer_info(&cfg.durable).await {
        Ok(info) => {
            stream
                .delete_consumer(&cfg.durable)
                .await
                .map_err(consumer_err)?;
            DeliverPolicy::ByStartSequence {
                start_sequence: info.ack_floor.stream_sequence + 1,
            }
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => DeliverPolicy::New,
        Err(source) => {
            return Err(RoomFeedError::Info {
                stream: name.clone(),
                durable: cfg.durable.clone(),
                source,
            });
        }
    };
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(cfg.durable.clone()),
            filter_subject: format!("{record_prefix}>"),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            max_ack_pending: cfg.max_ack_pending,
            ..Default::default()
        })
        .await
        .map_err(consumer_err)?;
    consumer
        .messages()
        .await
        .map_err(|source| RoomFeedError::Messages {
            stream: name.clone(),
            durable: cfg.durable.clone(),
            source,
        })
}

/// One stream's consumer.
struct Reader {
    name: String,
    consumer: pull::Stream,
    record_prefix: String,
    tx: mpsc::Sender<FeedItem<FeedAck>>,
}

impl Reader {
    /// Reads until shutdown (then the feed is going away) or until it cannot go on; returns
    /// its stream and why it ended.
    async fn run(mut self, shutdown: CancellationToken) -> (String, String) {
        let why = self.read(shutdown).await;
        (self.name, why.to_owned())
    }

    async fn read(&mut self, shutdown: CancellationToken) -> &'static str {
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => return "shut down",
                next = self.consumer.next() => next,
            };
            let message = match next {
                Some(Ok(m)) => m,
                // Recreated by a later term (or removed): its messages are not ours any more.
                Some(Err(e)) if e.kind() == MessagesErrorKind::ConsumerDeleted => {
                    return "its consumer was deleted";
                }
                // The message stream ends after these.
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        MessagesErrorKind::RequestLimitExceeded
                            | MessagesErrorKind::PushBasedConsumer
                    ) =>
                {
                    return "its consumer refused the pull";
                }
                // Heartbeats missed, a reconnect: the durable consumer keeps its place.
                Some(Err(e)) => {
                    warn!(stream = %self.name, error = %e, "room feed consumer error; continuing");
                    tokio::select! {
                        () = shutdown.cancelled() => return "shut down",
                        () = tokio::time::sleep(RETRY_BACKOFF) => {}
                    }
                    continue;
                }
                None => return "its message stream closed",
            };
            let change = change_of(&self.record_prefix, &message.subject, &message.payload);
            let (_, acker) = message.split();
            let item = FeedItem {
                change,
                ack: FeedAck(acker),
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return "shut down",
                r = self.tx.send(item) => if r.is_err() { return "the feed was dropped" },
            }
        }
    }
}

/// What one record message means to the notifier.
fn change_of(record_prefix: &str, subject: &str, payload: &bytes::Bytes) -> FeedChange {
    let Some(room) = subject.strip_prefix(record_prefix).and_then(decode_room) else {
        return FeedChange::Other;
    };
    let room: Arc<str> = Arc::from(room);
    match Record::decode(payload) {
        Ok(Record::Tombstone { last_seq }) => FeedChange::Deleted { room, last_seq },
        Ok(Record::Takeover(_)) => FeedChange::Other,
        Ok(record) => FeedChange::Changed {
            seq: record.last_seq(),
            room,
        },
        Err(e) => {
            warn!(room = %room, error = %e, "unreadable room record in the room feed; skipped");
            FeedChange::Other
        }
    }
}
