//! The running bridge: start-up, the document actor (mirrors, rules, write-back), the outbox
//! dispatcher and its workers, and the pruner.
//!
//! Rules are level-triggered: whatever the document says *now* (an entry requesting attempt N
//! with no APICall, a `done` entry whose content changed, a call whose entry is gone) is turned
//! into outbox state; nothing needed for correctness is remembered only in memory. The HTTP
//! routes live in `api.rs`; storage in `outbox.rs`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;
use weaver_doc::{
    BRIDGE_ORIGIN, Change, ChangeSet, ChangeSubscription, Status, StatusRecord, Workspace,
};

use crate::config::BridgeConfig;
use crate::host::{DocumentHost, HostEvent};
use crate::integration::Registry;
use crate::model::{ApiCall, NewCall};
use crate::outbox::{
    CallFilter, Claim, Completion, DocStatus, OutboxStore, Outcome, Phase, RedbOutbox, Writeback,
};
use crate::{BridgeError, now_ms};

/// Entry point.
#[derive(Debug)]
pub struct Bridge;

/// A running bridge. Cheap to clone.
#[derive(Clone)]
pub struct BridgeHandle {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeHandle").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: BridgeConfig,
    pub(crate) outbox: Arc<dyn OutboxStore>,
    pub(crate) registry: Registry,
    host: Arc<dyn DocumentHost>,
    dispatch_wake: Notify,
    doc_tx: mpsc::UnboundedSender<DocCmd>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    done_tx: mpsc::UnboundedSender<Done>,
    slots: HashMap<String, Arc<Semaphore>>,
}

/// A worker's outcome on its way to the completer (which commits outcomes in batches).
struct Done {
    id: Uuid,
    token: u64,
    outcome: Outcome,
    reply: oneshot::Sender<Result<Completion, BridgeError>>,
}

pub(crate) enum DocCmd {
    /// New rows in `bridge_writeback`.
    Writebacks,
    /// Manual retry: request attempt N+1 for the entry of this call.
    Retry {
        call_id: Uuid,
        reply: oneshot::Sender<Result<ApiCall, RetryError>>,
    },
}

/// Why a manual retry was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError {
    #[error("no such call")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

/// Runs a blocking outbox operation off the async runtime.
pub(crate) async fn blocking<R, E>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, BridgeError>
where
    R: Send + 'static,
    E: Send + 'static,
    BridgeError: From<E>,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

fn content_hash(content: &str) -> String {
    let d = Sha256::digest(content.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl Bridge {
    /// Starts the bridge with the integrations described by `cfg` (secrets from the process
    /// environment). Must be called inside a tokio runtime.
    pub fn start(
        cfg: BridgeConfig,
        db: Arc<redb::Database>,
        host: Arc<dyn DocumentHost>,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle, BridgeError> {
        let registry = Registry::from_config(&cfg)?;
        Self::start_with_registry(cfg, registry, db, host, shutdown)
    }

    /// Like `start` with a prepared integration registry (custom integrations, tests).
    pub fn start_with_registry(
        cfg: BridgeConfig,
        registry: Registry,
        db: Arc<redb::Database>,
        host: Arc<dyn DocumentHost>,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle, BridgeError> {
        cfg.validate()?;
        let outbox: Arc<dyn OutboxStore> = Arc::new(RedbOutbox::open(db, cfg.retry.clone())?);
        let slots = registry
            .iter()
            .map(|i| {
                (
                    i.name().to_owned(),
                    Arc::new(Semaphore::new(i.concurrency().max(1))),
                )
            })
            .collect();
        let (doc_tx, doc_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cfg,
            outbox,
            registry,
            host,
            dispatch_wake: Notify::new(),
            doc_tx,
            shutdown,
            tracker: TaskTracker::new(),
            done_tx,
            slots,
        });
        // Subscribe before any state is read so no committed update falls in between.
        let stream = inner.host.subscribe();
        let actor = DocActor {
            inner: inner.clone(),
            rooms: HashMap::new(),
            unmirrored: HashSet::new(),
            dirty: HashMap::new(),
            wb_failures: HashMap::new(),
        };
        inner.tracker.spawn(actor.run(stream, doc_rx));
        inner.tracker.spawn(dispatcher(inner.clone()));
        inner.tracker.spawn(completer(inner.clone(), done_rx));
        inner.tracker.spawn(pruner(inner.clone()));
        tracing::info!(integrations = inner.slots.len(), "bridge started");
        Ok(BridgeHandle { inner })
    }
}

impl BridgeHandle {
    /// The outbox (read access for tools and tests).
    pub fn outbox(&self) -> &Arc<dyn OutboxStore> {
        &self.inner.outbox
    }

    /// Waits until every bridge task stopped (after the shutdown token was cancelled).
    pub async fn join(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Asks the document actor for a manual retry (see `POST /api/calls/{id}/retry`).
    pub async fn retry(&self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .doc_tx
            .send(DocCmd::Retry { call_id, reply })
            .map_err(|_| RetryError::Internal("bridge is shutting down".into()))?;
        rx.await
            .map_err(|_| RetryError::Internal("bridge is shutting down".into()))?
    }

    /// Polls the external system for a started call now and records the answer.
    pub async fn refresh(&self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let ob = self.inner.outbox.clone();
        let call = blocking(move || ob.get(&call_id))
            .await
            .map_err(|e| RetryError::Internal(e.to_string()))?
            .ok_or(RetryError::NotFound)?;
        if call.status.is_terminal() {
            return Ok(call);
        }
        let Some(integ) = self.inner.registry.get(&call.integration).cloned() else {
            return Err(RetryError::Conflict(format!(
                "integration {:?} is not configured",
                call.integration
            )));
        };
        if call.external_id.is_none() || !integ.can_poll() {
            return Err(RetryError::Conflict(
                "this call cannot be polled (not started, or no status_url)".into(),
            ));
        }
        let outcome = integ.poll(&call).await;
        let ob = self.inner.outbox.clone();
        let r = blocking(move || ob.complete(&call_id, None, outcome, now_ms(), &mut rand::rng()))
            .await
            .map_err(|e| RetryError::Internal(e.to_string()))?;
        self.inner.notify_writebacks();
        match r {
            Completion::Recorded(c) => Ok(*c),
            _ => {
                let ob = self.inner.outbox.clone();
                blocking(move || ob.get(&call_id))
                    .await
                    .map_err(|e| RetryError::Internal(e.to_string()))?
                    .ok_or(RetryError::NotFound)
            }
        }
    }

    pub(crate) fn notify_writebacks(&self) {
        self.inner.notify_writebacks();
    }
}

impl Inner {
    fn notify_writebacks(&self) {
        let _ = self.doc_tx.send(DocCmd::Writebacks);
    }
}

// ---------------------------------------------------------------------------------------------
// Document actor: owns the per-room mirrors; applies rules and write-backs.

struct Mirror {
    ws: Workspace,
    changes: Arc<Mutex<Vec<ChangeSet>>>,
    _sub: ChangeSubscription,
    /// Last time an update or a write-back touched the room (idle mirrors are dropped).
    used: Instant,
    /// The host unloaded the room since the mirror was last used: drop the mirror as soon as
    /// no re-index is pending, instead of after `MIRROR_IDLE`.
    host_unloaded: bool,
}

/// A mirror untouched this long is dropped; the next update reloads (and re-sweeps) the room.
const MIRROR_IDLE: Duration = Duration::from_secs(600);

/// Whether v1 update bytes (an update, or a room's whole state) may put anything under the
/// `blocks` root, the only part of a document the rules read.
///
/// Exact in the direction that matters: an item can only land under a root type if it names
/// the root (an item with neither left nor right origin is encoded with its parent, and a root
/// parent is encoded by its name, in full) or if one of its origins is already under that root.
/// So a room whose state holds no `blocks` bytes has nothing under `blocks`, and keeps nothing
/// there after any update without them. Direct children of a root are never collected into
/// `GC` structs (only children of a collected type are), so a room that ever had a block keeps
/// the marker in its state for good. Text that happens to contain the word only costs a mirror.
fn may_touch_blocks(update: &[u8]) -> bool {
    let marker = weaver_doc::BLOCKS_ROOT.as_bytes();
    update.windows(marker.len()).any(|w| w == marker)
}

struct DocActor {
    inner: Arc<Inner>,
    /// Mirrors of the rooms with bridge content that the bridge is following now.
    rooms: HashMap<String, Mirror>,
    /// Rooms with bridge content whose mirror was dropped (the host unloaded the room, it sat
    /// idle, or a rebuild failed): their next update reloads and re-sweeps them. Every other
    /// room without a mirror is known to have nothing under `blocks` (swept at start-up, or
    /// every committed update of it seen without the marker), so its updates are skipped
    /// unless they carry the marker (`may_touch_blocks`).
    unmirrored: HashSet<Box<str>>,
    /// (room, block) → (first unindexed edit, last edit): the re-index debounce.
    dirty: HashMap<(String, String), (Instant, Instant)>,
    /// room → (consecutive refused write-backs, not before): the write-back backoff.
    wb_failures: HashMap<String, (u32, Instant)>,
}

/// Retry delay after a local (outbox) error while processing write-backs.
const WRITEBACK_RETRY: Duration = Duration::from_secs(1);
// A write-back the host refuses is retried with the delivery policy ([retry]): the delay
// doubles from `initial_interval_ms` up to `max_interval_ms` (no jitter: one actor, no herd),
// and after `max_attempts` consecutive refusals the room's queued write-backs are given up: a
// `writeback_failed` event is kept on each call and the rows are deleted, so a room the host
// keeps refusing does not cost a retry every second forever.
fn writeback_backoff(policy: &crate::config::RetryPolicy, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let ms = policy
        .initial_interval_ms
        .saturating_mul(1u64 << exp)
        .min(policy.max_interval_ms);
    Duration::from_millis(ms)
}

impl DocActor {
    async fn run(
        mut self,
        mut stream: Box<dyn crate::host::UpdateStream>,
        mut rx: mpsc::UnboundedReceiver<DocCmd>,
    ) {
        let shutdown = self.inner.shutdown.clone();
        match self.inner.host.stored_rooms().await {
            Ok(rooms) => {
                tracing::info!(rooms = rooms.len(), "bridge start-up sweep");
                for room in rooms {
                    self.sweep_stored_room(&room, "start-up sweep of room failed")
                        .await;
                }
            }
            Err(e) => tracing::error!(error = %e, "bridge cannot list stored rooms"),
        }
        let mut wb_retry: Option<Instant> = Some(Instant::now());
        loop {
            let deadline = self.next_deadline(wb_retry);
            tokio::select! {
                () = shutdown.cancelled() => break,
                ev = stream.next() => {
                    // Absorb what else is already queued so rules run once per burst, with all
                    // missing calls created in one transaction.
                    let mut batch = vec![ev];
                    while batch.len() < 512 {
                        match tokio::time::timeout(Duration::ZERO, stream.next()).await {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                    let mut to_drain = BTreeSet::new();
                    let mut host_gone = false;
                    for ev in batch {
                        match ev {
                            Some(HostEvent::Update { room, update, origin }) => {
                                if self.apply_committed(&room, &update, &origin).await {
                                    to_drain.insert(room);
                                }
                            }
                            Some(HostEvent::RoomDeleted { room }) => {
                                to_drain.remove(&room);
                                self.room_deleted(&room).await;
                            }
                            Some(HostEvent::RoomUnloaded { room }) => {
                                let busy = to_drain.contains(&room)
                                    || self.dirty.keys().any(|(r, _)| *r == room);
                                if !busy {
                                    self.drop_mirror(&room);
                                } else if let Some(m) = self.rooms.get_mut(&room) {
                                    // Changes still to drain or a re-index pending: `evict_idle`
                                    // drops it once they are done.
                                    m.host_unloaded = true;
                                }
                            }
                            Some(HostEvent::Lagged) => {
                                // Updates were lost, possibly for rooms without a mirror too:
                                // re-sweep every stored room, as at start-up.
                                tracing::warn!("bridge lagged behind the host; rebuilding mirrors");
                                let mut rooms: BTreeSet<String> = self.rooms.keys().cloned().collect();
                                rooms.extend(self.unmirrored.drain().map(String::from));
                                match self.inner.host.stored_rooms().await {
                                    Ok(stored) => rooms.extend(stored),
                                    Err(e) => tracing::warn!(error = %e, "cannot list stored rooms after lag"),
                                }
                                self.rooms.clear();
                                to_drain.clear();
                                for room in rooms {
                                    self.sweep_stored_room(&room, "rebuilding mirror failed").await;
                                }
                            }
                            None => {
                                host_gone = true;
                                break;
                            }
                        }
                    }
                    for room in to_drain {
                        self.drain(&room).await;
                    }
                    if host_gone {
                        // Host gone: nothing more to observe; wait for shutdown.
                        shutdown.cancelled().await;
                        break;
                    }
                }
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    // Coalesce the queued notifications: one pass handles them all.
                    let mut cmds = vec![cmd];
                    while let Ok(c) = rx.try_recv() {
                        cmds.push(c);
                    }
                    for cmd in cmds {
                        match cmd {
                            DocCmd::Writebacks => wb_retry = Some(Instant::now()),
                            DocCmd::Retry { call_id, reply } => {
                                let r = self.retry(call_id).await;
                                let _ = reply.send(r);
                            }
                        }
                    }
                }
                () = sleep_until_opt(deadline) => {}
            }
            if wb_retry.is_some_and(|t| t <= Instant::now()) {
                wb_retry = match self.process_writebacks().await {
                    Ok(next) => next,
                    Err(e) => {
                        tracing::warn!(error = %e, "write-back failed; will retry");
                        Some(Instant::now() + WRITEBACK_RETRY)
                    }
                };
            }
            self.fire_debounce().await;
            self.evict_idle();
        }
        tracing::info!("bridge document actor stopped");
    }

    /// The host deleted `room`: cancel its unfinished calls, drop its mirror, debounce state and
    /// queued write-backs, so nothing of the old room is written into it again. Calls that
    /// finish later are terminal already (`late_result_ignored`), so they queue nothing.
    async fn room_deleted(&mut self, room: &str) {
        self.rooms.remove(room);
        self.unmirrored.remove(room);
        self.dirty.retain(|(r, _), _| r != room);
        self.wb_failures.remove(room);
        let calls = self.non_terminal_calls(room, None).await;
        for c in &calls {
            self.cancel(c, "room deleted").await;
        }
        let ob = self.inner.outbox.clone();
        let r = room.to_owned();
        let dropped = match blocking(move || ob.forget_room(&r)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(room, error = %e, "cannot drop write-backs of a deleted room");
                Vec::new()
            }
        };
        for wb in &dropped {
            self.note_writeback_failed(wb, "room deleted before the outcome was written")
                .await;
        }
        tracing::info!(
            room,
            cancelled = calls.len(),
            writebacks_dropped = dropped.len(),
            "room deleted: bridge dropped its calls, mirror and write-backs"
        );
    }

    async fn note_writeback_failed(&self, wb: &Writeback, error: &str) {
        let Some(id) = wb
            .api_call_id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
        else {
            return; // a re-index request, not tied to a call
        };
        let ob = self.inner.outbox.clone();
        let why = error.to_owned();
        if let Err(e) = blocking(move || ob.note_writeback_failed(&id, &why, now_ms())).await {
            tracing::error!(call_id = %id, error = %e, "cannot record the write-back failure");
        }
    }

    /// Drops mirrors of rooms nobody touched for `MIRROR_IDLE` (and with no pending re-index),
    /// bounding memory to the rooms in use; everything needed is in the store.
    fn evict_idle(&mut self) {
        let now = Instant::now();
        let dirty_rooms: BTreeSet<&str> = self.dirty.keys().map(|(r, _)| r.as_str()).collect();
        let idle: Vec<String> = self
            .rooms
            .iter()
            .filter(|(r, m)| {
                (m.host_unloaded || now.duration_since(m.used) > MIRROR_IDLE)
                    && !dirty_rooms.contains(r.as_str())
            })
            .map(|(r, _)| r.clone())
            .collect();
        for r in idle {
            tracing::debug!(room = %r, "bridge mirror unloaded (idle)");
            self.drop_mirror(&r);
        }
    }

    fn next_deadline(&self, wb_retry: Option<Instant>) -> Option<Instant> {
        let quiet = Duration::from_millis(self.inner.cfg.debounce.quiet_ms);
        let max_wait = Duration::from_millis(self.inner.cfg.debounce.max_wait_ms);
        let d = self
            .dirty
            .values()
            .map(|(first, last)| (*last + quiet).min(*first + max_wait))
            .min();
        let idle_check = Instant::now() + Duration::from_secs(60);
        [d, wb_retry]
            .into_iter()
            .flatten()
            .min()
            .map_or(Some(idle_check), |t| Some(t.min(idle_check)))
    }

    /// Drops a room's mirror; the room stays one with bridge content, so its next update
    /// reloads it.
    fn drop_mirror(&mut self, room: &str) {
        if self.rooms.remove(room).is_some() {
            self.unmirrored.insert(room.into());
        }
    }

    /// Loads and sweeps a room seen in the store (start-up, lag), keeping its mirror only if
    /// it has bridge content. A room that fails to load is treated as having some: its next
    /// update retries.
    async fn sweep_stored_room(&mut self, room: &str, what: &str) {
        match self.load_room(room).await {
            Ok(true) => {}
            Ok(false) => {
                self.rooms.remove(room);
                self.unmirrored.remove(room);
            }
            Err(e) => tracing::warn!(room = %room, error = %e, "{what}"),
        }
    }

    /// (Re)builds a room's mirror from the host's state and sweeps it. Returns whether the
    /// state has anything under `blocks` (`may_touch_blocks`); the mirror is kept either way,
    /// callers that only follow rooms with bridge content drop it. Until the mirror is in
    /// place the room counts as unmirrored, so a failed load is retried by its next update.
    async fn load_room(&mut self, room: &str) -> Result<bool, BridgeError> {
        self.rooms.remove(room);
        self.unmirrored.insert(room.into());
        let state = self
            .inner
            .host
            .room_state(room)
            .await
            .map_err(BridgeError::Host)?;
        // A fresh random client id per mirror (and so per process start): the bridge never
        // reuses an id whose history it may not fully hold.
        let ws = Workspace::new();
        ws.apply_update_v1(&state, "load")
            .map_err(BridgeError::Doc)?;
        let bridge_content = may_touch_blocks(&state);
        drop(state);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let sub = ws
            .observe(move |cs| {
                if let Ok(mut v) = sink.lock() {
                    v.push(cs.clone());
                }
            })
            .map_err(BridgeError::Doc)?;
        self.rooms.insert(
            room.to_owned(),
            Mirror {
                ws,
                changes,
                _sub: sub,
                used: Instant::now(),
                host_unloaded: false,
            },
        );
        self.unmirrored.remove(room);
        self.sweep_room(room).await?;
        Ok(bridge_content)
    }

    /// Applies a committed update to the room's mirror. Returns whether its changes still
    /// need `drain` (a room seen for the first time is loaded and swept instead).
    async fn apply_committed(&mut self, room: &str, update: &[u8], origin: &str) -> bool {
        let Some(m) = self.rooms.get_mut(room) else {
            // A room without bridge content stays without unless this update names `blocks`.
            if !self.unmirrored.contains(room) && !may_touch_blocks(update) {
                return false;
            }
            // The stored state already contains this update.
            match self.load_room(room).await {
                Ok(true) => {}
                Ok(false) => {
                    self.rooms.remove(room);
                    self.unmirrored.remove(room);
                }
                Err(e) => tracing::warn!(room, error = %e, "cannot load room for the bridge"),
            }
            return false;
        };
        m.used = Instant::now();
        m.host_unloaded = false;
        if let Err(e) = m.ws.apply_update_v1(update, origin) {
            tracing::warn!(room, error = %e, "mirror rejected a committed update; rebuilding from stored state");
            if let Err(e) = self.load_room(room).await {
                tracing::warn!(room, error = %e, "rebuilding mirror failed");
            }
            return false;
        }
        true
    }

    /// Handles the change sets the mirror collected.
    async fn drain(&mut self, room: &str) {
        let sets: Vec<ChangeSet> = match self.rooms.get(room) {
            Some(m) => m
                .changes
                .lock()
                .map(|mut v| std::mem::take(&mut *v))
                .unwrap_or_default(),
            None => return,
        };
        let mut touched = BTreeSet::new();
        for cs in sets {
            let own = cs.is_from(BRIDGE_ORIGIN);
            for ch in cs.changes {
                match ch {
                    Change::BlockRemoved { block_id } => {
                        self.cancel_calls(room, &block_id, None, "block removed")
                            .await
                    }
                    Change::EntryRemoved {
                        block_id,
                        index_name,
                    } => {
                        self.cancel_calls(
                            room,
                            &block_id,
                            Some(&index_name),
                            "index entry removed",
                        )
                        .await;
                    }
                    // The bridge's own transactions never edit content; the guard keeps
                    // rules from ever firing on the bridge's writes.
                    Change::ContentChanged { block_id } if !own => {
                        let now = Instant::now();
                        self.dirty
                            .entry((room.to_owned(), block_id))
                            .and_modify(|(_, last)| *last = now)
                            .or_insert((now, now));
                    }
                    Change::BlockAdded { block_id, .. }
                    | Change::EntryAdded { block_id, .. }
                    | Change::StatusChanged { block_id, .. } => {
                        touched.insert(block_id);
                    }
                    _ => {}
                }
            }
        }
        let touched: Vec<String> = touched.into_iter().collect();
        self.evaluate_blocks(room, &touched).await;
    }

    /// Rule "entry requests attempt N with no APICall → exactly one APICall".
    async fn evaluate_block(&mut self, room: &str, block_id: &str) {
        self.evaluate_blocks(room, std::slice::from_ref(&block_id.to_owned()))
            .await;
    }

    /// The same rule for several blocks, creating all missing calls in one transaction.
    async fn evaluate_blocks(&mut self, room: &str, block_ids: &[String]) {
        let Some(m) = self.rooms.get(room) else {
            return;
        };
        let mut specs = Vec::new();
        for block_id in block_ids {
            let Some(view) = m.ws.block(block_id).ok().flatten() else {
                continue;
            };
            for e in &view.indexing_list {
                if e.status != Status::NotStarted || e.attempt < 1 {
                    continue;
                }
                let Ok(attempt) = u32::try_from(e.attempt) else {
                    tracing::warn!(room, block = %block_id, index = %e.index_name, attempt = e.attempt, "attempt out of range; ignored");
                    continue;
                };
                specs.push(NewCall {
                    room: room.to_owned(),
                    block_id: block_id.clone(),
                    index_name: e.index_name.clone(),
                    attempt,
                    integration: self.inner.cfg.route(&e.index_name).to_owned(),
                    request_params: json!({
                        "content": view.content,
                        "collection_configs": e.collection_configs,
                        "content_hash": content_hash(&view.content),
                    }),
                });
            }
        }
        if specs.is_empty() {
            return;
        }
        let ob = self.inner.outbox.clone();
        // Read first: most evaluations find the calls already there, and a read costs no fsync.
        let created = blocking(move || {
            let mut missing = Vec::new();
            for spec in specs {
                if ob
                    .find_by_trigger(&spec.room, &spec.block_id, &spec.index_name, spec.attempt)?
                    .is_none()
                {
                    missing.push(spec);
                }
            }
            if missing.is_empty() {
                return Ok(Vec::new());
            }
            ob.create_calls(missing, now_ms())
        })
        .await;
        match created {
            Ok(v) => {
                let mut any = false;
                for (call, fresh) in v {
                    if !fresh {
                        continue;
                    }
                    any = true;
                    metrics::counter!(crate::metrics::CALLS_CREATED_TOTAL, "integration" => call.integration.clone()).increment(1);
                    tracing::info!(call_id = %call.id, room, block = %call.block_id, index = %call.index_name, attempt = call.attempt, integration = %call.integration, "APICall created");
                    if call.attempt > 1 {
                        self.cancel_older(room, &call.block_id, &call.index_name, call.attempt)
                            .await;
                    }
                }
                if any {
                    self.inner.dispatch_wake.notify_one();
                }
            }
            Err(err) => tracing::error!(room, error = %err, "cannot create APICalls"),
        }
    }

    async fn non_terminal_calls(&self, room: &str, block_id: Option<&str>) -> Vec<ApiCall> {
        let ob = self.inner.outbox.clone();
        let filter = CallFilter {
            room: Some(room.to_owned()),
            block_id: block_id.map(str::to_owned),
            status: None,
            limit: None,
        };
        match blocking(move || ob.list(&filter)).await {
            Ok(v) => v.into_iter().filter(|c| !c.status.is_terminal()).collect(),
            Err(e) => {
                tracing::error!(room, error = %e, "cannot list calls");
                Vec::new()
            }
        }
    }

    async fn cancel(&self, call: &ApiCall, reason: &str) {
        let ob = self.inner.outbox.clone();
        let id = call.id;
        let why = reason.to_owned();
        match blocking(move || ob.cancel(&id, &why, now_ms())).await {
            Ok(true) => {
                tracing::info!(call_id = %id, room = %call.room, reason, "APICall cancelled")
            }
            Ok(false) => {}
            Err(e) => tracing::error!(call_id = %id, error = %e, "cannot cancel call"),
        }
    }

    async fn cancel_calls(&self, room: &str, block_id: &str, index: Option<&str>, reason: &str) {
        for c in self.non_terminal_calls(room, Some(block_id)).await {
            if index.is_none_or(|i| i == c.index_name) {
                self.cancel(&c, reason).await;
            }
        }
    }

    async fn cancel_older(&self, room: &str, block_id: &str, index: &str, attempt: u32) {
        for c in self.non_terminal_calls(room, Some(block_id)).await {
            if c.index_name == index && c.attempt < attempt {
                self.cancel(&c, &format!("superseded by attempt {attempt}"))
                    .await;
            }
        }
    }

    /// Level-triggered reconciliation of one room (start-up, lag, first sight).
    async fn sweep_room(&mut self, room: &str) -> Result<(), BridgeError> {
        let Some(blocks) = self.rooms.get(room).map(|m| m.ws.blocks()) else {
            return Ok(());
        };
        let blocks = blocks.map_err(BridgeError::Doc)?;
        let ids: Vec<String> = blocks.iter().map(|b| b.id.clone()).collect();
        self.evaluate_blocks(room, &ids).await;
        for c in self.non_terminal_calls(room, None).await {
            let entry = blocks
                .iter()
                .find(|b| b.id == c.block_id)
                .and_then(|b| b.entry(&c.index_name));
            match entry {
                None => self.cancel(&c, "index entry no longer exists").await,
                Some(e) if e.attempt > u64::from(c.attempt) => {
                    self.cancel(&c, &format!("superseded by attempt {}", e.attempt))
                        .await;
                }
                Some(_) => {}
            }
        }
        // Done entries whose content changed while the bridge was away (down, or the mirror
        // was idle) get re-indexed, through the debounce since the user may still be typing.
        for b in &blocks {
            if b.indexing_list.iter().any(|e| e.status == Status::Done)
                && !self.stale_entries(room, &b.id, false).await.is_empty()
            {
                let now = Instant::now();
                self.dirty
                    .entry((room.to_owned(), b.id.clone()))
                    .or_insert((now, now));
            }
        }
        Ok(())
    }

    /// `done` entries of a block whose indexed content differs from the current content, with
    /// the attempt to request. `unknown_is_stale`: whether a `done` without a known APICall
    /// (pruned, or written elsewhere) counts as stale.
    async fn stale_entries(
        &self,
        room: &str,
        block_id: &str,
        unknown_is_stale: bool,
    ) -> Vec<(String, u64)> {
        let Some(view) = self
            .rooms
            .get(room)
            .and_then(|m| m.ws.block(block_id).ok().flatten())
        else {
            return Vec::new();
        };
        let hash = content_hash(&view.content);
        let mut out = Vec::new();
        for e in view
            .indexing_list
            .iter()
            .filter(|e| e.status == Status::Done)
        {
            let Ok(attempt) = u32::try_from(e.attempt) else {
                continue;
            };
            let ob = self.inner.outbox.clone();
            let (r, b, i) = (room.to_owned(), block_id.to_owned(), e.index_name.clone());
            let call = blocking(move || ob.find_by_trigger(&r, &b, &i, attempt))
                .await
                .ok()
                .flatten();
            let stale = match call {
                Some(c) => {
                    c.request_params.get("content_hash").and_then(Value::as_str)
                        != Some(hash.as_str())
                }
                None => unknown_is_stale,
            };
            if stale {
                out.push((e.index_name.clone(), e.attempt + 1));
            }
        }
        out
    }

    /// Rule "content of a `done` entry changed → request attempt N+1". `unknown_is_stale`:
    /// whether a `done` without a known APICall (pruned, or written elsewhere) counts as stale.
    async fn reindex_check(&mut self, room: &str, block_id: &str, unknown_is_stale: bool) {
        let requests = self.stale_entries(room, block_id, unknown_is_stale).await;
        for (index, next) in requests {
            tracing::info!(room, block = block_id, index = %index, attempt = next, "content changed; re-index requested");
            let rec = StatusRecord::new(next, Status::NotStarted);
            if let Err(e) = self.write_record(room, block_id, &index, &rec).await {
                tracing::warn!(room, block = block_id, error = %e, "re-index request not written");
            }
        }
        self.drain(room).await;
    }

    async fn fire_debounce(&mut self) {
        let quiet = Duration::from_millis(self.inner.cfg.debounce.quiet_ms);
        let max_wait = Duration::from_millis(self.inner.cfg.debounce.max_wait_ms);
        let now = Instant::now();
        let due: Vec<(String, String)> = self
            .dirty
            .iter()
            .filter(|(_, (first, last))| *last + quiet <= now || *first + max_wait <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.dirty.remove(&key);
            self.reindex_check(&key.0, &key.1, true).await;
        }
    }

    /// Appends a status record as the bridge peer and sends the update to the host.
    /// Returns whether an update was sent. On a host failure the mirror is rebuilt from the
    /// stored state, so the next try sees what really is stored.
    async fn write_record(
        &mut self,
        room: &str,
        block_id: &str,
        index: &str,
        rec: &StatusRecord,
    ) -> Result<bool, BridgeError> {
        // Callers load the room first; loading here would make the rules recursive.
        let Some(m) = self.rooms.get(room) else {
            return Err(BridgeError::RoomNotLoaded(room.to_owned()));
        };
        let (changed, update) =
            m.ws.transact(BRIDGE_ORIGIN, |t| t.record_status(block_id, index, rec))
                .map_err(BridgeError::Doc)?;
        let changed = changed.map_err(BridgeError::Doc)?;
        if !changed || update.is_empty() {
            return Ok(false);
        }
        if let Err(e) = self
            .inner
            .host
            .apply_update(room, update, BRIDGE_ORIGIN)
            .await
        {
            self.drop_mirror(room);
            return Err(BridgeError::Host(e));
        }
        Ok(true)
    }

    /// Applies queued write-backs, one bridge transaction (one update, one durable apply) per
    /// room and layer. Returns when to run again: `None` when the queue was drained, else now
    /// (more queued) or the earliest backoff of a room the host refused.
    async fn process_writebacks(&mut self) -> Result<Option<Instant>, BridgeError> {
        const BATCH: usize = 512;
        let ob = self.inner.outbox.clone();
        let items = blocking(move || ob.writebacks(BATCH)).await?;
        let full = items.len() == BATCH;
        let now = Instant::now();
        let mut by_room: HashMap<String, Vec<(u64, Writeback)>> = HashMap::new();
        let mut next: Option<Instant> = None;
        for (seq, wb) in items {
            if let Some((_, not_before)) = self.wb_failures.get(&wb.room)
                && *not_before > now
            {
                next = Some(next.map_or(*not_before, |n| n.min(*not_before)));
                continue;
            }
            by_room.entry(wb.room.clone()).or_default().push((seq, wb));
        }
        let mut acks = Vec::new();
        let mut done_blocks = BTreeSet::new();
        for (room, wbs) in by_room {
            // One update per "layer": the k-th queued record of every entry goes into update k,
            // so a client sees `processing` and `done` as two steps even when a fast call
            // finished before the first was written.
            let mut layers: Vec<Vec<(u64, Writeback)>> = Vec::new();
            let mut depth: HashMap<(String, String), usize> = HashMap::new();
            for (seq, wb) in wbs {
                let d = depth
                    .entry((wb.block_id.clone(), wb.index_name.clone()))
                    .or_default();
                if layers.len() <= *d {
                    layers.push(Vec::new());
                }
                layers[*d].push((seq, wb));
                *d += 1;
            }
            let mut layers = layers.into_iter();
            while let Some(wbs) = layers.next() {
                // Later layers wait for earlier ones, so records keep their order.
                let Err(error) = self
                    .apply_layer(&room, wbs.clone(), &mut acks, &mut done_blocks)
                    .await
                else {
                    self.wb_failures.remove(&room);
                    continue;
                };
                let failures = self.wb_failures.get(&room).map_or(0, |f| f.0) + 1;
                let policy = &self.inner.cfg.retry;
                if failures >= policy.max_attempts {
                    // Give up: keep the failure on each call, delete the rows.
                    self.wb_failures.remove(&room);
                    let rest: Vec<(u64, Writeback)> =
                        wbs.into_iter().chain(layers.by_ref().flatten()).collect();
                    tracing::error!(room, n = rest.len(), tries = failures, error = %error, "write-backs given up: the host keeps refusing them");
                    let msg = format!("write-back refused {failures} times: {error}");
                    for (seq, wb) in &rest {
                        self.note_writeback_failed(wb, &msg).await;
                        acks.push(*seq);
                    }
                    metrics::counter!(crate::metrics::WRITEBACKS_TOTAL, "status" => "given_up")
                        .increment(rest.len() as u64);
                } else {
                    let delay = writeback_backoff(policy, failures);
                    let at = Instant::now() + delay;
                    self.wb_failures.insert(room.clone(), (failures, at));
                    tracing::warn!(room, tries = failures, retry_in_ms = delay.as_millis() as u64, error = %error, "write-backs not applied yet");
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                break;
            }
        }
        let progressed = !acks.is_empty();
        let ob = self.inner.outbox.clone();
        blocking(move || ob.ack_writebacks(&acks)).await?;
        // Content edited while the call ran: the result is stale, index again.
        for (room, block) in done_blocks {
            self.reindex_check(&room, &block, false).await;
        }
        if full && progressed {
            return Ok(Some(Instant::now()));
        }
        Ok(next)
    }

    /// Applies one layer of a room's write-backs; the host's error if it refused it.
    async fn apply_layer(
        &mut self,
        room: &str,
        wbs: Vec<(u64, Writeback)>,
        acks: &mut Vec<u64>,
        done_blocks: &mut BTreeSet<(String, String)>,
    ) -> Result<(), String> {
        match self.apply_writebacks(room, &wbs).await {
            Ok(()) => {
                for (seq, wb) in &wbs {
                    acks.push(*seq);
                    if wb.status == DocStatus::Done {
                        done_blocks.insert((room.to_owned(), wb.block_id.clone()));
                    }
                }
                self.drain(room).await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn record_for(wb: &Writeback) -> StatusRecord {
        let attempt = u64::from(wb.attempt);
        let id = wb.api_call_id.clone().unwrap_or_default();
        let at = wb.completed_at.unwrap_or_else(now_ms);
        match wb.status {
            DocStatus::NotStarted => StatusRecord::new(attempt, Status::NotStarted),
            DocStatus::Processing => StatusRecord::processing(attempt, id),
            DocStatus::Done => {
                let result = match wb.result.clone() {
                    Some(Value::Object(o)) => Value::Object(o),
                    None | Some(Value::Null) => json!({}),
                    Some(other) => json!({ "value": other }),
                };
                StatusRecord::done(attempt, id, result, at)
            }
            DocStatus::Error => StatusRecord::error(
                attempt,
                id,
                wb.error.clone().unwrap_or_else(|| "failed".into()),
                at,
            ),
        }
    }

    /// Writes a room's queued outcomes as one transaction of the bridge peer and sends the
    /// update. Records already present, for a removed entry, or for an attempt older than the
    /// entry's current one are skipped (`record_status` and the guard below), so replays after
    /// a crash change nothing.
    async fn apply_writebacks(
        &mut self,
        room: &str,
        wbs: &[(u64, Writeback)],
    ) -> Result<(), BridgeError> {
        if !self.rooms.contains_key(room) {
            self.load_room(room).await?;
        }
        let Some(m) = self.rooms.get_mut(room) else {
            return Err(BridgeError::RoomNotLoaded(room.to_owned()));
        };
        m.used = Instant::now();
        m.host_unloaded = false;
        let (written, update) = m
            .ws
            .transact(BRIDGE_ORIGIN, |t| {
                let mut written = Vec::new();
                for (_, wb) in wbs {
                    let Some(entry) = t.block(&wb.block_id).and_then(|b| b.entry(&wb.index_name).cloned()) else {
                        continue; // block or entry removed: nothing to show it on
                    };
                    if entry.attempt > u64::from(wb.attempt) {
                        continue; // a newer attempt exists; an old outcome must not add noise
                    }
                    match t.record_status(&wb.block_id, &wb.index_name, &Self::record_for(wb)) {
                        Ok(true) => written.push(wb),
                        Ok(false) => {}
                        Err(e) => tracing::warn!(room, call_id = ?wb.api_call_id, error = %e, "invalid status record skipped"),
                    }
                }
                written
            })
            .map_err(BridgeError::Doc)?;
        if update.is_empty() {
            return Ok(());
        }
        if let Err(e) = self
            .inner
            .host
            .apply_update(room, update, BRIDGE_ORIGIN)
            .await
        {
            // The mirror holds records the host never stored: rebuild it from stored state.
            self.drop_mirror(room);
            return Err(BridgeError::Host(e));
        }
        for wb in written {
            metrics::counter!(crate::metrics::WRITEBACKS_TOTAL, "status" => wb.status.as_str())
                .increment(1);
            tracing::info!(room, block = %wb.block_id, index = %wb.index_name, attempt = wb.attempt, status = wb.status.as_str(), call_id = ?wb.api_call_id, "outcome written back");
        }
        Ok(())
    }

    async fn retry(&mut self, call_id: Uuid) -> Result<ApiCall, RetryError> {
        let ob = self.inner.outbox.clone();
        let call = blocking(move || ob.get(&call_id))
            .await
            .map_err(|e| RetryError::Internal(e.to_string()))?
            .ok_or(RetryError::NotFound)?;
        if !call.status.is_terminal() {
            return Err(RetryError::Conflict(format!(
                "call is {}, not finished",
                call.status.as_str()
            )));
        }
        if !self.rooms.contains_key(&call.room) {
            self.load_room(&call.room)
                .await
                .map_err(|e| RetryError::Internal(e.to_string()))?;
        }
        let entry = self
            .rooms
            .get(&call.room)
            .and_then(|m| m.ws.block(&call.block_id).ok().flatten())
            .and_then(|b| b.entry(&call.index_name).cloned())
            .ok_or_else(|| RetryError::Conflict("the index entry no longer exists".into()))?;
        if entry.attempt > u64::from(call.attempt) {
            return Err(RetryError::Conflict(format!(
                "a newer attempt ({}) exists",
                entry.attempt
            )));
        }
        let next = u64::from(call.attempt) + 1;
        let rec = StatusRecord::new(next, Status::NotStarted);
        self.write_record(&call.room, &call.block_id, &call.index_name, &rec)
            .await
            .map_err(|e| RetryError::Internal(e.to_string()))?;
        self.drain(&call.room).await;
        self.evaluate_block(&call.room, &call.block_id).await;
        let ob = self.inner.outbox.clone();
        let (r, b, i) = (
            call.room.clone(),
            call.block_id.clone(),
            call.index_name.clone(),
        );
        let attempt =
            u32::try_from(next).map_err(|_| RetryError::Conflict("attempt out of range".into()))?;
        blocking(move || ob.find_by_trigger(&r, &b, &i, attempt))
            .await
            .map_err(|e| RetryError::Internal(e.to_string()))?
            .ok_or_else(|| RetryError::Internal("retry requested but no call was created".into()))
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatcher and workers.

const IDLE_POLL: Duration = Duration::from_millis(1000);

async fn dispatcher(inner: Arc<Inner>) {
    // Leases recorded by a previous process are dead: redb admits one process per file.
    let ob = inner.outbox.clone();
    match blocking(move || ob.rescue_expired(now_ms(), true, &mut rand::rng())).await {
        Ok(v) if !v.is_empty() => {
            metrics::counter!(crate::metrics::LEASES_RESCUED_TOTAL).increment(v.len() as u64);
            tracing::info!(rescued = v.len(), "rescued calls leased by a previous run");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "start-up lease rescue failed"),
    }
    inner.notify_writebacks();
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let now = now_ms();
        let mut store_error = false;
        let ob = inner.outbox.clone();
        let (next_due, next_exp) = match blocking(move || {
            if let Ok((ready, leased, wb)) = ob.queue_sizes() {
                metrics::gauge!(crate::metrics::READY_CALLS).set(ready as f64);
                metrics::gauge!(crate::metrics::LEASED_CALLS).set(leased as f64);
                metrics::gauge!(crate::metrics::PENDING_WRITEBACKS).set(wb as f64);
            }
            Ok::<_, crate::OutboxError>((ob.next_due()?, ob.next_lease_expiry()?))
        })
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "outbox read failed");
                store_error = true;
                (None, None)
            }
        };
        if next_exp.is_some_and(|t| t <= now) {
            let ob = inner.outbox.clone();
            match blocking(move || ob.rescue_expired(now, false, &mut rand::rng())).await {
                Ok(v) => {
                    metrics::counter!(crate::metrics::LEASES_RESCUED_TOTAL)
                        .increment(v.len() as u64);
                }
                Err(e) => {
                    tracing::error!(error = %e, "lease rescue failed");
                    store_error = true;
                }
            }
        }
        let mut claimed = 0;
        if next_due.is_some_and(|t| t <= now) {
            let slots: HashMap<String, usize> = inner
                .slots
                .iter()
                .map(|(k, s)| (k.clone(), s.available_permits()))
                .collect();
            if slots.values().any(|n| *n > 0) {
                let ob = inner.outbox.clone();
                match blocking(move || ob.claim_due(now, &slots, 64)).await {
                    Ok(claims) => {
                        claimed = claims.len();
                        for c in claims {
                            let permit = inner
                                .slots
                                .get(&c.call.integration)
                                .and_then(|s| s.clone().try_acquire_owned().ok());
                            let inner2 = inner.clone();
                            inner.tracker.spawn(run_claim(inner2, c, permit));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claim failed");
                        store_error = true;
                    }
                }
            }
        }
        if claimed > 0 {
            inner.notify_writebacks();
            continue;
        }
        let wait = [next_due, next_exp]
            .into_iter()
            .flatten()
            .map(|t| Duration::from_millis(t.saturating_sub(now)))
            .min()
            .unwrap_or(IDLE_POLL)
            .clamp(Duration::from_millis(5), IDLE_POLL);
        // A store that fails (full disk, I/O error) fails again at once: retry at the idle pace
        // instead of every 5 ms, which only floods the log.
        let wait = if store_error { IDLE_POLL } else { wait };
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = inner.dispatch_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("bridge dispatcher stopped");
}

fn past_deadline(call: &ApiCall, timeout_ms: u64) -> bool {
    call.started_at
        .is_some_and(|t| now_ms().saturating_sub(t) >= timeout_ms)
}

async fn run_claim(inner: Arc<Inner>, claim: Claim, permit: Option<OwnedSemaphorePermit>) {
    let call = &claim.call;
    let lease = Duration::from_millis(inner.cfg.retry.lease_ms.saturating_sub(500).max(100));
    let outcome = match inner.registry.get(&call.integration) {
        None => Outcome::Failed {
            error: format!("integration {:?} is not configured", call.integration),
            retryable: false,
            retry_after_ms: None,
        },
        Some(integ)
            if claim.phase == Phase::Poll && past_deadline(call, integ.async_timeout_ms()) =>
        {
            Outcome::Failed {
                error: format!(
                    "no completion within {} s of the external system accepting the call",
                    integ.async_timeout_ms() / 1000
                ),
                retryable: false,
                retry_after_ms: None,
            }
        }
        Some(integ) if claim.phase == Phase::Poll && !integ.can_poll() => {
            // Webhook-only integration woken before its deadline (clock change, restart):
            // sleep until the deadline.
            let left = call.started_at.map_or(integ.async_timeout_ms(), |t| {
                (t + integ.async_timeout_ms()).saturating_sub(now_ms())
            });
            Outcome::Pending {
                poll_after_ms: left.max(100),
            }
        }
        Some(integ) => {
            let fut = match claim.phase {
                Phase::Submit => integ.submit(call),
                Phase::Poll => integ.poll(call),
            };
            tokio::select! {
                // The lease will be rescued by the next start; the idempotency key makes the
                // repeat safe.
                () = inner.shutdown.cancelled() => return,
                r = tokio::time::timeout(lease, fut) => r.unwrap_or_else(|_| Outcome::Failed {
                    error: "no answer within the lease".into(),
                    retryable: true,
                    retry_after_ms: None,
                }),
            }
        }
    };
    tracing::debug!(call_id = %call.id, room = %call.room, r#try = call.tries, ?outcome, "try finished");
    let result = match &outcome {
        Outcome::Completed { .. } => "completed",
        Outcome::Started { .. } => "started",
        Outcome::Pending { .. } => "pending",
        Outcome::Failed {
            retryable: true, ..
        } => "retry",
        Outcome::Failed {
            retryable: false, ..
        } => "failed",
    };
    metrics::counter!(crate::metrics::TRIES_TOTAL, "integration" => call.integration.clone(), "result" => result).increment(1);
    let (id, token) = (call.id, claim.token);
    let (reply, rx) = oneshot::channel();
    if inner
        .done_tx
        .send(Done {
            id,
            token,
            outcome,
            reply,
        })
        .is_err()
    {
        return; // shutting down: the lease will be rescued at the next start
    }
    let Ok(result) = rx.await else { return };
    match result {
        Ok(Completion::Recorded(c)) => {
            if c.status.is_terminal() {
                metrics::counter!(crate::metrics::CALLS_FINISHED_TOTAL, "integration" => c.integration.clone(), "status" => c.status.as_str()).increment(1);
            }
            tracing::info!(call_id = %c.id, room = %c.room, status = c.status.as_str(), tries = c.tries, error = ?c.error, "outcome recorded");
        }
        Ok(Completion::Fenced) => {
            tracing::warn!(call_id = %id, token, "stale lease: outcome not recorded")
        }
        Ok(Completion::Ignored) => {}
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "cannot record outcome; the lease will expire and the call be retried")
        }
    }
    drop(permit);
    inner.notify_writebacks();
    inner.dispatch_wake.notify_one();
}

/// Commits worker outcomes, batching whatever is queued into one transaction. The worker keeps
/// its concurrency slot until its outcome is durable.
async fn completer(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Done>) {
    loop {
        let first = tokio::select! {
            () = inner.shutdown.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|d| ((d.id, Some(d.token), d.outcome), d.reply))
            .unzip();
        let ob = inner.outbox.clone();
        match blocking(move || ob.complete_many(items, now_ms(), &mut rand::rng())).await {
            Ok(results) => {
                for (r, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(BridgeError::Shared(e.clone())));
                }
            }
        }
    }
    tracing::info!("bridge completer stopped");
}

async fn pruner(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.cfg.retention.prune_interval_ms.max(1000));
    loop {
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let ob = inner.outbox.clone();
        let ret = inner.cfg.retention.clone();
        match blocking(move || ob.prune(now_ms(), &ret)).await {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned finished calls"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "prune failed"),
        }
    }
}
