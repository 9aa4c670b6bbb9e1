//! The records of the outbox log: one [`Op`] per write of the `OutboxStore` trait, carrying
//! everything that makes its effect a function of the log alone (the time, the ids of the calls
//! it creates, the seed of the rng it draws from), and [`apply`], which replays one into the
//! replica through the redb engine's own methods.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use weaver_bridge::config::RetentionConfig;
use weaver_bridge::model::{ApiCall, EventKind, NewCall};
use weaver_bridge::outbox::{
    Claim, Completion, OutboxError, OutboxStore, Outcome, RedbOutbox, WebhookApply, Writeback,
};

/// Claims per op are fewer than this; fencing tokens of the claims of the op at log sequence
/// `s` lie in `s * TOKENS_PER_OP ..= s * TOKENS_PER_OP + TOKENS_PER_OP - 1`, so tokens grow
/// with the log whichever handle wrote it.
pub(crate) const TOKENS_PER_OP: u64 = 1024;

/// Most claims one op may make (see [`TOKENS_PER_OP`]).
pub(crate) const MAX_CLAIMS_PER_OP: usize = 1023;

/// One record of the op subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    /// A handle opened the outbox after replaying everything before it: every older handle's
    /// next write is refused (its expected last sequence is behind).
    Opened {
        handle: String,
    },
    /// The state after every op before this one is the image in `chunks` (stream sequences on
    /// the snapshot subject, `len` bytes in all). Ops before it may be purged.
    Snapshot {
        chunks: Vec<u64>,
        len: u64,
    },
    /// An op too large for one message: its encoding is in `chunks` (stream sequences on the
    /// snapshot subject, `len` bytes), and it takes effect at this record's sequence.
    Chunked {
        chunks: Vec<u64>,
        len: u64,
    },
    Create {
        specs: Vec<NewCall>,
        ids: Vec<Uuid>,
        now: u64,
    },
    Claim {
        now: u64,
        slots: HashMap<String, usize>,
        max: usize,
    },
    Complete {
        items: Vec<(Uuid, Option<u64>, Outcome)>,
        now: u64,
        seed: u64,
    },
    Webhook {
        integration: String,
        webhook_id: String,
        external_id: String,
        kind: EventKind,
        now: u64,
    },
    Cancel {
        id: Uuid,
        reason: String,
        now: u64,
    },
    Rescue {
        now: u64,
        all: bool,
        seed: u64,
    },
    MakeDue {
        id: Uuid,
        now: u64,
    },
    PushWriteback {
        wb: Writeback,
    },
    ForgetRoom {
        room: String,
    },
    NoteWritebackFailed {
        id: Uuid,
        error: String,
        now: u64,
    },
    AckWritebacks {
        seqs: Vec<u64>,
    },
    AckFailureNotices {
        seqs: Vec<u64>,
    },
    Prune {
        now: u64,
        retention: RetentionConfig,
    },
}

/// What applying an op answered (the caller's return value).
#[derive(Debug)]
pub(crate) enum Applied {
    Nothing,
    Created(Vec<(ApiCall, bool)>),
    Claims(Vec<Claim>),
    Completions(Vec<Completion>),
    Webhook(WebhookApply),
    Changed(bool),
    Ids(Vec<Uuid>),
    Writebacks(Vec<Writeback>),
    Count(usize),
}

impl Op {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, OutboxError> {
        serde_json::to_vec(self).map_err(OutboxError::Encode)
    }

    /// Decodes the op stored at log sequence `seq`.
    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Op, OutboxError> {
        serde_json::from_slice(bytes).map_err(|e| OutboxError::Corrupt {
            seq,
            why: format!("does not decode: {e}"),
        })
    }

    /// A short name for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Opened { .. } => "opened",
            Op::Snapshot { .. } => "snapshot",
            Op::Chunked { .. } => "chunked",
            Op::Create { .. } => "create",
            Op::Claim { .. } => "claim",
            Op::Complete { .. } => "complete",
            Op::Webhook { .. } => "webhook",
            Op::Cancel { .. } => "cancel",
            Op::Rescue { .. } => "rescue",
            Op::MakeDue { .. } => "make_due",
            Op::PushWriteback { .. } => "push_writeback",
            Op::ForgetRoom { .. } => "forget_room",
            Op::NoteWritebackFailed { .. } => "note_writeback_failed",
            Op::AckWritebacks { .. } => "ack_writebacks",
            Op::AckFailureNotices { .. } => "ack_failure_notices",
            Op::Prune { .. } => "prune",
        }
    }
}

/// Applies the op stored at log sequence `seq` to the replica. The same op at the same seq
/// gives the same state on every replica: this is both the live write path (after the
/// append is acknowledged) and the replay at open.
pub(crate) fn apply(replica: &RedbOutbox, op: Op, seq: u64) -> Result<Applied, OutboxError> {
    Ok(match op {
        // A chunked op is applied as the op it holds (the loader reads it first).
        Op::Opened { .. } | Op::Snapshot { .. } | Op::Chunked { .. } => Applied::Nothing,
        Op::Create { specs, ids, now } => {
            Applied::Created(replica.create_calls_with_ids(specs, &ids, now)?)
        }
        Op::Claim { now, slots, max } => Applied::Claims(replica.claim_due_above(
            now,
            &slots,
            max.min(MAX_CLAIMS_PER_OP),
            seq.saturating_mul(TOKENS_PER_OP),
        )?),
        Op::Complete { items, now, seed } => Applied::Completions(replica.complete_many(
            items,
            now,
            &mut StdRng::seed_from_u64(seed),
        )?),
        Op::Webhook {
            integration,
            webhook_id,
            external_id,
            kind,
            now,
        } => Applied::Webhook(replica.apply_webhook(
            &integration,
            &webhook_id,
            &external_id,
            kind,
            now,
        )?),
        Op::Cancel { id, reason, now } => Applied::Changed(replica.cancel(&id, &reason, now)?),
        Op::Rescue { now, all, seed } => {
            Applied::Ids(replica.rescue_expired(now, all, &mut StdRng::seed_from_u64(seed))?)
        }
        Op::MakeDue { id, now } => Applied::Changed(replica.make_due(&id, now)?),
        Op::PushWriteback { wb } => {
            replica.push_writeback(&wb)?;
            Applied::Nothing
        }
        Op::ForgetRoom { room } => Applied::Writebacks(replica.forget_room(&room)?),
        Op::NoteWritebackFailed { id, error, now } => {
            Applied::Changed(replica.note_writeback_failed(&id, &error, now)?)
        }
        Op::AckWritebacks { seqs } => {
            replica.ack_writebacks(&seqs)?;
            Applied::Nothing
        }
        Op::AckFailureNotices { seqs } => {
            replica.ack_failure_notices(&seqs)?;
            Applied::Nothing
        }
        Op::Prune { now, retention } => Applied::Count(replica.prune(now, &retention)?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ops_round_trip_and_garbage_is_a_clear_error() {
        let op = Op::Rescue {
            now: 5,
            all: true,
            seed: 9,
        };
        let back = Op::decode(1, &op.encode().unwrap()).unwrap();
        assert!(matches!(
            back,
            Op::Rescue {
                now: 5,
                all: true,
                seed: 9
            }
        ));
        let err = Op::decode(42, b"{\"op\":\"explode\"}").unwrap_err();
        assert!(matches!(err, OutboxError::Corrupt { seq: 42, .. }), "{err}");
    }
}
