//! The outbox stream on JetStream: its set-up, the fenced append every write goes through,
//! reads of the op subject and of snapshot chunks, and purges.
//!
//! Fencing. Every message is published with `Nats-Expected-Last-Sequence` (of the whole
//! stream) = the last sequence the writing handle knows, and a `Nats-Msg-Id`. A refusal means
//! another handle wrote since: this one is fenced. An append whose answer was lost (timeout,
//! reconnect) is resolved by reading the message right after the expected sequence: ours (by
//! message id) means it landed; nothing there means it did not, and it is sent again with the
//! same id and expectation (JetStream's de-duplication covers a first send that lands late):
//! `weaver_cluster::fenced`, which a room's log shares.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::Context;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, Stream};
use bytes::Bytes;
use tokio::time::Instant;
use tracing::warn;
use weaver_cluster::fenced::{self, After, FencedError};

/// Room kept for headers below the server's payload limit when sizing snapshot chunks.
const HEADER_ROOM: usize = 4096;

/// Where the outbox lives and how it is written.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Stream name (`WEAVER_OUTBOX`).
    pub stream: String,
    /// Subjects `{prefix}.op` (ops) and `{prefix}.snap` (snapshot chunks).
    pub subject_prefix: String,
    /// Stream replicas (1, or 3 on a three-server NATS cluster).
    pub replicas: usize,
    /// Deadline of one JetStream request or publish ack.
    pub request_timeout: Duration,
    /// A snapshot is taken after this many ops since the last one.
    pub snapshot_every: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            stream: "WEAVER_OUTBOX".into(),
            subject_prefix: "weaver.outbox".into(),
            replicas: 1,
            request_timeout: Duration::from_secs(5),
            snapshot_every: 500,
        }
    }
}

/// Why a stream operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("creating or reading stream {stream}")]
    Stream {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("appending to the outbox log")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
    #[error("reading the outbox log")]
    Read(#[source] async_nats::jetstream::stream::DirectGetError),
    #[error("another handle wrote to the outbox log after sequence {expected}")]
    Fenced { expected: u64 },
    #[error("snapshot chunk {seq} is missing")]
    MissingChunk { seq: u64 },
}

/// One message of the stream.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) payload: Bytes,
}

/// The outbox stream, as one handle sees it.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    js: Context,
    stream: Stream,
    op_subject: String,
    snap_subject: String,
    chunk_size: usize,
    timeout: Duration,
}

impl Log {
    /// Creates the stream if missing (file storage, direct gets allowed).
    pub(crate) async fn open(
        client: &async_nats::Client,
        cfg: &OutboxConfig,
    ) -> Result<Log, LogError> {
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(cfg.request_timeout)
            .build(client.clone());
        let op_subject = format!("{}.op", cfg.subject_prefix);
        let snap_subject = format!("{}.snap", cfg.subject_prefix);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: cfg.stream.clone(),
                subjects: vec![op_subject.clone(), snap_subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas.max(1),
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(|e| LogError::Stream {
                stream: cfg.stream.clone(),
                source: Box::new(e),
            })?;
        let chunk_size = client
            .server_info()
            .max_payload
            .saturating_sub(HEADER_ROOM)
            .max(1024);
        Ok(Log {
            js,
            stream,
            op_subject,
            snap_subject,
            chunk_size,
            timeout: cfg.request_timeout,
        })
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The stream's last sequence and message count.
    pub(crate) async fn state(&self) -> Result<(u64, u64), LogError> {
        let info = self.stream.get_info().await.map_err(|e| LogError::Stream {
            stream: self.stream.cached_info().config.name.clone(),
            source: Box::new(e),
        })?;
        Ok((info.state.last_sequence, info.state.messages))
    }

    /// The first op at or after `from`.
    pub(crate) async fn next_op(&self, from: u64) -> Result<Option<Entry>, LogError> {
        match self
            .stream
            .direct_get_next_for_subject(self.op_subject.clone(), Some(from.max(1)))
            .await
        {
            Ok(m) => Ok(Some(Entry {
                seq: m.sequence,
                payload: m.payload,
            })),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Read(e)),
        }
    }

    /// The snapshot chunk at `seq`.
    pub(crate) async fn chunk(&self, seq: u64) -> Result<Bytes, LogError> {
        match self.stream.direct_get(seq).await {
            Ok(m) if m.subject.as_str() == self.snap_subject => Ok(m.payload),
            Ok(_) => Err(LogError::MissingChunk { seq }),
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                Err(LogError::MissingChunk { seq })
            }
            Err(e) => Err(LogError::Read(e)),
        }
    }

    /// Appends an op if the stream still ends at `expected`; returns its sequence.
    pub(crate) async fn append_op(
        &self,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<u64, LogError> {
        self.publish_fenced(self.op_subject.clone(), payload, expected, msg_id)
            .await
    }

    /// Appends a snapshot chunk if the stream still ends at `expected`; returns its sequence.
    pub(crate) async fn append_chunk(
        &self,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<u64, LogError> {
        self.publish_fenced(self.snap_subject.clone(), payload, expected, msg_id)
            .await
    }

    async fn publish_fenced(
        &self,
        subject: String,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
    ) -> Result<u64, LogError> {
        let deadline = Instant::now() + self.timeout * 3;
        let message = || {
            PublishMessage::build()
                .payload(payload.clone())
                .headers(HeaderMap::new())
                .message_id(msg_id)
                .expected_last_sequence(expected)
        };
        let after = || async move { After::of(self.stream.direct_get(expected + 1).await, msg_id) };
        fenced::publish_fenced(&self.js, &subject, message, deadline, after)
            .await
            .map_err(|e| match e {
                FencedError::Fenced => LogError::Fenced { expected },
                FencedError::Publish(e) => LogError::Publish(e),
                FencedError::Read(e) => LogError::Read(e),
            })
    }

    /// Drops the ops before `seq` (a snapshot op now stands for them).
    pub(crate) async fn purge_ops_below(&self, seq: u64) -> bool {
        self.purge(self.op_subject.clone(), seq).await
    }

    /// Drops the snapshot chunks before `seq` (older snapshots' chunks).
    pub(crate) async fn purge_chunks_below(&self, seq: u64) -> bool {
        self.purge(self.snap_subject.clone(), seq).await
    }

    async fn purge(&self, subject: String, seq: u64) -> bool {
        match self.stream.purge().filter(subject).sequence(seq).await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, seq, "purging the outbox log failed; the next snapshot retries");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use weaver_cluster::testing::{NatsServer, unique};

    use super::*;

    /// A retry after a lost ack (same message id, same expectation) returns the sequence the
    /// first send got, and the stream holds the message once; another id is fenced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retry_of_a_landed_append_is_resolved_by_reading_back() {
        let server = NatsServer::start();
        let client = server.client().await;
        let name = unique("OUTBOX");
        let cfg = OutboxConfig {
            subject_prefix: format!("t.{name}"),
            stream: name,
            ..OutboxConfig::default()
        };
        let log = Log::open(&client, &cfg).await.unwrap();
        let first = log
            .append_op(Bytes::from_static(b"{}"), 0, "m-1")
            .await
            .unwrap();
        let again = log
            .append_op(Bytes::from_static(b"{}"), 0, "m-1")
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(log.state().await.unwrap(), (first, 1));
        let other = log.append_op(Bytes::from_static(b"{}"), 0, "m-2").await;
        assert!(matches!(other, Err(LogError::Fenced { expected: 0 })));
    }
}
