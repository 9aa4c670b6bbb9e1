//! The durable outbox in redb: APICalls, their event logs, the ready queue, leases with fencing
//! tokens, the external-id index, webhook dedupe and parking, and the write-back queue.
//!
//! Every method is one short, synchronous redb write (or read) transaction with
//! `Durability::Immediate`; callers run them off the async runtime (`spawn_blocking`) and never
//! across network I/O. This module decides nothing about the document or HTTP: it stores facts
//! and applies the retry policy. Table layout and encodings are documented in docs/bridge.md.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::BridgeError;
use crate::config::{RetentionConfig, RetryPolicy};
use crate::model::{ApiCall, CallStatus, Event, EventKind, NewCall, json_depth};
use crate::retry::next_delay_ms;

type Bytes<'a> = &'a [u8];

const META: TableDefinition<&str, u64> = TableDefinition::new("bridge_meta");
const CALLS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_calls");
const EVENTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_events");
const TRIGGERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_triggers");
const READY: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_ready");
const LEASES: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_leases");
const LEASE_EXPIRY: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_lease_expiry");
const EXTERNAL: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_external");
const WEBHOOK_SEEN: TableDefinition<Bytes, u64> = TableDefinition::new("bridge_webhook_seen");
const PARKED: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_parked");
const WRITEBACK: TableDefinition<u64, Bytes> = TableDefinition::new("bridge_writeback");
const BY_ROOM: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_calls_by_room");

/// Copies every bridge table from `src` into `dst`: the bridge's part of an online backup (a
/// read transaction is one committed state of calls, events, leases and queues together).
/// Returns the names of the tables copied; a table never created yet is skipped.
pub fn copy_tables(
    src: &redb::ReadTransaction,
    dst: &WriteTransaction,
) -> Result<Vec<String>, BridgeError> {
    let mut copied = Vec::new();
    copy_table(src, dst, META, &mut copied)?;
    for def in [
        CALLS,
        EVENTS,
        TRIGGERS,
        READY,
        LEASES,
        LEASE_EXPIRY,
        EXTERNAL,
        PARKED,
        BY_ROOM,
    ] {
        copy_table(src, dst, def, &mut copied)?;
    }
    copy_table(src, dst, WEBHOOK_SEEN, &mut copied)?;
    copy_table(src, dst, WRITEBACK, &mut copied)?;
    Ok(copied)
}

// The relay has the same dozen lines for its tables (`weaver_relay::copy_tables`); see there why.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &redb::ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
    copied: &mut Vec<String>,
) -> Result<(), BridgeError> {
    let from = match src.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(se(e)),
    };
    let mut to = dst.open_table(def).map_err(se)?;
    for row in from.iter().map_err(se)? {
        let (k, v) = row.map_err(se)?;
        to.insert(k.value(), v.value()).map_err(se)?;
    }
    copied.push(redb::TableHandle::name(&def).to_owned());
    Ok(())
}

/// Version of the table layout; stored in `bridge_meta["schema_version"]`.
pub const SCHEMA_VERSION: u64 = 1;
/// First byte of every JSON value: lets a later version change the encoding per row.
const VALUE_V1: u8 = 1;

fn se<E: Into<redb::Error>>(e: E) -> BridgeError {
    BridgeError::Store(e.into().to_string())
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, BridgeError> {
    let mut out = vec![VALUE_V1];
    serde_json::to_writer(&mut out, v).map_err(|e| BridgeError::Store(format!("encode: {e}")))?;
    Ok(out)
}

fn dec<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, BridgeError> {
    match b.split_first() {
        Some((&VALUE_V1, rest)) => {
            serde_json::from_slice(rest).map_err(|e| BridgeError::Store(format!("decode: {e}")))
        }
        Some((v, _)) => Err(BridgeError::Store(format!(
            "unknown value encoding version {v}"
        ))),
        None => Err(BridgeError::Store("empty value".into())),
    }
}

/// Length-prefixed string component of a composite key (u32 big-endian length + bytes), so
/// keys of different components never collide and prefixes range-scan correctly.
fn lp(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn trigger_key(room: &str, block: &str, index: &str, attempt: u32) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, room);
    lp(&mut k, block);
    lp(&mut k, index);
    k.extend_from_slice(&attempt.to_be_bytes());
    k
}

fn time_id_key(t: u64, id: &Uuid) -> Vec<u8> {
    let mut k = t.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn split_time_id(k: &[u8]) -> Option<(u64, Uuid)> {
    let t = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let id = Uuid::from_slice(k.get(8..24)?).ok()?;
    Some((t, id))
}

fn room_prefix(room: &str, block: Option<&str>) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, room);
    if let Some(b) = block {
        lp(&mut k, b);
    }
    k
}

fn by_room_key(call: &ApiCall) -> Vec<u8> {
    let mut k = room_prefix(&call.room, Some(&call.block_id));
    k.extend_from_slice(call.id.as_bytes());
    k
}

fn event_key(id: &Uuid, seq: u32) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn ext_key(integration: &str, external_id: &str) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, integration);
    lp(&mut k, external_id);
    k
}

/// Status value written into the document for an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DocStatus {
    NotStarted,
    Processing,
    Done,
    Error,
}

impl DocStatus {
    /// The schema's status string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "notStarted",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// A durable intent to write a status record into a room's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Writeback {
    pub room: String,
    pub block_id: String,
    pub index_name: String,
    pub attempt: u32,
    pub status: DocStatus,
    pub api_call_id: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub completed_at: Option<u64>,
}

/// Largest `result` written into the document; bigger responses stay in the APICall only.
const MAX_DOC_RESULT_BYTES: usize = 8 * 1024;
/// Deepest `result` written into the document (the relay's validator allows 64 levels).
const MAX_DOC_RESULT_DEPTH: usize = 32;

impl Writeback {
    fn for_call(call: &ApiCall, status: DocStatus) -> Self {
        let result = call.response_data.clone().filter(|_| status == DocStatus::Done).map(|v| {
            let n = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
            if json_depth(&v) > MAX_DOC_RESULT_DEPTH {
                // The relay refuses deeply nested values; a refused write-back would retry forever.
                serde_json::json!({"truncated": true, "reason": "too deeply nested", "see": format!("/api/calls/{}", call.id)})
            } else if n > MAX_DOC_RESULT_BYTES {
                serde_json::json!({"truncated": true, "bytes": n, "see": format!("/api/calls/{}", call.id)})
            } else {
                v
            }
        });
        Self {
            room: call.room.clone(),
            block_id: call.block_id.clone(),
            index_name: call.index_name.clone(),
            attempt: call.attempt,
            status,
            api_call_id: Some(call.id.to_string()),
            result,
            // Error texts come from outside (API bodies, webhooks): keep the document's copy short.
            error: if status == DocStatus::Error {
                call.error.as_ref().map(|e| e.chars().take(2000).collect())
            } else {
                None
            },
            completed_at: if status == DocStatus::Processing {
                None
            } else {
                call.completed_at
            },
        }
    }
}

/// A leased call handed to a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    pub call: ApiCall,
    /// Fencing token: the result is only accepted (unless it is a success) with this token.
    pub token: u64,
    pub phase: Phase,
}

/// What a worker does with a claimed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Send the request (first try or a retry; same idempotency key).
    Submit,
    /// The external system accepted it (`external_id` known): ask for its status.
    Poll,
}

/// What an integration reports for one try.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished successfully (sync API, or a poll that found the job done).
    Completed {
        external_id: Option<String>,
        data: Value,
    },
    /// Accepted asynchronously; finishes by webhook or polling (`poll_after_ms`).
    Started {
        external_id: String,
        poll_after_ms: Option<u64>,
    },
    /// A poll found the job still running.
    Pending { poll_after_ms: u64 },
    /// Failed; `retryable` decides between a scheduled retry and a terminal failure.
    Failed {
        error: String,
        retryable: bool,
        retry_after_ms: Option<u64>,
    },
}

/// What `complete` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Recorded; the call as it is now.
    Recorded(Box<ApiCall>),
    /// The lease was stale (rescued and maybe re-claimed) and the outcome was not a success.
    Fenced,
    /// The call is gone (pruned) or already terminal.
    Ignored,
}

/// Result of an inbound webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookApply {
    Duplicate,
    /// Applied to the call.
    Applied(Box<ApiCall>),
    /// No call knows this external id yet: kept until `initialized` links it.
    Parked,
}

/// Filter for `list`.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub room: Option<String>,
    pub block_id: Option<String>,
    pub status: Option<CallStatus>,
    pub limit: Option<usize>,
}

/// An event with its sequence number in the call's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u32,
    pub event: Event,
}

/// Handle to the outbox tables inside the shared database. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    policy: RetryPolicy,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Creates the `bridge_*` tables if needed and checks the schema version.
    pub fn open(db: Arc<Database>, policy: RetryPolicy) -> Result<Self, BridgeError> {
        let txn = db.begin_write().map_err(db_err)?;
        {
            let mut meta = txn.open_table(META).map_err(se)?;
            let v = meta.get("schema_version").map_err(se)?.map(|g| g.value());
            match v {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).map_err(se)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(BridgeError::Store(format!(
                        "bridge tables have schema version {other}, this build understands {SCHEMA_VERSION}"
                    )));
                }
            }
            txn.open_table(CALLS).map_err(se)?;
            txn.open_table(EVENTS).map_err(se)?;
            txn.open_table(TRIGGERS).map_err(se)?;
            txn.open_table(READY).map_err(se)?;
            txn.open_table(LEASES).map_err(se)?;
            txn.open_table(LEASE_EXPIRY).map_err(se)?;
            txn.open_table(EXTERNAL).map_err(se)?;
            txn.open_table(WEBHOOK_SEEN).map_err(se)?;
            txn.open_table(PARKED).map_err(se)?;
            txn.open_table(WRITEBACK).map_err(se)?;
            // The room index came after the first layout; fill it for calls stored before.
            let mut by_room = txn.open_table(BY_ROOM).map_err(se)?;
            if by_room.is_empty().map_err(se)? {
                let calls = txn.open_table(CALLS).map_err(se)?;
                for item in calls.iter().map_err(se)? {
                    let (_, v) = item.map_err(se)?;
                    let call: ApiCall = dec(v.value())?;
                    by_room
                        .insert(by_room_key(&call).as_slice(), [].as_slice())
                        .map_err(se)?;
                }
            }
        }
        txn.commit().map_err(se)?;
        Ok(Self {
            db,
            policy,
            commits: Arc::default(),
        })
    }

    /// Durable (fsynced) write transactions committed through this handle since it was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<R, BridgeError>,
    ) -> Result<R, BridgeError> {
        let txn = self.db.begin_write().map_err(db_err)?;
        // Immediate is redb's default; set explicitly because losing an acknowledged outcome
        // or webhook would break the bridge's guarantees.
        let mut txn = txn;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| BridgeError::Store(e.to_string()))?;
        let r = f(&txn)?;
        txn.commit().map_err(se)?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(r)
    }

    fn next_counter(txn: &WriteTransaction, name: &str) -> Result<u64, BridgeError> {
        let mut meta = txn.open_table(META).map_err(se)?;
        let n = meta.get(name).map_err(se)?.map_or(0, |g| g.value()) + 1;
        meta.insert(name, n).map_err(se)?;
        Ok(n)
    }

    fn load_call_txn(txn: &WriteTransaction, id: &Uuid) -> Result<Option<ApiCall>, BridgeError> {
        let t = txn.open_table(CALLS).map_err(se)?;
        let r = t.get(id.as_bytes().as_slice()).map_err(se)?;
        r.map(|g| dec(g.value())).transpose()
    }

    fn save_call_txn(txn: &WriteTransaction, call: &ApiCall) -> Result<(), BridgeError> {
        let mut t = txn.open_table(CALLS).map_err(se)?;
        t.insert(call.id.as_bytes().as_slice(), enc(call)?.as_slice())
            .map_err(se)?;
        Ok(())
    }

    fn events_txn(txn: &WriteTransaction, id: &Uuid) -> Result<Vec<StoredEvent>, BridgeError> {
        let t = txn.open_table(EVENTS).map_err(se)?;
        let lo = event_key(id, 0);
        let hi = event_key(id, u32::MAX);
        let mut out = Vec::new();
        for item in t.range(lo.as_slice()..=hi.as_slice()).map_err(se)? {
            let (k, v) = item.map_err(se)?;
            let seq = k
                .value()
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes);
            out.push(StoredEvent {
                seq,
                event: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// Appends events to a call's log and re-folds its status. Returns the updated call.
    fn append_txn(
        txn: &WriteTransaction,
        call: &mut ApiCall,
        kinds: Vec<EventKind>,
        now: u64,
    ) -> Result<(), BridgeError> {
        let mut log = Self::events_txn(txn, &call.id)?;
        let mut seq = log.last().map_or(0, |e| e.seq);
        {
            let mut t = txn.open_table(EVENTS).map_err(se)?;
            for kind in kinds {
                seq += 1;
                let ev = Event {
                    attempt: call.attempt,
                    at: now,
                    kind,
                };
                t.insert(event_key(&call.id, seq).as_slice(), enc(&ev)?.as_slice())
                    .map_err(se)?;
                log.push(StoredEvent { seq, event: ev });
            }
        }
        let events: Vec<Event> = log.into_iter().map(|e| e.event).collect();
        call.apply_fold(&events);
        Ok(())
    }

    fn set_ready_txn(
        txn: &WriteTransaction,
        call: &mut ApiCall,
        at: Option<u64>,
    ) -> Result<(), BridgeError> {
        let mut t = txn.open_table(READY).map_err(se)?;
        if let Some(old) = call.next_try_at.take() {
            t.remove(time_id_key(old, &call.id).as_slice())
                .map_err(se)?;
        }
        if let Some(at) = at {
            t.insert(time_id_key(at, &call.id).as_slice(), [].as_slice())
                .map_err(se)?;
            call.next_try_at = Some(at);
        }
        Ok(())
    }

    fn drop_lease_txn(
        txn: &WriteTransaction,
        id: &Uuid,
    ) -> Result<Option<(u64, u64)>, BridgeError> {
        let mut leases = txn.open_table(LEASES).map_err(se)?;
        let old = leases
            .remove(id.as_bytes().as_slice())
            .map_err(se)?
            .and_then(|g| decode_lease(g.value()));
        if let Some((_, until)) = old {
            let mut exp = txn.open_table(LEASE_EXPIRY).map_err(se)?;
            exp.remove(time_id_key(until, id).as_slice()).map_err(se)?;
        }
        Ok(old)
    }

    fn push_writeback_txn(txn: &WriteTransaction, wb: &Writeback) -> Result<(), BridgeError> {
        let seq = Self::next_counter(txn, "writeback_seq")?;
        let mut t = txn.open_table(WRITEBACK).map_err(se)?;
        t.insert(seq, enc(wb)?.as_slice()).map_err(se)?;
        Ok(())
    }

    /// Bookkeeping after the status may have become terminal: clear queue/lease, enqueue the
    /// document write-back. `was` is the status before this transaction.
    fn settle_txn(
        txn: &WriteTransaction,
        call: &mut ApiCall,
        was: CallStatus,
    ) -> Result<(), BridgeError> {
        if call.status.is_terminal() {
            Self::set_ready_txn(txn, call, None)?;
            Self::drop_lease_txn(txn, &call.id)?;
            if !was.is_terminal() {
                match call.status {
                    CallStatus::Completed => {
                        Self::push_writeback_txn(txn, &Writeback::for_call(call, DocStatus::Done))?
                    }
                    CallStatus::Failed => {
                        Self::push_writeback_txn(txn, &Writeback::for_call(call, DocStatus::Error))?
                    }
                    // A cancelled call's entry is gone or superseded: nothing to show.
                    _ => {}
                }
            }
        } else if was == CallStatus::Pending && call.status == CallStatus::Processing {
            Self::push_writeback_txn(txn, &Writeback::for_call(call, DocStatus::Processing))?;
        }
        Self::save_call_txn(txn, call)
    }

    /// T1: creates the call for (room, block, index, attempt) unless one exists.
    /// Returns the call and whether it was created now.
    pub fn create_call(&self, spec: NewCall, now: u64) -> Result<(ApiCall, bool), BridgeError> {
        self.create_calls(vec![spec], now)?
            .pop()
            .ok_or_else(|| BridgeError::Store("create_calls returned nothing".into()))
    }

    /// T1 for several triggers in one transaction (one fsync).
    pub fn create_calls(
        &self,
        specs: Vec<NewCall>,
        now: u64,
    ) -> Result<Vec<(ApiCall, bool)>, BridgeError> {
        self.write(|txn| {
            let mut out = Vec::with_capacity(specs.len());
            for spec in specs {
                let key = trigger_key(&spec.room, &spec.block_id, &spec.index_name, spec.attempt);
                let existing = {
                    let t = txn.open_table(TRIGGERS).map_err(se)?;
                    let r = t.get(key.as_slice()).map_err(se)?;
                    r.and_then(|g| Uuid::from_slice(g.value()).ok())
                };
                if let Some(id) = existing
                    && let Some(call) = Self::load_call_txn(txn, &id)?
                {
                    out.push((call, false));
                    continue;
                }
                let id = Uuid::now_v7();
                let mut call = ApiCall::new(id, spec, now);
                {
                    let mut t = txn.open_table(BY_ROOM).map_err(se)?;
                    t.insert(by_room_key(&call).as_slice(), [].as_slice())
                        .map_err(se)?;
                }
                {
                    let mut t = txn.open_table(TRIGGERS).map_err(se)?;
                    t.insert(key.as_slice(), id.as_bytes().as_slice())
                        .map_err(se)?;
                }
                Self::append_txn(txn, &mut call, vec![EventKind::Created], now)?;
                Self::set_ready_txn(txn, &mut call, Some(now))?;
                Self::save_call_txn(txn, &call)?;
                out.push((call, true));
            }
            Ok(out)
        })
    }

    /// The call serving (room, block, index, attempt), if any.
    pub fn find_by_trigger(
        &self,
        room: &str,
        block: &str,
        index: &str,
        attempt: u32,
    ) -> Result<Option<ApiCall>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(TRIGGERS).map_err(se)?;
        let Some(id) = t
            .get(trigger_key(room, block, index, attempt).as_slice())
            .map_err(se)?
            .and_then(|g| Uuid::from_slice(g.value()).ok())
        else {
            return Ok(None);
        };
        let calls = txn.open_table(CALLS).map_err(se)?;
        let r = calls.get(id.as_bytes().as_slice()).map_err(se)?;
        r.map(|g| dec(g.value())).transpose()
    }

    /// One call.
    pub fn get(&self, id: &Uuid) -> Result<Option<ApiCall>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(CALLS).map_err(se)?;
        let r = t.get(id.as_bytes().as_slice()).map_err(se)?;
        r.map(|g| dec(g.value())).transpose()
    }

    /// A call's event log in order.
    pub fn events(&self, id: &Uuid) -> Result<Vec<StoredEvent>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(EVENTS).map_err(se)?;
        let lo = event_key(id, 0);
        let hi = event_key(id, u32::MAX);
        let mut out = Vec::new();
        for item in t.range(lo.as_slice()..=hi.as_slice()).map_err(se)? {
            let (k, v) = item.map_err(se)?;
            let seq = k
                .value()
                .get(16..20)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_be_bytes);
            out.push(StoredEvent {
                seq,
                event: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// Calls matching the filter, newest first.
    pub fn list(&self, filter: &CallFilter) -> Result<Vec<ApiCall>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(CALLS).map_err(se)?;
        let limit = filter.limit.unwrap_or(usize::MAX);
        let keep = |call: &ApiCall| {
            filter
                .block_id
                .as_deref()
                .is_none_or(|b| b == call.block_id)
                && filter.status.is_none_or(|s| s == call.status)
        };
        let mut out = Vec::new();
        if let Some(room) = filter.room.as_deref() {
            // Room (and block) queries use the index instead of scanning every call.
            let idx = txn.open_table(BY_ROOM).map_err(se)?;
            let lo = room_prefix(room, filter.block_id.as_deref());
            let mut hi = lo.clone();
            hi.extend_from_slice(&[0xff; 17]);
            let mut ids = Vec::new();
            for item in idx.range(lo.as_slice()..hi.as_slice()).map_err(se)? {
                let (k, _) = item.map_err(se)?;
                let k = k.value();
                if let Some(id) = k
                    .get(k.len().saturating_sub(16)..)
                    .and_then(|b| Uuid::from_slice(b).ok())
                {
                    ids.push(id);
                }
            }
            ids.sort_unstable_by(|a, b| b.cmp(a));
            for id in ids {
                let r = t.get(id.as_bytes().as_slice()).map_err(se)?;
                let Some(call) = r.map(|g| dec::<ApiCall>(g.value())).transpose()? else {
                    continue;
                };
                if call.room == room && keep(&call) {
                    out.push(call);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            return Ok(out);
        }
        // Keys are UUIDv7 = creation order; iterate backwards for newest first.
        for item in t.iter().map_err(se)?.rev() {
            let (_, v) = item.map_err(se)?;
            let call: ApiCall = dec(v.value())?;
            if keep(&call) {
                out.push(call);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Queue sizes: (ready, leased, pending write-backs).
    pub fn queue_sizes(&self) -> Result<(u64, u64, u64), BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let ready = txn.open_table(READY).map_err(se)?.len().map_err(se)?;
        let leased = txn.open_table(LEASES).map_err(se)?.len().map_err(se)?;
        let wb = txn.open_table(WRITEBACK).map_err(se)?.len().map_err(se)?;
        Ok((ready, leased, wb))
    }

    /// Earliest time something is due in the ready queue.
    pub fn next_due(&self) -> Result<Option<u64>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(READY).map_err(se)?;
        let first = t.first().map_err(se)?;
        Ok(first.and_then(|(k, _)| split_time_id(k.value()).map(|(t, _)| t)))
    }

    /// Earliest lease expiry.
    pub fn next_lease_expiry(&self) -> Result<Option<u64>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(LEASE_EXPIRY).map_err(se)?;
        let first = t.first().map_err(se)?;
        Ok(first.and_then(|(k, _)| split_time_id(k.value()).map(|(t, _)| t)))
    }

    /// T2: leases due calls. `slots` gives free worker slots per integration (missing = 1, so a
    /// call of an unknown integration is still claimed and failed by the worker).
    pub fn claim_due(
        &self,
        now: u64,
        slots: &HashMap<String, usize>,
        max: usize,
    ) -> Result<Vec<Claim>, BridgeError> {
        self.write(|txn| {
            let due: Vec<Uuid> = {
                let t = txn.open_table(READY).map_err(se)?;
                let hi = time_id_key(now, &Uuid::max());
                let mut v = Vec::new();
                for item in t.range(..=hi.as_slice()).map_err(se)?.take(1024) {
                    let (k, _) = item.map_err(se)?;
                    if let Some((_, id)) = split_time_id(k.value()) {
                        v.push(id);
                    }
                }
                v
            };
            let mut left: HashMap<String, usize> = slots.clone();
            let mut claims = Vec::new();
            for id in due {
                if claims.len() >= max {
                    break;
                }
                let Some(mut call) = Self::load_call_txn(txn, &id)? else {
                    continue;
                };
                let free = left.entry(call.integration.clone()).or_insert(1);
                if *free == 0 {
                    continue;
                }
                *free -= 1;
                let was = call.status;
                let phase = if call.external_id.is_some() {
                    Phase::Poll
                } else {
                    Phase::Submit
                };
                if phase == Phase::Submit {
                    call.tries += 1;
                }
                let token = Self::next_counter(txn, "fence")?;
                let until = now + self.policy.lease_ms;
                Self::set_ready_txn(txn, &mut call, None)?;
                Self::drop_lease_txn(txn, &id)?;
                {
                    let mut leases = txn.open_table(LEASES).map_err(se)?;
                    leases
                        .insert(
                            id.as_bytes().as_slice(),
                            encode_lease(token, until).as_slice(),
                        )
                        .map_err(se)?;
                    let mut exp = txn.open_table(LEASE_EXPIRY).map_err(se)?;
                    exp.insert(time_id_key(until, &id).as_slice(), [].as_slice())
                        .map_err(se)?;
                }
                if phase == Phase::Submit {
                    // Polls are not logged: a long job polled every few seconds would otherwise
                    // grow its log (and the fold over it) without bound.
                    let r#try = call.tries;
                    Self::append_txn(
                        txn,
                        &mut call,
                        vec![EventKind::Claimed { r#try, token }],
                        now,
                    )?;
                }
                Self::settle_txn(txn, &mut call, was)?;
                claims.push(Claim { call, token, phase });
            }
            Ok(claims)
        })
    }

    /// T3: records a worker's outcome. `token` is the lease's fencing token; `None` means an
    /// unleased source (manual refresh). A stale token's success is still accepted — the
    /// external API did the work under the same idempotency key — anything else is dropped.
    pub fn complete(
        &self,
        id: &Uuid,
        token: Option<u64>,
        outcome: Outcome,
        now: u64,
        rng: &mut impl Rng,
    ) -> Result<Completion, BridgeError> {
        self.write(|txn| self.complete_txn(txn, id, token, outcome, now, rng))
    }

    /// `complete` for several outcomes in one transaction (one fsync).
    pub fn complete_many(
        &self,
        items: Vec<(Uuid, Option<u64>, Outcome)>,
        now: u64,
        rng: &mut impl Rng,
    ) -> Result<Vec<Completion>, BridgeError> {
        self.write(|txn| {
            items
                .into_iter()
                .map(|(id, token, outcome)| self.complete_txn(txn, &id, token, outcome, now, rng))
                .collect()
        })
    }

    fn complete_txn(
        &self,
        txn: &WriteTransaction,
        id: &Uuid,
        token: Option<u64>,
        outcome: Outcome,
        now: u64,
        rng: &mut impl Rng,
    ) -> Result<Completion, BridgeError> {
        let Some(mut call) = Self::load_call_txn(txn, id)? else {
            return Ok(Completion::Ignored);
        };
        let was = call.status;
        if was.is_terminal() {
            Self::append_txn(
                txn,
                &mut call,
                vec![EventKind::LateResultIgnored {
                    detail: describe(&outcome),
                }],
                now,
            )?;
            Self::save_call_txn(txn, &call)?;
            return Ok(Completion::Ignored);
        }
        if let Some(token) = token {
            let lease = {
                let t = txn.open_table(LEASES).map_err(se)?;
                let r = t.get(id.as_bytes().as_slice()).map_err(se)?;
                r.and_then(|g| decode_lease(g.value()))
            };
            let current = lease.is_some_and(|(tok, _)| tok == token);
            if !current {
                if !matches!(outcome, Outcome::Completed { .. }) {
                    Self::append_txn(
                        txn,
                        &mut call,
                        vec![EventKind::LateResultIgnored {
                            detail: format!("stale lease {token}: {}", describe(&outcome)),
                        }],
                        now,
                    )?;
                    Self::save_call_txn(txn, &call)?;
                    return Ok(Completion::Fenced);
                }
            } else {
                Self::drop_lease_txn(txn, id)?;
            }
        }
        let mut kinds = Vec::new();
        let mut ready_at = None;
        let mut link = None;
        match outcome {
            Outcome::Completed { external_id, data } => {
                if call.external_id.is_none() {
                    // Sync APIs get a generated id so the contract's `initialized` always exists.
                    let ext = external_id.unwrap_or_else(|| Uuid::new_v4().to_string());
                    kinds.push(EventKind::Initialized { external_id: ext });
                }
                kinds.push(EventKind::Processing);
                kinds.push(EventKind::Completed { data });
            }
            Outcome::Started {
                external_id,
                poll_after_ms,
            } => {
                if call.external_id.is_none() {
                    kinds.push(EventKind::Initialized {
                        external_id: external_id.clone(),
                    });
                    link = Some(external_id);
                }
                kinds.push(EventKind::Processing);
                ready_at = poll_after_ms.map(|d| now + d);
                call.started_at.get_or_insert(now);
            }
            Outcome::Pending { poll_after_ms } => {
                ready_at = Some(now + poll_after_ms);
            }
            Outcome::Failed {
                error,
                retryable,
                retry_after_ms,
            } => {
                let poll = call.external_id.is_some();
                if poll && retryable {
                    // A failed status poll counts as a try too, so a dead status URL ends.
                    call.tries += 1;
                }
                if retryable && call.tries < self.policy.max_attempts {
                    let delay = next_delay_ms(
                        &self.policy,
                        call.tries.max(1),
                        retry_after_ms.map(std::time::Duration::from_millis),
                        rng,
                    );
                    kinds.push(EventKind::Failed {
                        error,
                        retryable: true,
                    });
                    kinds.push(EventKind::RetryScheduled {
                        next_at: now + delay,
                    });
                    ready_at = Some(now + delay);
                } else {
                    let error = if retryable {
                        format!("{error} (gave up after {} tries)", call.tries)
                    } else {
                        error
                    };
                    kinds.push(EventKind::Failed {
                        error,
                        retryable: false,
                    });
                }
            }
        }
        Self::append_txn(txn, &mut call, kinds, now)?;
        if !call.status.is_terminal() {
            // An unleased refresh must not leave a second queue entry behind.
            Self::set_ready_txn(txn, &mut call, ready_at)?;
        }
        Self::settle_txn(txn, &mut call, was)?;
        if let Some(ext) = link {
            Self::link_external_txn(txn, &mut call, &ext, now)?;
        }
        Ok(Completion::Recorded(Box::new(call)))
    }

    /// Indexes `external_id` → call and applies webhooks parked for it.
    fn link_external_txn(
        txn: &WriteTransaction,
        call: &mut ApiCall,
        ext: &str,
        now: u64,
    ) -> Result<(), BridgeError> {
        let key = ext_key(&call.integration, ext);
        {
            let mut t = txn.open_table(EXTERNAL).map_err(se)?;
            let clash = t
                .get(key.as_slice())
                .map_err(se)?
                .and_then(|g| Uuid::from_slice(g.value()).ok());
            if clash.is_some_and(|other| other != call.id) {
                tracing::warn!(call_id = %call.id, external_id = ext, "external id already linked to another call; keeping the first");
                return Ok(());
            }
            t.insert(key.as_slice(), call.id.as_bytes().as_slice())
                .map_err(se)?;
        }
        let parked: Vec<(Vec<u8>, ParkedEvent)> = {
            let t = txn.open_table(PARKED).map_err(se)?;
            let mut hi = key.clone();
            hi.extend_from_slice(&[0xff; 9]);
            let mut v = Vec::new();
            for item in t.range(key.as_slice()..hi.as_slice()).map_err(se)? {
                let (k, val) = item.map_err(se)?;
                v.push((k.value().to_vec(), dec(val.value())?));
            }
            v
        };
        if parked.is_empty() {
            return Ok(());
        }
        {
            let mut t = txn.open_table(PARKED).map_err(se)?;
            for (k, _) in &parked {
                t.remove(k.as_slice()).map_err(se)?;
            }
        }
        let was = call.status;
        let kinds: Vec<EventKind> = parked.into_iter().map(|(_, p)| p.kind).collect();
        tracing::info!(call_id = %call.id, external_id = ext, n = kinds.len(), "applying parked webhooks");
        Self::append_txn(txn, call, kinds, now)?;
        Self::settle_txn(txn, call, was)
    }

    /// T4: applies a verified webhook (deduplicated by `webhook_id`).
    pub fn apply_webhook(
        &self,
        integration: &str,
        webhook_id: &str,
        external_id: &str,
        kind: EventKind,
        now: u64,
    ) -> Result<WebhookApply, BridgeError> {
        self.write(|txn| {
            let mut seen_key = Vec::new();
            lp(&mut seen_key, integration);
            seen_key.extend_from_slice(webhook_id.as_bytes());
            {
                let mut seen = txn.open_table(WEBHOOK_SEEN).map_err(se)?;
                if seen.get(seen_key.as_slice()).map_err(se)?.is_some() {
                    return Ok(WebhookApply::Duplicate);
                }
                seen.insert(seen_key.as_slice(), now).map_err(se)?;
            }
            let key = ext_key(integration, external_id);
            let call_id = {
                let t = txn.open_table(EXTERNAL).map_err(se)?;
                let r = t.get(key.as_slice()).map_err(se)?;
                r.and_then(|g| Uuid::from_slice(g.value()).ok())
            };
            let Some(mut call) = call_id
                .map(|id| Self::load_call_txn(txn, &id))
                .transpose()?
                .flatten()
            else {
                let seq = Self::next_counter(txn, "parked_seq")?;
                let mut k = key;
                k.push(0);
                k.extend_from_slice(&seq.to_be_bytes());
                let mut t = txn.open_table(PARKED).map_err(se)?;
                t.insert(
                    k.as_slice(),
                    enc(&ParkedEvent { kind, at: now })?.as_slice(),
                )
                .map_err(se)?;
                return Ok(WebhookApply::Parked);
            };
            let was = call.status;
            let kinds = if was.is_terminal() {
                vec![EventKind::LateResultIgnored {
                    detail: format!("webhook {webhook_id}: {}", kind.type_name()),
                }]
            } else {
                vec![kind]
            };
            Self::append_txn(txn, &mut call, kinds, now)?;
            Self::settle_txn(txn, &mut call, was)?;
            Ok(WebhookApply::Applied(Box::new(call)))
        })
    }

    /// Cancels a non-terminal call (entry/block removed, attempt superseded). Returns whether
    /// anything changed.
    pub fn cancel(&self, id: &Uuid, reason: &str, now: u64) -> Result<bool, BridgeError> {
        self.write(|txn| {
            let Some(mut call) = Self::load_call_txn(txn, id)? else {
                return Ok(false);
            };
            let was = call.status;
            if was.is_terminal() {
                return Ok(false);
            }
            Self::append_txn(
                txn,
                &mut call,
                vec![EventKind::Cancelled {
                    reason: reason.to_owned(),
                }],
                now,
            )?;
            Self::settle_txn(txn, &mut call, was)?;
            Ok(true)
        })
    }

    /// Rescues calls whose lease expired before `now` (or every leased call when `all`, used
    /// at start-up: leases of a previous process are dead by definition since redb allows one
    /// process per file). They are retried (same idempotency key) or failed when out of tries.
    pub fn rescue_expired(
        &self,
        now: u64,
        all: bool,
        rng: &mut impl Rng,
    ) -> Result<Vec<Uuid>, BridgeError> {
        self.write(|txn| {
            let expired: Vec<Uuid> = {
                let t = txn.open_table(LEASE_EXPIRY).map_err(se)?;
                let hi = time_id_key(if all { u64::MAX } else { now }, &Uuid::max());
                let mut v = Vec::new();
                for item in t.range(..=hi.as_slice()).map_err(se)?.take(1024) {
                    let (k, _) = item.map_err(se)?;
                    if let Some((_, id)) = split_time_id(k.value()) {
                        v.push(id);
                    }
                }
                v
            };
            for id in &expired {
                let lease = Self::drop_lease_txn(txn, id)?;
                let Some(mut call) = Self::load_call_txn(txn, id)? else {
                    continue;
                };
                let was = call.status;
                if was.is_terminal() {
                    continue;
                }
                let token = lease.map_or(0, |(t, _)| t);
                let mut kinds = vec![EventKind::LeaseExpired { token }];
                let ready_at;
                if call.tries >= self.policy.max_attempts && call.external_id.is_none() {
                    kinds.push(EventKind::Failed {
                        error: format!("no result within the lease (gave up after {} tries)", call.tries),
                        retryable: false,
                    });
                    ready_at = None;
                } else if all {
                    ready_at = Some(now);
                } else {
                    ready_at = Some(now + next_delay_ms(&self.policy, call.tries.max(1), None, rng));
                }
                Self::append_txn(txn, &mut call, kinds, now)?;
                if !call.status.is_terminal() {
                    Self::set_ready_txn(txn, &mut call, ready_at)?;
                }
                Self::settle_txn(txn, &mut call, was)?;
                tracing::warn!(call_id = %id, room = %call.room, token, "lease expired; call rescued");
            }
            Ok(expired)
        })
    }

    /// Makes a call due now (manual refresh of a polled call). Returns false if it is terminal.
    pub fn make_due(&self, id: &Uuid, now: u64) -> Result<bool, BridgeError> {
        self.write(|txn| {
            let Some(mut call) = Self::load_call_txn(txn, id)? else {
                return Ok(false);
            };
            if call.status.is_terminal() {
                return Ok(false);
            }
            let leased = {
                let t = txn.open_table(LEASES).map_err(se)?;
                t.get(id.as_bytes().as_slice()).map_err(se)?.is_some()
            };
            if !leased {
                Self::set_ready_txn(txn, &mut call, Some(now))?;
                Self::save_call_txn(txn, &call)?;
            }
            Ok(true)
        })
    }

    /// Pending write-backs in order.
    pub fn writebacks(&self, max: usize) -> Result<Vec<(u64, Writeback)>, BridgeError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(WRITEBACK).map_err(se)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(se)?.take(max) {
            let (k, v) = item.map_err(se)?;
            out.push((k.value(), dec(v.value())?));
        }
        Ok(out)
    }

    /// Queues a write-back that is not tied to an outcome (e.g. a re-index request).
    pub fn push_writeback(&self, wb: &Writeback) -> Result<(), BridgeError> {
        self.write(|txn| Self::push_writeback_txn(txn, wb))
    }

    /// The room was deleted: deletes every queued write-back of `room` (nothing may be written
    /// into it) and its trigger rows (content written to the room later is a new room, whose
    /// entries must get calls again even with the same block ids). Returns the dropped
    /// write-backs. Call after cancelling the room's calls.
    pub fn forget_room(&self, room: &str) -> Result<Vec<Writeback>, BridgeError> {
        self.write(|txn| {
            {
                let mut prefix = Vec::new();
                lp(&mut prefix, room);
                let mut t = txn.open_table(TRIGGERS).map_err(se)?;
                let mut doomed = Vec::new();
                for item in t.range(prefix.as_slice()..).map_err(se)? {
                    let (k, _) = item.map_err(se)?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    doomed.push(k.value().to_vec());
                }
                for k in &doomed {
                    t.remove(k.as_slice()).map_err(se)?;
                }
            }
            let mut t = txn.open_table(WRITEBACK).map_err(se)?;
            let mut doomed = Vec::new();
            for item in t.iter().map_err(se)? {
                let (k, v) = item.map_err(se)?;
                let wb: Writeback = dec(v.value())?;
                if wb.room == room {
                    doomed.push((k.value(), wb));
                }
            }
            for (s, _) in &doomed {
                t.remove(*s).map_err(se)?;
            }
            Ok(doomed.into_iter().map(|(_, wb)| wb).collect())
        })
    }

    /// Records on a call that its outcome could not be written into the document (kept in its
    /// event log, visible in `GET /api/calls/{id}`). Returns false for an unknown call.
    pub fn note_writeback_failed(
        &self,
        id: &Uuid,
        error: &str,
        now: u64,
    ) -> Result<bool, BridgeError> {
        self.write(|txn| {
            let Some(mut call) = Self::load_call_txn(txn, id)? else {
                return Ok(false);
            };
            Self::append_txn(
                txn,
                &mut call,
                vec![EventKind::WritebackFailed {
                    error: error.to_owned(),
                }],
                now,
            )?;
            Self::save_call_txn(txn, &call)?;
            Ok(true)
        })
    }

    /// Deletes write-backs the host confirmed as durable.
    pub fn ack_writebacks(&self, seqs: &[u64]) -> Result<(), BridgeError> {
        if seqs.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut t = txn.open_table(WRITEBACK).map_err(se)?;
            for s in seqs {
                t.remove(*s).map_err(se)?;
            }
            Ok(())
        })
    }

    /// Deletes finished calls (and their events, trigger and external-id rows) past retention,
    /// and webhook ids past theirs. Calls with a queued write-back are kept.
    pub fn prune(&self, now: u64, retention: &RetentionConfig) -> Result<usize, BridgeError> {
        let pending_wb: std::collections::HashSet<String> = self
            .writebacks(usize::MAX)?
            .into_iter()
            .filter_map(|(_, w)| w.api_call_id)
            .collect();
        self.write(|txn| {
            let victims: Vec<ApiCall> = {
                let t = txn.open_table(CALLS).map_err(se)?;
                let mut v = Vec::new();
                for item in t.iter().map_err(se)? {
                    let (_, val) = item.map_err(se)?;
                    let call: ApiCall = dec(val.value())?;
                    let keep_for = match call.status {
                        CallStatus::Completed | CallStatus::Cancelled => retention.completed_ms,
                        CallStatus::Failed => retention.failed_ms,
                        _ => continue,
                    };
                    let done_at = call.completed_at.unwrap_or(call.created_at);
                    if now.saturating_sub(done_at) > keep_for
                        && !pending_wb.contains(&call.id.to_string())
                    {
                        v.push(call);
                    }
                }
                v
            };
            for call in &victims {
                let mut calls = txn.open_table(CALLS).map_err(se)?;
                calls.remove(call.id.as_bytes().as_slice()).map_err(se)?;
                let mut by_room = txn.open_table(BY_ROOM).map_err(se)?;
                by_room.remove(by_room_key(call).as_slice()).map_err(se)?;
                let mut events = txn.open_table(EVENTS).map_err(se)?;
                let lo = event_key(&call.id, 0);
                let hi = event_key(&call.id, u32::MAX);
                events
                    .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
                    .map_err(se)?;
                let mut triggers = txn.open_table(TRIGGERS).map_err(se)?;
                let tk = trigger_key(&call.room, &call.block_id, &call.index_name, call.attempt);
                // After a room deletion the key may belong to a newer call of the re-created
                // room: only remove it while it still points at this call.
                let ours = triggers
                    .get(tk.as_slice())
                    .map_err(se)?
                    .is_some_and(|v| v.value() == call.id.as_bytes().as_slice());
                if ours {
                    triggers.remove(tk.as_slice()).map_err(se)?;
                }
                if let Some(ext) = &call.external_id {
                    let mut t = txn.open_table(EXTERNAL).map_err(se)?;
                    t.remove(ext_key(&call.integration, ext).as_slice())
                        .map_err(se)?;
                }
            }
            let mut seen = txn.open_table(WEBHOOK_SEEN).map_err(se)?;
            seen.retain(|_, at| now.saturating_sub(at) <= retention.webhook_ids_ms)
                .map_err(se)?;
            let mut parked = txn.open_table(PARKED).map_err(se)?;
            parked
                .retain(|_, v| {
                    dec::<ParkedEvent>(v)
                        .is_ok_and(|p| now.saturating_sub(p.at) <= retention.webhook_ids_ms)
                })
                .map_err(se)?;
            Ok(victims.len())
        })
    }
}

fn db_err<E: Into<redb::Error>>(e: E) -> BridgeError {
    se(e)
}

fn encode_lease(token: u64, until: u64) -> Vec<u8> {
    let mut v = vec![VALUE_V1];
    v.extend_from_slice(&token.to_be_bytes());
    v.extend_from_slice(&until.to_be_bytes());
    v
}

fn decode_lease(b: &[u8]) -> Option<(u64, u64)> {
    if b.first() != Some(&VALUE_V1) {
        return None;
    }
    let token = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let until = u64::from_be_bytes(b.get(9..17)?.try_into().ok()?);
    Some((token, until))
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Completed { .. } => "completed".into(),
        Outcome::Started { external_id, .. } => format!("started {external_id}"),
        Outcome::Pending { .. } => "pending".into(),
        Outcome::Failed { error, .. } => format!("failed: {error}"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParkedEvent {
    kind: EventKind,
    at: u64,
}
