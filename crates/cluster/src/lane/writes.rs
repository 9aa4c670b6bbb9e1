//! A lane's writes: append, compaction, deletion and import, each fenced on the tip it knows.

use async_nats::jetstream::consumer::DeliverPolicy;
use bytes::Bytes;

use crate::error::LogError;
use crate::record::{Record, Takeover};
use crate::room_log::StoredRoom;

use super::{Known, Lane};

impl Lane {
    pub(super) async fn append(
        &mut self,
        updates: Vec<Bytes>,
        msg_id: &str,
    ) -> Result<u64, LogError> {
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

    pub(super) async fn compact(&mut self, upto_seq: u64, snapshot: Bytes) -> Result<(), LogError> {
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

    pub(super) async fn delete(&mut self) -> Result<(), LogError> {
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
    pub(super) async fn import(&mut self, room: StoredRoom) -> Result<(), LogError> {
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
}
