//! Loading the outbox from the stream: the latest snapshot (the first op left after a purge),
//! then the op tail replayed into a fresh replica. Shared by a handle's open (which then
//! appends `opened`), a backup (which only reads) and restore (which writes a first snapshot
//! into an empty stream).

use bytes::{Bytes, BytesMut};
use tracing::debug;
use weaver_bridge::config::RetryPolicy;
use weaver_bridge::outbox::{OutboxError, RedbOutbox};

use crate::image;
use crate::log::{Log, LogError};
use crate::op::{self, Op};

/// A replica as of log sequence `last` (the stream's last sequence when the load began).
pub(crate) struct Loaded {
    pub(crate) replica: RedbOutbox,
    pub(crate) last: u64,
    /// Ops since the snapshot the load started from (or since the beginning).
    pub(crate) since_snapshot: u64,
}

pub(crate) fn remote(what: &str, e: LogError) -> OutboxError {
    OutboxError::Remote {
        what: what.to_owned(),
        source: Box::new(e),
    }
}

/// Replays the stream up to its current last sequence into a fresh replica (metrics off:
/// these calls were counted when they finished).
pub(crate) async fn load(
    log: &Log,
    policy: &RetryPolicy,
    failure_notices: bool,
) -> Result<Loaded, OutboxError> {
    let (last, _) = log
        .state()
        .await
        .map_err(|e| remote("reading the outbox stream", e))?;
    let first = log
        .next_op(1)
        .await
        .map_err(|e| remote("reading the outbox log", e))?
        .filter(|e| e.seq <= last);
    let Some(first) = first else {
        let replica = image::replica(None, policy.clone(), failure_notices)?;
        return Ok(Loaded {
            replica,
            last,
            since_snapshot: 0,
        });
    };
    let first_op = match Op::decode(first.seq, &first.payload)? {
        Op::Chunked { chunks, len } => {
            Op::decode(first.seq, &read_chunks(log, &chunks, len, first.seq).await?)?
        }
        op => op,
    };
    let (replica, mut pending) = match &first_op {
        Op::Snapshot { chunks, len } => {
            let bytes = read_chunks(log, chunks, *len, first.seq).await?;
            let replica = image::replica(Some(bytes.to_vec()), policy.clone(), failure_notices)
                .map_err(|e| OutboxError::Corrupt {
                    seq: first.seq,
                    why: format!("its snapshot does not open: {e}"),
                })?;
            (replica, None)
        }
        _ => (
            image::replica(None, policy.clone(), failure_notices)?,
            Some(first_op),
        ),
    };
    replica.set_metrics(false);
    let mut since_snapshot = 0;
    let mut seq = first.seq;
    loop {
        if let Some(op) = pending.take() {
            since_snapshot += 1;
            let name = op.name();
            op::apply(&replica, op, seq).map_err(|e| OutboxError::Corrupt {
                seq,
                why: format!("{name} does not apply: {e}"),
            })?;
        }
        let Some(next) = log
            .next_op(seq + 1)
            .await
            .map_err(|e| remote("reading the outbox log", e))?
        else {
            break;
        };
        if next.seq > last {
            break;
        }
        seq = next.seq;
        match Op::decode(seq, &next.payload)? {
            // The state already is what a later snapshot holds.
            Op::Snapshot { .. } => since_snapshot = 0,
            Op::Chunked { chunks, len } => {
                let bytes = read_chunks(log, &chunks, len, seq).await?;
                pending = Some(Op::decode(seq, &bytes)?);
            }
            op => pending = Some(op),
        }
    }
    replica.set_metrics(true);
    debug!(last, since_snapshot, "outbox replica loaded");
    Ok(Loaded {
        replica,
        last,
        since_snapshot,
    })
}

/// The bytes a snapshot or chunked op (at `seq`) stored in chunks.
async fn read_chunks(log: &Log, chunks: &[u64], len: u64, seq: u64) -> Result<Bytes, OutboxError> {
    let mut bytes = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    for chunk in chunks {
        let part = log.chunk(*chunk).await.map_err(|e| match e {
            LogError::MissingChunk { seq: c } => OutboxError::Corrupt {
                seq,
                why: format!("its chunk {c} is missing"),
            },
            e => remote("reading a snapshot chunk", e),
        })?;
        bytes.extend_from_slice(&part);
    }
    if bytes.len() as u64 != len {
        return Err(OutboxError::Corrupt {
            seq,
            why: format!(
                "snapshot holds {} bytes, its record says {len}",
                bytes.len()
            ),
        });
    }
    Ok(bytes.freeze())
}
