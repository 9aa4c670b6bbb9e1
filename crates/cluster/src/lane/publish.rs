//! The publish every write of a lane goes through: chunking, the expected last subject
//! sequence (the fence), and what a lost answer means (ours, another writer's, or nothing).

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use tokio::time::Instant;
use tracing::{Instrument, warn};

use crate::error::LogError;
use crate::fenced::{self, After, FencedError};
use crate::record::Record;

use super::Lane;

impl Lane {
    /// Writes `record` after subject sequence `expected` (chunked when it exceeds the
    /// server's message size). Returns the stream sequence of the room-subject message and,
    /// if chunked, the stream sequence of its first chunk.
    pub(super) async fn write(
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
    pub(super) async fn publish_chunks(&self, encoded: &Bytes) -> Result<Vec<u64>, LogError> {
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
    /// `expected` on the subject and looking for our own message id (`crate::fenced`).
    pub(super) async fn publish_fenced(
        &self,
        payload: Bytes,
        expected: u64,
        msg_id: &str,
        rollup: bool,
    ) -> Result<u64, LogError> {
        let deadline = Instant::now() + self.shared.cfg.request_timeout * 3;
        let message = || {
            let mut headers = HeaderMap::new();
            if rollup {
                headers.insert(async_nats::header::NATS_ROLLUP, "sub");
            }
            PublishMessage::build()
                .payload(payload.clone())
                .headers(headers)
                .message_id(msg_id)
                .expected_last_subject_sequence(expected)
        };
        let after = || async move {
            After::of(
                self.stream
                    .direct_get_next_for_subject(self.subject.clone(), Some(expected + 1))
                    .await,
                msg_id,
            )
        };
        fenced::publish_fenced(&self.shared.js, &self.subject, message, deadline, after)
            .instrument(tracing::info_span!("publish", room = %self.room))
            .await
            .map_err(|e| match e {
                FencedError::Fenced => LogError::Fenced {
                    room: self.room(),
                    expected,
                },
                FencedError::Publish(source) => LogError::Publish {
                    room: self.room(),
                    source,
                },
                FencedError::Read(source) => LogError::Read {
                    room: self.room(),
                    source,
                },
            })
    }

    pub(super) async fn purge_chunks_below(&self, seq: u64) {
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
