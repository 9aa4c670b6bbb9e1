//! Reading a room's subject: its tip, its records in order, chunked records reassembled.

use async_nats::jetstream::{
    consumer::{DeliverPolicy, pull},
    stream::{DirectGetErrorKind, Stream},
};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::debug;

use crate::error::LogError;
use crate::record::Record;

use super::Lane;

impl Lane {
    /// Stream sequence of the last message on the room's subject, `None` if it has none.
    pub(super) async fn tip(&self) -> Result<Option<u64>, LogError> {
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
    pub(super) async fn tip_record(&self) -> Result<Option<(u64, Record)>, LogError> {
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

    pub(super) fn decode(&self, seq: u64, payload: &Bytes) -> Result<Record, LogError> {
        decode(&self.room, seq, payload)
    }

    /// Every record on the room's subject from `from` up to (at least) stream sequence `tip`,
    /// in order, chunked records reassembled. An ordered consumer streams them in one go and
    /// is deleted when the read ends, whatever the outcome: a server keeps an unused one for
    /// 30 s, and a stream's consumer limit (`max_consumers`) counts them, so reads in a row
    /// would otherwise run into "maximum consumers limit reached".
    pub(super) async fn read(
        &self,
        from: DeliverPolicy,
        tip: u64,
    ) -> Result<Vec<(u64, Record)>, LogError> {
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

    pub(super) async fn read_from(
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
    pub(super) async fn unchunk(&self, seq: u64, record: Record) -> Result<Record, LogError> {
        unchunk(&self.stream, &self.chunk_subject, &self.room, seq, record).await
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
