//! The outbox in and out of a cluster as the redb engine's tables: a backup reads the replica
//! (without opening a handle, so the running leader is not fenced) and copies its tables into
//! the backup file; `weaver restore --cluster` turns a backup file's tables into the first
//! snapshot of an empty outbox stream.

use bytes::Bytes;
use redb::ReadTransaction;
use weaver_bridge::config::RetryPolicy;
use weaver_bridge::outbox::{OutboxError, RedbOutbox};

use crate::image;
use crate::log::{Log, LogError, OutboxConfig};
use crate::op::Op;
use crate::open::{load, remote};

/// How often a read-only load starts again when a snapshot purged what it was reading.
const READ_ATTEMPTS: u32 = 3;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The cluster already has an outbox: restoring would mix two histories.
    #[error("the outbox stream already holds {messages} messages; restore into a new cluster")]
    NotEmpty { messages: u64 },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// The outbox as of now, in a replica of its own (for a backup: `copy_tables` of its read
/// transaction). Writes nothing to the stream.
pub async fn read_outbox(
    client: &async_nats::Client,
    cfg: &OutboxConfig,
    policy: RetryPolicy,
) -> Result<RedbOutbox, OutboxError> {
    let log = Log::open(client, cfg)
        .await
        .map_err(|e| remote("opening the outbox stream", e))?;
    let mut attempt = 1;
    loop {
        match load(&log, &policy, false).await {
            Ok(loaded) => return Ok(loaded.replica),
            // A snapshot taken meanwhile purged the ops or chunks being read.
            Err(OutboxError::Corrupt { seq, why }) if attempt < READ_ATTEMPTS => {
                tracing::warn!(
                    seq,
                    why,
                    attempt,
                    "outbox read raced a snapshot; reading again"
                );
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The bridge tables of a backup (a read transaction of its file) as an image; `None` when
/// it has none (a backup of a node that never ran the bridge).
pub fn image_of_backup(src: &ReadTransaction) -> Result<Option<Vec<u8>>, OutboxError> {
    image::image_of(src)
}

/// Writes `image` as the first snapshot of the outbox stream, which must be empty.
pub async fn restore_image(
    client: &async_nats::Client,
    cfg: &OutboxConfig,
    image: Vec<u8>,
) -> Result<(), RestoreError> {
    let log = Log::open(client, cfg)
        .await
        .map_err(|e| remote("opening the outbox stream", e))?;
    let (mut last, messages) = log
        .state()
        .await
        .map_err(|e| remote("reading the outbox stream", e))?;
    if messages > 0 {
        return Err(RestoreError::NotEmpty { messages });
    }
    let fail = |e: LogError| RestoreError::Outbox(remote("writing the restored outbox", e));
    let len = image.len() as u64;
    let image = Bytes::from(image);
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < image.len() {
        let end = (at + log.chunk_size()).min(image.len());
        let id = format!("restore-{}", chunks.len());
        last = log
            .append_chunk(image.slice(at..end), last, &id)
            .await
            .map_err(fail)?;
        chunks.push(last);
        at = end;
    }
    let op = Op::Snapshot { chunks, len }.encode()?;
    log.append_op(Bytes::from(op), last, "restore-snapshot")
        .await
        .map_err(fail)?;
    Ok(())
}

/// How many messages the outbox stream holds (0: nothing was ever written, or a restore may
/// write it).
pub async fn outbox_messages(
    client: &async_nats::Client,
    cfg: &OutboxConfig,
) -> Result<u64, OutboxError> {
    let log = Log::open(client, cfg)
        .await
        .map_err(|e| remote("opening the outbox stream", e))?;
    let (_, messages) = log
        .state()
        .await
        .map_err(|e| remote("reading the outbox stream", e))?;
    Ok(messages)
}
