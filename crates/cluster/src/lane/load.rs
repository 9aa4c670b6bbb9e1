//! A lane's loads: reading the room, and owning it (the takeover record after the tip read).

use async_nats::jetstream::consumer::DeliverPolicy;
use tracing::debug;

use crate::error::LogError;
use crate::record::{Record, Takeover};
use crate::room_log::StoredRoom;

use super::{Claim, Known, Lane, LoadMode, TAKEOVER_ATTEMPTS};

impl Lane {
    pub(super) async fn load(&mut self, mode: LoadMode) -> Result<StoredRoom, LogError> {
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
    pub(super) async fn take_over(&mut self, claim: &Claim) -> Result<StoredRoom, LogError> {
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
    pub(super) async fn read_room(&mut self) -> Result<(StoredRoom, Option<Takeover>), LogError> {
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
}
