//! The publish every write of a lane goes through: chunking, the expected last subject
//! sequence (the fence), and what a lost answer means (ours, another writer's, or nothing).

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    context::PublishErrorKind, message::PublishMessage, stream::DirectGetErrorKind,
};
use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::LogError;
use crate::record::Record;

use super::Lane;

/// How the message after a given subject sequence relates to a write of ours.
pub(super) enum After {
    Ours(u64),
    Other,
    Nothing,
}

impl Lane {
    /// if chunked, the stream sequence of its first chunk.
    /// Writes `record` after subject sequence `expected` (chunked when it exceeds the
    /// server's message size). Returns the stream sequence of the room-subject message and,
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
    /// `expected` on the subject and looking for our own message id.
    pub(super) async fn publish_fenced(
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
    pub(super) async fn after(&self, expected: u64, msg_id: &str) -> Result<After, LogError> {
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
