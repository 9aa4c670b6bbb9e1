//! The redb engine of the outbox: the `bridge_*` tables inside the process's shared database.
//!
//! Every write is one short, synchronous write transaction with `Durability::Immediate`;
//! callers run them off the async runtime and never across network I/O. Files: `tables.rs`
//! (format), `txn.rs` (the steps every write shares: load, append + re-fold, settle), `calls.rs`
//! (create, claim, complete, rescue, cancel, make due), `reads.rs` (reads for the engine and
//! the HTTP API), `webhooks.rs` (dedupe, parking, linking external ids), `writeback.rs`
//! (the write-back queue), `notices.rs` (the failure-notice queue), `prune.rs` (retention),
//! `backup.rs` (the table copy of a backup).

mod backup;
mod calls;
mod notices;
mod prune;
mod reads;
mod tables;
mod txn;
mod webhooks;
mod writeback;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rand::Rng;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::{
    CallFilter, Claim, Completion, FailureNotice, OutboxError, OutboxStore, StoredEvent,
    WebhookApply, Writeback,
};
use crate::config::{RetentionConfig, RetryPolicy};
use crate::model::{ApiCall, EventKind, NewCall, Outcome};

pub use backup::copy_tables;
pub use tables::SCHEMA_VERSION;

use tables::{
    BY_ROOM, BYTE_TABLES, CALLS, EVENTS, FAILURE_NOTICES, LEASE_EXPIRY, META, READY, WEBHOOK_SEEN,
    WRITEBACK, by_room_key, dec,
};
use txn::Effects;

/// Handle to the outbox tables inside the shared database. Cheap to clone.
#[derive(Clone)]
pub struct RedbOutbox {
    db: Arc<Database>,
    policy: RetryPolicy,
    commits: Arc<AtomicU64>,
    /// Failed calls queue a `call.failed` notice (see `with_failure_notices`).
    failure_notices: bool,
    /// Finished calls are recorded in the metrics (see `set_metrics`).
    metrics: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedbOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbOutbox")
            .field("policy", &self.policy)
            .field("failure_notices", &self.failure_notices)
            .finish_non_exhaustive()
    }
}

impl RedbOutbox {
    /// Creates the `bridge_*` tables if needed and checks the schema version.
    pub fn open(db: Arc<Database>, policy: RetryPolicy) -> Result<Self, OutboxError> {
        let txn = db.begin_write().map_err(OutboxError::db)?;
        {
            let mut meta = txn.open_table(META).map_err(OutboxError::db)?;
            let v = meta
                .get("schema_version")
                .map_err(OutboxError::db)?
                .map(|g| g.value());
            match v {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(OutboxError::db)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(OutboxError::SchemaVersion {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            // The same list the backup copies, so a new table is created and backed up alike.
            for def in BYTE_TABLES {
                txn.open_table(def).map_err(OutboxError::db)?;
            }
            txn.open_table(WEBHOOK_SEEN).map_err(OutboxError::db)?;
            txn.open_table(WRITEBACK).map_err(OutboxError::db)?;
            txn.open_table(FAILURE_NOTICES).map_err(OutboxError::db)?;
            // The room index came after the first layout; fill it for calls stored before.
            let mut by_room = txn.open_table(BY_ROOM).map_err(OutboxError::db)?;
            if by_room.is_empty().map_err(OutboxError::db)? {
                let calls = txn.open_table(CALLS).map_err(OutboxError::db)?;
                for item in calls.iter().map_err(OutboxError::db)? {
                    let (_, v) = item.map_err(OutboxError::db)?;
                    let call: ApiCall = dec(v.value())?;
                    by_room
                        .insert(by_room_key(&call).as_slice(), [].as_slice())
                        .map_err(OutboxError::db)?;
                }
            }
        }
        txn.commit().map_err(OutboxError::db)?;
        Ok(Self {
            db,
            policy,
            commits: Arc::default(),
            failure_notices: false,
            metrics: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Whether calls finished through this handle (and its clones) are recorded in the
    /// metrics. A replica replaying a log turns them off: those calls were counted when they
    /// finished the first time.
    pub fn set_metrics(&self, on: bool) {
        self.metrics.store(on, Ordering::Relaxed);
    }

    /// `create_calls` with the ids of the calls to create given: `ids[i]` for `specs[i]` if it
    /// creates one (a replicated log records them so every replay creates the same calls).
    pub fn create_calls_with_ids(
        &self,
        specs: Vec<NewCall>,
        ids: &[Uuid],
        now: u64,
    ) -> Result<Vec<(ApiCall, bool)>, OutboxError> {
        if ids.len() != specs.len() {
            return Err(OutboxError::Empty(
                "create_calls_with_ids (one id per spec)",
            ));
        }
        self.write(|txn, _| calls::create(txn, specs, now, &mut |i| ids[i]))
    }

    /// `claim_due` whose fencing tokens are all greater than `floor` (a replicated log passes
    /// a floor derived from the claim's own sequence: tokens then increase across every handle
    /// that ever wrote the log).
    pub fn claim_due_above(
        &self,
        now: u64,
        slots: &HashMap<String, usize>,
        max: usize,
        floor: u64,
    ) -> Result<Vec<Claim>, OutboxError> {
        self.write(|txn, fx| calls::claim_due(txn, &self.policy, (now, floor), slots, max, fx))
    }

    /// A read transaction of the whole database (a replica's snapshot, a backup copy).
    pub fn begin_read(&self) -> Result<redb::ReadTransaction, OutboxError> {
        self.read()
    }

    /// With `on`, every call that fails queues a [`FailureNotice`] in the same transaction
    /// (a `call.failed` receiver is configured). Off by default: nobody would drain them.
    #[must_use]
    pub fn with_failure_notices(mut self, on: bool) -> Self {
        self.failure_notices = on;
        self
    }

    /// Runs `f` in one durable write transaction, then records the metrics of the calls it
    /// finished.
    fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction, &mut Effects) -> Result<R, OutboxError>,
    ) -> Result<R, OutboxError> {
        let mut txn = self.db.begin_write().map_err(OutboxError::db)?;
        // Immediate is redb's default; set explicitly because losing an acknowledged outcome
        // or webhook would break the bridge's guarantees.
        txn.set_durability(redb::Durability::Immediate)
            .map_err(OutboxError::db)?;
        let mut fx = Effects {
            failure_notices: self.failure_notices,
            finished: Vec::new(),
        };
        let r = f(&txn, &mut fx)?;
        txn.commit().map_err(OutboxError::db)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        if self.metrics.load(Ordering::Relaxed) {
            for finished in &fx.finished {
                finished.record();
            }
        }
        Ok(r)
    }

    fn read(&self) -> Result<redb::ReadTransaction, OutboxError> {
        self.db.begin_read().map_err(OutboxError::db)
    }
}

impl OutboxStore for RedbOutbox {
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
        self.write(|txn, _| calls::create(txn, specs, now, &mut |_| Uuid::now_v7()))
    }

    fn find_by_trigger(
        &self,
        room: &str,
        block: &str,
        index: &str,
        attempt: u32,
    ) -> Result<Option<ApiCall>, OutboxError> {
        reads::find_by_trigger(&self.read()?, room, block, index, attempt)
    }

    fn get(&self, id: &Uuid) -> Result<Option<ApiCall>, OutboxError> {
        reads::get(&self.read()?, id)
    }

    fn events(&self, id: &Uuid) -> Result<Vec<StoredEvent>, OutboxError> {
        let txn = self.read()?;
        let t = txn.open_table(EVENTS).map_err(OutboxError::db)?;
        txn::events_in(&t, id)
    }

    fn list(&self, filter: &CallFilter) -> Result<Vec<ApiCall>, OutboxError> {
        reads::list(&self.read()?, filter)
    }

    fn queue_sizes(&self) -> Result<(u64, u64, u64), OutboxError> {
        reads::queue_sizes(&self.read()?)
    }

    fn next_due(&self) -> Result<Option<u64>, OutboxError> {
        reads::first_time(&self.read()?, READY)
    }

    fn next_lease_expiry(&self) -> Result<Option<u64>, OutboxError> {
        reads::first_time(&self.read()?, LEASE_EXPIRY)
    }

    fn claim_due(
        &self,
        now: u64,
        slots: &HashMap<String, usize>,
        max: usize,
    ) -> Result<Vec<Claim>, OutboxError> {
        self.write(|txn, fx| calls::claim_due(txn, &self.policy, (now, 0), slots, max, fx))
    }

    fn complete_many(
        &self,
        items: Vec<(Uuid, Option<u64>, Outcome)>,
        now: u64,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Completion>, OutboxError> {
        self.write(|txn, fx| {
            items
                .into_iter()
                .map(|item| calls::complete(txn, &self.policy, item, now, &mut *rng, fx))
                .collect()
        })
    }

    fn apply_webhook(
        &self,
        integration: &str,
        webhook_id: &str,
        external_id: &str,
        kind: EventKind,
        now: u64,
    ) -> Result<WebhookApply, OutboxError> {
        self.write(|txn, fx| {
            webhooks::apply(txn, integration, webhook_id, external_id, kind, now, fx)
        })
    }

    fn cancel(&self, id: &Uuid, reason: &str, now: u64) -> Result<bool, OutboxError> {
        self.write(|txn, fx| calls::cancel(txn, id, reason, now, fx))
    }

    fn rescue_expired(
        &self,
        now: u64,
        all: bool,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Uuid>, OutboxError> {
        self.write(|txn, fx| calls::rescue_expired(txn, &self.policy, now, all, rng, fx))
    }

    fn make_due(&self, id: &Uuid, now: u64) -> Result<bool, OutboxError> {
        self.write(|txn, _| calls::make_due(txn, id, now))
    }

    fn writebacks(&self, max: usize) -> Result<Vec<(u64, Writeback)>, OutboxError> {
        writeback::pending(&self.read()?, max)
    }

    fn push_writeback(&self, wb: &Writeback) -> Result<(), OutboxError> {
        self.write(|txn, _| writeback::push(txn, wb))
    }

    fn forget_room(&self, room: &str) -> Result<Vec<Writeback>, OutboxError> {
        self.write(|txn, _| writeback::forget_room(txn, room))
    }

    fn note_writeback_failed(&self, id: &Uuid, error: &str, now: u64) -> Result<bool, OutboxError> {
        self.write(|txn, _| writeback::note_failed(txn, id, error, now))
    }

    fn ack_writebacks(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(|txn, _| writeback::ack(txn, seqs))
    }

    fn failure_notices(&self, max: usize) -> Result<Vec<(u64, FailureNotice)>, OutboxError> {
        notices::pending(&self.read()?, max)
    }

    fn failure_notice_count(&self) -> Result<u64, OutboxError> {
        notices::count(&self.read()?)
    }

    fn ack_failure_notices(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(|txn, _| notices::ack(txn, seqs))
    }

    fn prune(&self, now: u64, retention: &RetentionConfig) -> Result<usize, OutboxError> {
        let pending_wb: std::collections::HashSet<String> = self
            .writebacks(usize::MAX)?
            .into_iter()
            .filter_map(|(_, w)| w.api_call_id)
            .collect();
        self.write(|txn, _| prune::prune(txn, now, retention, &pending_wb))
    }
}
