//! [`JetStreamOutbox`]: the bridge's `OutboxStore` over the outbox stream.
//!
//! A write is one op appended under the handle's expected last sequence, then applied to the
//! replica (the answer the caller gets is the replica's); a write that would change nothing
//! (checked on the replica) is answered without an append. Reads answer from the replica.
//! Writes are serialized by one lock held from the append to the apply, so the handle's
//! expected sequence is always the one its replica reflects; the trait's methods are
//! synchronous and run on the blocking pool, where the lock and the wait on JetStream are
//! allowed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;
use weaver_bridge::config::{RetentionConfig, RetryPolicy};
use weaver_bridge::model::{ApiCall, EventKind, NewCall};
use weaver_bridge::outbox::{
    CallFilter, Claim, Completion, FailureNotice, OutboxError, OutboxStore, Outcome, RedbOutbox,
    StoredEvent, WebhookApply, Writeback,
};

use crate::log::{Log, LogError, OutboxConfig};
use crate::op::{self, Applied, MAX_CLAIMS_PER_OP, Op};
use crate::open::{load, remote};

/// How often an open replays again when another handle wrote during its replay.
const OPEN_ATTEMPTS: u32 = 5;

/// The outbox of a cluster's bridge leader on JetStream.
pub struct JetStreamOutbox {
    log: Log,
    rt: tokio::runtime::Handle,
    replica: RedbOutbox,
    policy: RetryPolicy,
    handle: String,
    snapshot_every: u64,
    writer: Mutex<Writer>,
    commits: AtomicU64,
    fenced: CancellationToken,
}

/// What the one writer at a time knows.
struct Writer {
    /// The stream's last sequence as this handle wrote or read it: the expectation of its
    /// next append.
    last: u64,
    since_snapshot: u64,
    next_msg: u64,
}

impl std::fmt::Debug for JetStreamOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamOutbox")
            .field("handle", &self.handle)
            .field("fenced", &self.fenced.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl JetStreamOutbox {
    /// Opens the outbox: creates the stream if needed, loads the latest snapshot and replays
    /// the op tail, then appends `opened`, which fences every handle opened before. With
    /// `failure_notices`, failed calls queue `call.failed` notices (as
    /// `RedbOutbox::with_failure_notices`). Must run inside a multi-threaded tokio runtime,
    /// whose handle the synchronous methods use to reach JetStream.
    pub async fn open(
        client: &async_nats::Client,
        cfg: &OutboxConfig,
        policy: RetryPolicy,
        failure_notices: bool,
    ) -> Result<JetStreamOutbox, OutboxError> {
        let log = Log::open(client, cfg)
            .await
            .map_err(|e| remote("opening the outbox stream", e))?;
        let handle = Uuid::new_v4().simple().to_string();
        for attempt in 1..=OPEN_ATTEMPTS {
            let loaded = load(&log, &policy, failure_notices).await?;
            let opened = Op::Opened {
                handle: handle.clone(),
            }
            .encode()?;
            match log
                .append_op(Bytes::from(opened), loaded.last, &format!("{handle}-open"))
                .await
            {
                Ok(seq) => {
                    info!(handle, seq, replayed_to = loaded.last, "outbox opened");
                    return Ok(JetStreamOutbox {
                        log,
                        rt: tokio::runtime::Handle::current(),
                        replica: loaded.replica,
                        policy,
                        handle,
                        snapshot_every: cfg.snapshot_every.max(1),
                        writer: Mutex::new(Writer {
                            last: seq,
                            since_snapshot: loaded.since_snapshot + 1,
                            next_msg: 0,
                        }),
                        commits: AtomicU64::new(0),
                        fenced: CancellationToken::new(),
                    });
                }
                Err(LogError::Fenced { .. }) => {
                    warn!(
                        handle,
                        attempt, "outbox written during the replay; replaying again"
                    );
                }
                Err(e) => return Err(remote("appending the open record", e)),
            }
        }
        Err(OutboxError::Fenced)
    }

    /// Cancelled when this handle may no longer write: another handle opened the outbox since
    /// (its append was refused), or the outcome of one of its appends stayed unknown.
    pub fn fenced(&self) -> CancellationToken {
        self.fenced.clone()
    }

    /// The replica, for a consistent read of every table (a backup).
    pub fn replica(&self) -> &RedbOutbox {
        &self.replica
    }

    /// Waits for `f` on the runtime from synchronous code (the blocking pool, a test thread, or
    /// a runtime worker, which is moved off its scheduler while it waits).
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.rt.block_on(f))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Appends `op` and applies it to the replica; returns what applying answered.
    fn write(&self, op: Op) -> Result<Applied, OutboxError> {
        if self.fenced.is_cancelled() {
            return Err(OutboxError::Fenced);
        }
        let mut w = self.lock();
        // Another writer may have found the handle fenced while this one waited.
        if self.fenced.is_cancelled() {
            return Err(OutboxError::Fenced);
        }
        let name = op.name();
        let seq = self.append(&mut w, &op)?;
        let applied = op::apply(&self.replica, op, seq).map_err(|e| {
            // Appended but not applied: the replica no longer follows the log.
            warn!(handle = %self.handle, seq, op = name, error = %e, "an appended op does not apply; this handle stops");
            self.fenced.cancel();
            e
        })?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        w.since_snapshot += 1;
        if w.since_snapshot >= self.snapshot_every {
            self.snapshot(&mut w);
        }
        Ok(applied)
    }

    /// Appends `op` after `w.last`; returns the sequence it takes effect at. An op larger than
    /// a message goes into chunks first, then a `chunked` record naming them.
    fn append(&self, w: &mut Writer, op: &Op) -> Result<u64, OutboxError> {
        let payload = Bytes::from(op.encode()?);
        if payload.len() <= self.log.chunk_size() {
            return self.append_raw(w, payload, true);
        }
        let len = payload.len() as u64;
        let chunks = self.append_chunks(w, &payload)?;
        let record = Bytes::from(Op::Chunked { chunks, len }.encode()?);
        self.append_raw(w, record, true)
    }

    /// Appends `bytes` as chunks on the snapshot subject; returns their sequences.
    fn append_chunks(&self, w: &mut Writer, bytes: &Bytes) -> Result<Vec<u64>, OutboxError> {
        let mut chunks = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + self.log.chunk_size()).min(bytes.len());
            chunks.push(self.append_raw(w, bytes.slice(at..end), false)?);
            at = end;
        }
        Ok(chunks)
    }

    fn append_raw(&self, w: &mut Writer, payload: Bytes, is_op: bool) -> Result<u64, OutboxError> {
        let msg_id = format!("{}-{}", self.handle, w.next_msg);
        w.next_msg += 1;
        let expected = w.last;
        let r = self.block(async {
            if is_op {
                self.log.append_op(payload, expected, &msg_id).await
            } else {
                self.log.append_chunk(payload, expected, &msg_id).await
            }
        });
        match r {
            Ok(seq) => {
                w.last = seq;
                Ok(seq)
            }
            Err(LogError::Fenced { .. }) => {
                warn!(handle = %self.handle, expected, "the outbox was written by another handle; this one is fenced");
                self.fenced.cancel();
                Err(OutboxError::Fenced)
            }
            Err(e) => {
                // Whether it landed is unknown: this handle cannot know its next expectation.
                self.fenced.cancel();
                Err(remote("appending to the outbox log", e))
            }
        }
    }

    /// Stores the replica's image as chunks, then a snapshot op; only then purges what it
    /// stands for. A failure is logged: the ops are still all there, the next op retries.
    fn snapshot(&self, w: &mut Writer) {
        let image = match self
            .replica
            .begin_read()
            .and_then(|r| crate::image::image_of(&r))
        {
            Ok(Some(image)) => image,
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "outbox snapshot: reading the replica failed");
                return;
            }
        };
        let len = image.len() as u64;
        let chunks = match self.append_chunks(w, &Bytes::from(image)) {
            Ok(chunks) => chunks,
            Err(e) => {
                warn!(error = %e, "outbox snapshot: storing a chunk failed");
                return;
            }
        };
        let first_chunk = chunks.first().copied();
        let snap_seq = match self.append(w, &Op::Snapshot { chunks, len }) {
            Ok(seq) => seq,
            Err(e) => {
                warn!(error = %e, "outbox snapshot: storing its record failed");
                return;
            }
        };
        w.since_snapshot = 0;
        info!(handle = %self.handle, seq = snap_seq, bytes = len, "outbox snapshot stored");
        self.block(async {
            if self.log.purge_ops_below(snap_seq).await
                && let Some(first) = first_chunk
            {
                self.log.purge_chunks_below(first).await;
            }
        });
    }
}

fn unexpected(what: &'static str) -> OutboxError {
    OutboxError::Empty(what)
}

impl OutboxStore for JetStreamOutbox {
    fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn create_calls(
        &self,
        specs: Vec<NewCall>,
        now: u64,
    ) -> Result<Vec<(ApiCall, bool)>, OutboxError> {
        let ids = specs.iter().map(|_| Uuid::now_v7()).collect();
        match self.write(Op::Create { specs, ids, now })? {
            Applied::Created(v) => Ok(v),
            _ => Err(unexpected("create_calls")),
        }
    }

    fn find_by_trigger(
        &self,
        room: &str,
        block: &str,
        index: &str,
        attempt: u32,
    ) -> Result<Option<ApiCall>, OutboxError> {
        self.replica.find_by_trigger(room, block, index, attempt)
    }

    fn get(&self, id: &Uuid) -> Result<Option<ApiCall>, OutboxError> {
        self.replica.get(id)
    }

    fn events(&self, id: &Uuid) -> Result<Vec<StoredEvent>, OutboxError> {
        self.replica.events(id)
    }

    fn list(&self, filter: &CallFilter) -> Result<Vec<ApiCall>, OutboxError> {
        self.replica.list(filter)
    }

    fn queue_sizes(&self) -> Result<(u64, u64, u64), OutboxError> {
        self.replica.queue_sizes()
    }

    fn next_due(&self) -> Result<Option<u64>, OutboxError> {
        self.replica.next_due()
    }

    fn next_lease_expiry(&self) -> Result<Option<u64>, OutboxError> {
        self.replica.next_lease_expiry()
    }

    fn claim_due(
        &self,
        now: u64,
        slots: &HashMap<String, usize>,
        max: usize,
    ) -> Result<Vec<Claim>, OutboxError> {
        if max == 0 || self.replica.next_due()?.is_none_or(|due| due > now) {
            return Ok(Vec::new());
        }
        let op = Op::Claim {
            now,
            slots: slots.clone(),
            max: max.min(MAX_CLAIMS_PER_OP),
        };
        match self.write(op)? {
            Applied::Claims(v) => Ok(v),
            _ => Err(unexpected("claim_due")),
        }
    }

    fn complete_many(
        &self,
        items: Vec<(Uuid, Option<u64>, Outcome)>,
        now: u64,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Completion>, OutboxError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let seed = rng.next_u64();
        match self.write(Op::Complete { items, now, seed })? {
            Applied::Completions(v) => Ok(v),
            _ => Err(unexpected("complete_many")),
        }
    }

    fn apply_webhook(
        &self,
        integration: &str,
        webhook_id: &str,
        external_id: &str,
        kind: EventKind,
        now: u64,
    ) -> Result<WebhookApply, OutboxError> {
        let op = Op::Webhook {
            integration: integration.to_owned(),
            webhook_id: webhook_id.to_owned(),
            external_id: external_id.to_owned(),
            kind,
            now,
        };
        match self.write(op)? {
            Applied::Webhook(v) => Ok(v),
            _ => Err(unexpected("apply_webhook")),
        }
    }

    fn cancel(&self, id: &Uuid, reason: &str, now: u64) -> Result<bool, OutboxError> {
        if self.replica.get(id)?.is_none_or(|c| c.status.is_terminal()) {
            return Ok(false);
        }
        let op = Op::Cancel {
            id: *id,
            reason: reason.to_owned(),
            now,
        };
        match self.write(op)? {
            Applied::Changed(v) => Ok(v),
            _ => Err(unexpected("cancel")),
        }
    }

    fn rescue_expired(
        &self,
        now: u64,
        all: bool,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Uuid>, OutboxError> {
        let due = match self.replica.next_lease_expiry()? {
            None => false,
            Some(until) => all || until <= now,
        };
        if !due {
            return Ok(Vec::new());
        }
        let seed = rng.next_u64();
        match self.write(Op::Rescue { now, all, seed })? {
            Applied::Ids(v) => Ok(v),
            _ => Err(unexpected("rescue_expired")),
        }
    }

    fn make_due(&self, id: &Uuid, now: u64) -> Result<bool, OutboxError> {
        if self.replica.get(id)?.is_none_or(|c| c.status.is_terminal()) {
            return Ok(false);
        }
        match self.write(Op::MakeDue { id: *id, now })? {
            Applied::Changed(v) => Ok(v),
            _ => Err(unexpected("make_due")),
        }
    }

    fn writebacks(&self, max: usize) -> Result<Vec<(u64, Writeback)>, OutboxError> {
        self.replica.writebacks(max)
    }

    fn push_writeback(&self, wb: &Writeback) -> Result<(), OutboxError> {
        self.write(Op::PushWriteback { wb: wb.clone() }).map(drop)
    }

    fn forget_room(&self, room: &str) -> Result<Vec<Writeback>, OutboxError> {
        let op = Op::ForgetRoom {
            room: room.to_owned(),
        };
        match self.write(op)? {
            Applied::Writebacks(v) => Ok(v),
            _ => Err(unexpected("forget_room")),
        }
    }

    fn note_writeback_failed(&self, id: &Uuid, error: &str, now: u64) -> Result<bool, OutboxError> {
        if self.replica.get(id)?.is_none() {
            return Ok(false);
        }
        let op = Op::NoteWritebackFailed {
            id: *id,
            error: error.to_owned(),
            now,
        };
        match self.write(op)? {
            Applied::Changed(v) => Ok(v),
            _ => Err(unexpected("note_writeback_failed")),
        }
    }

    fn ack_writebacks(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let op = Op::AckWritebacks {
            seqs: seqs.to_vec(),
        };
        self.write(op).map(drop)
    }

    fn failure_notices(&self, max: usize) -> Result<Vec<(u64, FailureNotice)>, OutboxError> {
        self.replica.failure_notices(max)
    }

    fn failure_notice_count(&self) -> Result<u64, OutboxError> {
        self.replica.failure_notice_count()
    }

    fn ack_failure_notices(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let op = Op::AckFailureNotices {
            seqs: seqs.to_vec(),
        };
        self.write(op).map(drop)
    }

    fn prune(&self, now: u64, retention: &RetentionConfig) -> Result<usize, OutboxError> {
        let op = Op::Prune {
            now,
            retention: retention.clone(),
        };
        match self.write(op)? {
            Applied::Count(v) => Ok(v),
            _ => Err(unexpected("prune")),
        }
    }
}
