//! The durable outbox: APICalls, their event logs, the ready queue, leases with fencing tokens,
//! the external-id index, webhook dedupe and parking, the write-back queue and the
//! failure-notice queue — behind the [`OutboxStore`] trait, with the redb engine in `redb/`.
//!
//! The outbox stores facts and applies decisions; it decides nothing itself. What an outcome,
//! a claim, an expired lease, a webhook or a cancellation does to a call is decided by the pure
//! functions of `crate::model::transition`, and the status is always the fold of the call's
//! event log (`crate::model::fold`). It knows nothing about the document or HTTP.
//!
//! Files: `mod.rs` (the trait and its contract), `records.rs` (claims, verdicts, filters),
//! `writeback.rs` (the write-back record), `failure_notice.rs` (the `call.failed` record),
//! `error.rs` (`OutboxError`), `redb/` (the engine), `conformance/` (the suite every engine
//! runs, feature `conformance-tests`). The JetStream engine is `weaver-cluster-outbox`.

#[cfg(feature = "conformance-tests")]
pub mod conformance;
mod error;
mod failure_notice;
mod records;
pub mod redb;
mod writeback;

use std::collections::HashMap;

use rand::Rng;
use uuid::Uuid;

use crate::config::{RetentionConfig, RetryPolicy};
use crate::model::{ApiCall, EventKind, NewCall};

pub use self::redb::{RedbOutbox, SCHEMA_VERSION, copy_tables};
pub use crate::model::Outcome;
pub use crate::model::transition::Phase;
pub use error::OutboxError;
pub use failure_notice::FailureNotice;
pub use records::{CallFilter, Claim, Completion, StoredEvent, WebhookApply};
pub use writeback::{DocStatus, Writeback};

/// The outbox as the engine, the HTTP API and the webhook route use it. Shared as
/// `Arc<dyn OutboxStore>`.
///
/// Methods are synchronous: each is one short atomic step against durable storage (the redb
/// engine: one write transaction with `Durability::Immediate`). Callers run them off the async
/// runtime (`spawn_blocking`) and never hold one across network I/O. `now` is milliseconds
/// since the Unix epoch, given by the caller so tests control time.
///
/// # The contract every engine keeps
///
/// (The conformance suite `outbox::conformance`, feature `conformance-tests`, checks it; run it
/// against a new engine with `outbox_conformance_suite!`.)
///
/// - **Atomic steps.** Every method that writes is all-or-nothing and durable when it returns
///   `Ok`: the events it appends, the call's re-folded status, its queue entry, its lease, the
///   write-back it queues and the counters it bumps become visible together or not at all.
///   `create_calls` and `complete_many` are one step for the whole batch.
/// - **One call per trigger.** (room, block, index, attempt) is a unique key: a second create
///   for it returns the existing call with `false` and writes nothing.
/// - **Leases and fencing tokens.** `claim_due` takes due calls (ready time ≤ `now`, oldest
///   first, at most `max`, at most `slots[integration]` per integration, 1 for an unknown one),
///   removes them from the ready queue and leases each until `now + policy.lease_ms` under a
///   fencing token that is strictly greater than every token handed out before (a JetStream
///   engine uses the claim's stream sequence). A leased call is not claimed again until its
///   lease is released or rescued.
/// - **Completion.** `complete` applies `transition::decide_completion` with the fence
///   computed from the token given and the lease held: an outcome under a stale token is only
///   noted (`Completion::Fenced`) unless it is a success, which is recorded because the API did
///   the work under the call's idempotency key; a terminal call only notes a late outcome
///   (`Completion::Ignored`), as does an unknown call (without noting anything).
/// - **Terminal is absorbing.** A completed, failed or cancelled call never changes status
///   again; it leaves the ready queue and its lease in the same step, and a completed or failed
///   call queues exactly one write-back (`done`/`error`). The first move from `pending` to
///   `processing` queues a `processing` write-back.
/// - **Rescue.** `rescue_expired` releases leases that expired before `now` (every lease with
///   `all`: a previous process's leases) and applies `transition::decide_rescue`.
/// - **Webhooks.** `apply_webhook` is idempotent per (integration, webhook id); an event for an
///   external id no call is linked to yet is parked and applied, in arrival order, in the step
///   that links the id (`initialized` of a `Started` outcome).
/// - **Write-backs** are a FIFO with increasing sequence numbers, deleted only by
///   `ack_writebacks` or `forget_room`.
/// - **Failure notices** (when the engine was opened with them on): the step that makes a call
///   `failed` queues exactly one `FailureNotice` for it, in the same atomic step; a FIFO with
///   increasing sequence numbers, deleted only by `ack_failure_notices` (never by pruning or
///   `forget_room`: the operator hears of every failure).
/// - **Metrics**: every call that becomes terminal is recorded once (`crate::metrics::Finished`)
///   after the step that made it terminal is durable, never for a step that failed.
/// - **Pruning** deletes terminal calls past retention (never one with a queued write-back)
///   with everything that points at them, and webhook ids and parked webhooks past theirs.
pub trait OutboxStore: Send + Sync + std::fmt::Debug {
    /// The retry policy in force.
    fn policy(&self) -> &RetryPolicy;

    /// Durable commits made through this handle since it was opened (a cost metric).
    fn commits(&self) -> u64;

    /// T1 for several triggers in one step: creates the call for each (room, block, index,
    /// attempt) unless one exists. Returns each call and whether it was created now.
    fn create_calls(
        &self,
        specs: Vec<NewCall>,
        now: u64,
    ) -> Result<Vec<(ApiCall, bool)>, OutboxError>;

    /// T1: `create_calls` for one trigger.
    fn create_call(&self, spec: NewCall, now: u64) -> Result<(ApiCall, bool), OutboxError> {
        self.create_calls(vec![spec], now)?
            .pop()
            .ok_or(OutboxError::Empty("create_calls"))
    }

    /// The call serving (room, block, index, attempt), if any.
    fn find_by_trigger(
        &self,
        room: &str,
        block: &str,
        index: &str,
        attempt: u32,
    ) -> Result<Option<ApiCall>, OutboxError>;

    /// One call.
    fn get(&self, id: &Uuid) -> Result<Option<ApiCall>, OutboxError>;

    /// A call's event log in order.
    fn events(&self, id: &Uuid) -> Result<Vec<StoredEvent>, OutboxError>;

    /// Calls matching the filter, newest first.
    fn list(&self, filter: &CallFilter) -> Result<Vec<ApiCall>, OutboxError>;

    /// Queue sizes: (ready, leased, pending write-backs).
    fn queue_sizes(&self) -> Result<(u64, u64, u64), OutboxError>;

    /// Earliest time something is due in the ready queue.
    fn next_due(&self) -> Result<Option<u64>, OutboxError>;

    /// Earliest lease expiry.
    fn next_lease_expiry(&self) -> Result<Option<u64>, OutboxError>;

    /// T2: leases due calls. `slots` gives free worker slots per integration (missing = 1, so a
    /// call of an unknown integration is still claimed and failed by the worker).
    fn claim_due(
        &self,
        now: u64,
        slots: &HashMap<String, usize>,
        max: usize,
    ) -> Result<Vec<Claim>, OutboxError>;

    /// T3 for several outcomes in one step. `token` is the lease's fencing token; `None` means
    /// an unleased source (manual refresh).
    fn complete_many(
        &self,
        items: Vec<(Uuid, Option<u64>, Outcome)>,
        now: u64,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Completion>, OutboxError>;

    /// T3: records a worker's outcome. A stale token's success is still accepted — the
    /// external API did the work under the same idempotency key — anything else is dropped.
    fn complete(
        &self,
        id: &Uuid,
        token: Option<u64>,
        outcome: Outcome,
        now: u64,
        rng: &mut dyn Rng,
    ) -> Result<Completion, OutboxError> {
        self.complete_many(vec![(*id, token, outcome)], now, rng)?
            .pop()
            .ok_or(OutboxError::Empty("complete_many"))
    }

    /// T4: applies a verified webhook (deduplicated by `webhook_id`).
    fn apply_webhook(
        &self,
        integration: &str,
        webhook_id: &str,
        external_id: &str,
        kind: EventKind,
        now: u64,
    ) -> Result<WebhookApply, OutboxError>;

    /// Cancels a non-terminal call (entry/block removed, attempt superseded). Returns whether
    /// anything changed.
    fn cancel(&self, id: &Uuid, reason: &str, now: u64) -> Result<bool, OutboxError>;

    /// Rescues calls whose lease expired before `now` (or every leased call when `all`, used
    /// at start-up: leases of a previous process are dead by definition). They are retried
    /// (same idempotency key) or failed when out of tries. Returns the rescued ids.
    fn rescue_expired(
        &self,
        now: u64,
        all: bool,
        rng: &mut dyn Rng,
    ) -> Result<Vec<Uuid>, OutboxError>;

    /// Makes an unleased call due now (manual refresh of a polled call). Returns false if it
    /// is unknown or terminal.
    fn make_due(&self, id: &Uuid, now: u64) -> Result<bool, OutboxError>;

    /// Pending write-backs in order, with their sequence numbers.
    fn writebacks(&self, max: usize) -> Result<Vec<(u64, Writeback)>, OutboxError>;

    /// Queues a write-back that is not tied to an outcome (e.g. a re-index request).
    fn push_writeback(&self, wb: &Writeback) -> Result<(), OutboxError>;

    /// The room was deleted: deletes every queued write-back of `room` (nothing may be written
    /// into it) and its trigger keys (content written to the room later is a new room, whose
    /// entries must get calls again even with the same block ids). Returns the dropped
    /// write-backs. Call after cancelling the room's calls.
    fn forget_room(&self, room: &str) -> Result<Vec<Writeback>, OutboxError>;

    /// Records on a call that its outcome could not be written into the document. Returns
    /// false for an unknown call.
    fn note_writeback_failed(&self, id: &Uuid, error: &str, now: u64) -> Result<bool, OutboxError>;

    /// Deletes write-backs the host confirmed as durable.
    fn ack_writebacks(&self, seqs: &[u64]) -> Result<(), OutboxError>;

    /// Queued failure notices in order, with their sequence numbers (at most `max`).
    fn failure_notices(&self, max: usize) -> Result<Vec<(u64, FailureNotice)>, OutboxError>;

    /// How many failure notices are queued.
    fn failure_notice_count(&self) -> Result<u64, OutboxError>;

    /// Deletes failure notices that were delivered (or given up).
    fn ack_failure_notices(&self, seqs: &[u64]) -> Result<(), OutboxError>;

    /// Deletes finished calls past retention (and everything pointing at them), and webhook
    /// ids and parked webhooks past theirs. Returns the number of calls deleted.
    fn prune(&self, now: u64, retention: &RetentionConfig) -> Result<usize, OutboxError>;
}
