//! The bytes of one message on a room's subject: a batch of updates, a snapshot (a compaction),
//! a tombstone (a deleted room), or the manifest of a record too large for one message.
//!
//! Layout (integers little-endian): `[FORMAT][tag]` then
//! - `1` updates: `first_seq u64, n u32, n × (len u32, bytes)`; seqs `first_seq..first_seq+n`;
//! - `2` snapshot: `snapshot_seq u64, len u32, bytes, n u32, n × (seq u64, len u32, bytes)`:
//!   the snapshot plus the updates logged after `snapshot_seq` that the rollup replacing the
//!   subject's history would otherwise erase;
//! - `3` tombstone: `last_seq u64`;
//! - `4` chunked: `last_seq u64, len u64, n u32, n × stream_seq u64`: the record's encoding
//!   split over `n` messages on the room's chunk subject, at these stream sequences;
//! - `5` takeover: `last_seq u64, stored u8, epoch u64, token [16], len u32, node (UTF-8)`:
//!   the fencing marker a node writes when it loads a room to own it (no updates, no seqs;
//!   `stored` = the room had content then, for listings). Data written before this kind
//!   existed never contains it, so old logs read unchanged.
//!
//! Owns only the encoding; what the records mean for a room is `room_log.rs`'s.

use bytes::{BufMut, Bytes, BytesMut};

const FORMAT: u8 = 1;
const TAG_UPDATES: u8 = 1;
const TAG_SNAPSHOT: u8 = 2;
const TAG_TOMBSTONE: u8 = 3;
const TAG_CHUNKED: u8 = 4;
const TAG_TAKEOVER: u8 = 5;

/// One decoded room-subject message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    Updates {
        first_seq: u64,
        updates: Vec<Bytes>,
    },
    Snapshot {
        snapshot_seq: u64,
        snapshot: Bytes,
        tail: Vec<(u64, Bytes)>,
    },
    Tombstone {
        last_seq: u64,
    },
    Chunked {
        last_seq: u64,
        len: u64,
        chunks: Vec<u64>,
    },
    Takeover(Takeover),
}

/// A node's claim on a room, written before it serves the room: every write that expected an
/// earlier subject sequence (a stale owner's) is refused from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Takeover {
    /// The room's last seq when taken over (takeovers take no seqs of their own).
    pub last_seq: u64,
    /// Whether the room had content (false: never stored, or deleted), for listings.
    pub stored: bool,
    /// The taker's lease epoch (0 without a lease, e.g. a bare store in tests).
    pub epoch: u64,
    /// Identifies this takeover: the taker checks it is still the latest one when it has to
    /// re-read the room's tip.
    pub token: [u8; 16],
    /// The taker's node id (diagnostics).
    pub node: String,
}

/// Why a message does not decode (the caller names room and sequence).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(&'static str);

impl DecodeError {
    /// A chunked record whose chunks hold another manifest.
    pub(crate) fn nested() -> DecodeError {
        DecodeError("a chunked record inside a chunked record")
    }
}

/// A record would not fit the encoding (a part over 4 GiB).
#[derive(Debug, thiserror::Error)]
#[error("a record part of {0} bytes exceeds the 4 GiB limit of the encoding")]
pub struct TooLarge(pub usize);

impl Record {
    /// The highest room seq this record accounts for.
    pub(crate) fn last_seq(&self) -> u64 {
        match self {
            Record::Updates { first_seq, updates } => {
                first_seq + (updates.len() as u64).saturating_sub(1)
            }
            Record::Snapshot {
                snapshot_seq, tail, ..
            } => tail.last().map_or(*snapshot_seq, |(s, _)| *s),
            Record::Tombstone { last_seq }
            | Record::Chunked { last_seq, .. }
            | Record::Takeover(Takeover { last_seq, .. }) => *last_seq,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes, TooLarge> {
        let mut b = BytesMut::new();
        b.put_u8(FORMAT);
        match self {
            Record::Updates { first_seq, updates } => {
                b.put_u8(TAG_UPDATES);
                b.put_u64_le(*first_seq);
                put_len(&mut b, updates.len())?;
                for u in updates {
                    put_len(&mut b, u.len())?;
                    b.put_slice(u);
                }
            }
            Record::Snapshot {
                snapshot_seq,
                snapshot,
                tail,
            } => {
                b.put_u8(TAG_SNAPSHOT);
                b.put_u64_le(*snapshot_seq);
                put_len(&mut b, snapshot.len())?;
                b.put_slice(snapshot);
                put_len(&mut b, tail.len())?;
                for (seq, u) in tail {
                    b.put_u64_le(*seq);
                    put_len(&mut b, u.len())?;
                    b.put_slice(u);
                }
            }
            Record::Tombstone { last_seq } => {
                b.put_u8(TAG_TOMBSTONE);
                b.put_u64_le(*last_seq);
            }
            Record::Chunked {
                last_seq,
                len,
                chunks,
            } => {
                b.put_u8(TAG_CHUNKED);
                b.put_u64_le(*last_seq);
                b.put_u64_le(*len);
                put_len(&mut b, chunks.len())?;
                for c in chunks {
                    b.put_u64_le(*c);
                }
            }
            Record::Takeover(t) => {
                b.put_u8(TAG_TAKEOVER);
                b.put_u64_le(t.last_seq);
                b.put_u8(u8::from(t.stored));
                b.put_u64_le(t.epoch);
                b.put_slice(&t.token);
                put_len(&mut b, t.node.len())?;
                b.put_slice(t.node.as_bytes());
            }
        }
        Ok(b.freeze())
    }

    pub(crate) fn decode(bytes: &Bytes) -> Result<Record, DecodeError> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.u8()? != FORMAT {
            return Err(DecodeError("unknown record format"));
        }
        let record = match r.u8()? {
            TAG_UPDATES => {
                let first_seq = r.u64()?;
                let n = r.u32()?;
                let mut updates = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    updates.push(r.blob()?);
                }
                Record::Updates { first_seq, updates }
            }
            TAG_SNAPSHOT => {
                let snapshot_seq = r.u64()?;
                let snapshot = r.blob()?;
                let n = r.u32()?;
                let mut tail = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    let seq = r.u64()?;
                    tail.push((seq, r.blob()?));
                }
                Record::Snapshot {
                    snapshot_seq,
                    snapshot,
                    tail,
                }
            }
            TAG_TOMBSTONE => Record::Tombstone { last_seq: r.u64()? },
            TAG_CHUNKED => {
                let last_seq = r.u64()?;
                let len = r.u64()?;
                let n = r.u32()?;
                let mut chunks = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    chunks.push(r.u64()?);
                }
                Record::Chunked {
                    last_seq,
                    len,
                    chunks,
                }
            }
            TAG_TAKEOVER => {
                let last_seq = r.u64()?;
                let stored = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError("takeover flag is neither 0 nor 1")),
                };
                let epoch = r.u64()?;
                let mut token = [0u8; 16];
                token.copy_from_slice(&r.take(16)?);
                let node = String::from_utf8(r.blob()?.to_vec())
                    .map_err(|_| DecodeError("takeover node id is not UTF-8"))?;
                Record::Takeover(Takeover {
                    last_seq,
                    stored,
                    epoch,
                    token,
                    node,
                })
            }
            _ => return Err(DecodeError("unknown record tag")),
        };
        if r.at != bytes.len() {
            return Err(DecodeError("trailing bytes after the record"));
        }
        Ok(record)
    }
}

fn put_len(b: &mut BytesMut, len: usize) -> Result<(), TooLarge> {
    b.put_u32_le(u32::try_from(len).map_err(|_| TooLarge(len))?);
    Ok(())
}

struct Reader<'a> {
    b: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.b.len())
            .ok_or(DecodeError("record truncated"))?;
        let out = self.b.slice(self.at..end);
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&s);
        Ok(u64::from_le_bytes(a))
    }
    fn blob(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn every_kind_round_trips() {
        for r in [
            Record::Updates {
                first_seq: 7,
                updates: vec![b("a"), b(""), b("ccc")],
            },
            Record::Snapshot {
                snapshot_seq: 9,
                snapshot: b("snap"),
                tail: vec![(10, b("x")), (11, b("y"))],
            },
            Record::Tombstone { last_seq: 42 },
            Record::Chunked {
                last_seq: 5,
                len: 3_000_000,
                chunks: vec![1, 4, 9],
            },
            Record::Takeover(Takeover {
                last_seq: 12,
                stored: true,
                epoch: 77,
                token: [3; 16],
                node: "n-é".to_owned(),
            }),
        ] {
            let bytes = r.encode().unwrap();
            assert_eq!(Record::decode(&bytes).unwrap(), r);
        }
        assert_eq!(
            Record::Updates {
                first_seq: 7,
                updates: vec![b("a"), b("b")]
            }
            .last_seq(),
            8
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            &[9][..],
            &[1, 1, 0][..],
            &[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255][..],
            &[1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 2][..],
        ] {
            assert!(Record::decode(&Bytes::copy_from_slice(bytes)).is_err());
        }
    }
}
