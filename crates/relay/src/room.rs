//! The room actor: one task per loaded room owns its yrs `Doc`, the awareness states and the
//! senders of its connections. Everything else talks to it through `RoomCmd`.
//!
//! The order of work is the durability contract: a batch of client updates is validated and
//! applied, persisted in one request to the group-commit persister, and only after the durable
//! acknowledgement echoed to every connection (sender included) and published to subscribers.
//! Anything that reveals document state (step1/step2, HTTP reads) first flushes the batch, so
//! nobody ever sees a change that is not on disk.
//!
//! Deliberately not here: frame decoding and socket IO (connection.rs), storage encodings
//! (store/), the registry (relay.rs).

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use weaver_protocol::{AwarenessEntry, encode_awareness, encode_awareness_message};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

use crate::error::{RelayError, close_code};
use crate::metrics as m;
use crate::outbox::{Outbox, PushError};
use crate::relay::{CommittedUpdate, RelayHandle, UpdateOrigin};
use crate::store::StoredRoom;

/// What a room keeps of a connection: its id and the queue/close request they share.
#[derive(Debug, Clone)]
pub(crate) struct ConnLink {
    pub id: u64,
    pub outbox: Arc<Outbox>,
}

#[derive(Debug)]
pub(crate) enum RoomCmd {
    Join {
        link: ConnLink,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    Leave {
        conn_id: u64,
    },
    /// A validated state vector from a connection's step1.
    SyncStep1 {
        conn_id: u64,
        sv: Bytes,
    },
    /// A step2 or update payload (passed the protocol validator).
    ClientUpdate {
        conn_id: u64,
        update: Bytes,
    },
    Awareness {
        conn_id: u64,
        entries: Vec<AwarenessEntry>,
    },
    QueryAwareness {
        conn_id: u64,
    },
    /// Boxed: rare (HTTP and the bridge), and the largest variant; every slot of every room's
    /// inbox block is as large as the largest variant.
    Apply {
        req: Box<(Bytes, UpdateOrigin)>,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    State {
        sv: Option<Bytes>,
        reply: oneshot::Sender<Result<Vec<u8>, RelayError>>,
    },
    Delete {
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    /// Who is here: connections and live awareness states (`GET …/awareness`).
    Presence {
        reply: oneshot::Sender<RoomPresence>,
    },
}

/// A room's connections and its live awareness states `(client id, clock, JSON text)`.
#[derive(Debug, Default)]
pub(crate) struct RoomPresence {
    pub connections: usize,
    pub states: Vec<(u64, u64, String)>,
}

// Commands travel boxed (`RoomMsg`): each one is its own small allocation.
const _: () = assert!(std::mem::size_of::<RoomCmd>() <= 48);

/// What a room's inbox carries. Boxed because a tokio mpsc channel allocates its slots in blocks
/// of 32 at creation, and every room has an inbox: 32 boxes are 256 bytes where 32 commands
/// were 1.5 KB (docs/benchmarks.md, memory per room). One small allocation per command is
/// nothing next to what the room does with it.
pub(crate) type RoomMsg = Box<RoomCmd>;

impl RoomCmd {
    /// Commands that reveal document state must not run while a batch is unpersisted.
    fn needs_flush(&self) -> bool {
        matches!(
            self,
            RoomCmd::Join { .. }
                | RoomCmd::SyncStep1 { .. }
                | RoomCmd::State { .. }
                | RoomCmd::Delete { .. }
        )
    }

    /// Answers a command that reached a room which is going away; callers retry elsewhere.
    fn bounce(self, err: impl Fn() -> RelayError) {
        match self {
            RoomCmd::Join { reply, .. }
            | RoomCmd::Apply { reply, .. }
            | RoomCmd::Delete { reply } => {
                let _ = reply.send(Err(err()));
            }
            RoomCmd::State { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            // Dropping the reply: the caller reads a room going away as an empty one.
            RoomCmd::Presence { .. }
            | RoomCmd::Leave { .. }
            | RoomCmd::SyncStep1 { .. }
            | RoomCmd::ClientUpdate { .. }
            | RoomCmd::Awareness { .. }
            | RoomCmd::QueryAwareness { .. } => {}
        }
    }
}

/// Documents are created the same way everywhere (UTF-16 offsets, like Yjs).
pub(crate) fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

enum Applied {
    Changed,
    Noop,
    Invalid(String),
    Panicked,
    /// Applied, but the room now parks more than the allowed bytes of causally incomplete
    /// updates; the caller must discard the doc.
    PendingTooLarge(usize),
}

/// Applies one v1 update. yrs may panic on hostile input; the caller must discard the doc then.
fn apply_update(doc: &Doc, bytes: &[u8], max_pending: usize) -> Applied {
    let r = catch_unwind(AssertUnwindSafe(|| {
        let update = match Update::decode_v1(bytes) {
            Ok(u) => u,
            Err(e) => return Applied::Invalid(e.to_string()),
        };
        let mut txn = doc.transact_mut();
        if let Err(e) = weaver_doc::apply_update_retrying_pending(&mut txn, update) {
            return Applied::Invalid(e.to_string());
        }
        let store = ReadTxn::store(&txn);
        // Missing dependencies park the update as "pending": it must still be persisted.
        let pending = store.pending_update().is_some() || store.pending_ds().is_some();
        if let Some(p) = store.pending_update()
            && max_pending < usize::MAX
        {
            let size = p.update.encode_v1().len();
            if size > max_pending {
                return Applied::PendingTooLarge(size);
            }
        }
        if pending || !txn.insert_set().is_empty() || !txn.delete_set().is_empty() {
            Applied::Changed
        } else {
            Applied::Noop
        }
    }));
    r.unwrap_or(Applied::Panicked)
}

/// Builds a document from storage. A record that fails to apply is skipped (and reported); one
/// that makes yrs panic is skipped and the build restarts without it, so a poison record can
/// never crash-loop the process or take the rest of the room with it.
pub(crate) fn build_doc(room: &str, stored: &StoredRoom) -> Doc {
    let mut skip: HashSet<u64> = HashSet::new();
    // Seq 0 stands for the snapshot.
    let records = stored.tail.len() + 1;
    for _ in 0..=records {
        let doc = new_doc();
        let mut panicked = None;
        let parts = stored
            .snapshot
            .as_deref()
            .map(|s| (0u64, s))
            .into_iter()
            .chain(stored.tail.iter().map(|(seq, u)| (*seq, u.as_slice())));
        for (seq, bytes) in parts {
            if skip.contains(&seq) {
                continue;
            }
            match apply_update(&doc, bytes, usize::MAX) {
                Applied::Changed | Applied::Noop | Applied::PendingTooLarge(_) => {}
                Applied::Invalid(e) => {
                    error!(room, seq, error = %e, "stored record does not apply; skipped");
                    metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                    skip.insert(seq);
                }
                Applied::Panicked => {
                    panicked = Some(seq);
                    break;
                }
            }
        }
        match panicked {
            None => return doc,
            Some(seq) => {
                error!(
                    room,
                    seq, "stored record made yrs panic; rebuilding without it"
                );
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                skip.insert(seq);
            }
        }
    }
    new_doc()
}

/// Batches above this size are sent per update: the outbound queues are bounded in frames, so
/// an unbounded merged frame would raise the memory a slow consumer can pin before it is closed,
/// and large updates gain nothing from sharing a frame (the cost saved is per frame).
pub(crate) const MERGE_MAX_BYTES: usize = 256 * 1024;
/// A held batch is committed early once it is this large: the merged frame stays well under
/// `MERGE_MAX_BYTES` and one commit stays short.
const HOLD_MAX_UPDATES: usize = 512;
const HOLD_MAX_BYTES: usize = 64 * 1024;

/// Exponentially smoothed count of updates: `level` decays with time constant `TAU`, so
/// `level / TAU` is the recent rate per second. One multiplication and one `exp` per update.
#[derive(Debug)]
struct UpdateRate {
    level: f64,
    at: Instant,
}

impl UpdateRate {
    const TAU_SECS: f64 = 0.020;

    fn new() -> Self {
        Self {
            level: 0.0,
            at: Instant::now(),
        }
    }

    fn decayed(&self, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level * (-dt / Self::TAU_SECS).exp()
    }

    fn add(&mut self, now: Instant) {
        self.level = self.decayed(now) + 1.0;
        self.at = now;
    }

    fn per_second(&self, now: Instant) -> f64 {
        self.decayed(now) / Self::TAU_SECS
    }
}

/// Whether a room is in a write storm: it enters one above `threshold` updates/s and leaves it
/// below half of that.
fn storm(holding: bool, rate: f64, threshold: u32) -> bool {
    let threshold = f64::from(threshold);
    if holding {
        rate >= threshold / 2.0
    } else {
        rate >= threshold
    }
}

/// One update frame for a whole persisted batch, so each connection gets one frame (one
/// write) per flush instead of one per update; what Hocuspocus does per tick. A merged update
/// applies to the same state as its parts in any order. `None` for a single update (nothing
/// to merge), for batches larger than `MERGE_MAX_BYTES`, or when yrs refuses or panics: the
/// caller then sends one frame per update.
pub(crate) fn merged_frame(updates: &[&[u8]]) -> Option<Bytes> {
    if updates.len() < 2 || updates.iter().map(|u| u.len()).sum::<usize>() > MERGE_MAX_BYTES {
        return None;
    }
    match catch_unwind(AssertUnwindSafe(|| yrs::merge_updates_v1(updates))) {
        Ok(Ok(merged)) => Some(Bytes::from(weaver_protocol::encode_update(&merged))),
        Ok(Err(e)) => {
            warn!(error = %e, updates = updates.len(), "merging a batch failed; sending it per update");
            None
        }
        Err(_) => {
            warn!(
                updates = updates.len(),
                "yrs panicked merging a batch; sending it per update"
            );
            None
        }
    }
}

struct ConnState {
    link: ConnLink,
    /// Awareness client ids this connection published (nulled when it leaves).
    clients: HashSet<u64>,
}

struct AwarenessSlot {
    clock: u64,
    /// JSON text; `None` once removed (the clock is kept, as Yjs does).
    state: Option<String>,
}

struct Pending {
    update: Bytes,
    origin: UpdateOrigin,
    /// False for updates that changed nothing: they are acknowledged with the batch but neither
    /// stored nor echoed.
    persist: bool,
    reply: Option<oneshot::Sender<Result<(), RelayError>>>,
}

struct Room {
    relay: RelayHandle,
    name: Arc<str>,
    doc: Doc,
    conns: HashMap<u64, ConnState>,
    awareness: HashMap<u64, AwarenessSlot>,
    batch: Vec<Pending>,
    last_seq: u64,
    log_updates: u64,
    log_bytes: u64,
    /// Estimated stored size of the document (snapshot + log), for the size limit.
    doc_bytes: u64,
    compaction: Option<JoinHandle<()>>,
    /// Smoothed rate of document-changing updates, which decides whether batches are held.
    rate: UpdateRate,
    /// Whether the last batch was held: a storm keeps being held until its rate falls to half
    /// the threshold (hysteresis), so a storm whose rate wavers around the threshold does not
    /// flip between holding and committing every update.
    holding: bool,
    /// Set when the room cannot continue (storage failed and reload failed).
    dead: bool,
}

/// How soon an idle room tries again to unload when a command arrived just as it tried.
const IDLE_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// The room task: load, then serve commands until shutdown, deletion, failure or idle unload.
pub(crate) async fn run(
    relay: RelayHandle,
    name: Arc<str>,
    generation: u64,
    mut rx: mpsc::Receiver<RoomMsg>,
) {
    let started = Instant::now();
    // Boxed, like every rare or large await of the room (rebuilds, deletion, the persist
    // request): a task's memory is its future's largest state, held for the room's whole life.
    let loaded = Box::pin(load(&relay, &name)).await;
    let loaded = match loaded {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "room failed to load");
            relay.unregister(&name, generation, &rx, false);
            rx.close();
            let overloaded = matches!(e, RelayError::Overloaded(_));
            while let Ok(cmd) = rx.try_recv() {
                cmd.bounce(|| {
                    if overloaded {
                        RelayError::Overloaded("too many rooms loading; try again")
                    } else {
                        RelayError::Internal(format!("room failed to load: {e}"))
                    }
                });
            }
            return;
        }
    };
    metrics::counter!(m::ROOM_LOADS_TOTAL).increment(1);
    metrics::gauge!(m::ROOMS_LOADED).increment(1.0);
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        records = loaded.log_updates,
        "room loaded"
    );
    let mut room = Room {
        relay: relay.clone(),
        name: name.clone(),
        doc: loaded.doc,
        conns: HashMap::new(),
        awareness: HashMap::new(),
        batch: Vec::new(),
        last_seq: loaded.last_seq,
        log_updates: loaded.log_updates,
        log_bytes: loaded.log_bytes,
        doc_bytes: loaded.doc_bytes,
        compaction: None,
        rate: UpdateRate::new(),
        holding: false,
        dead: false,
    };
    room.maybe_compact();
    let cancel = relay.shared.cancel.clone();
    let idle = relay.shared.config.idle_unload;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    let exit_reason: &str;
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Updates already received are applied and committed before the room closes:
                // shutdown loses nothing the server has read off a socket.
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    match *cmd {
                        cmd @ (RoomCmd::ClientUpdate { .. } | RoomCmd::Apply { .. } | RoomCmd::Leave { .. }) => {
                            room.handle(cmd).await;
                        }
                        other => other.bounce(|| RelayError::ShuttingDown),
                    }
                }
                room.flush().await;
                room.close_all(close_code::SHUTDOWN, "server shutting down");
                relay.unregister(&name, generation, &rx, false);
                exit_reason = "shutdown";
                break;
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { exit_reason = "inbox closed"; break };
                let mut deleted = false;
                // Looking at who is here is not using the room: a dashboard polling presence
                // must not keep an empty room in memory forever.
                let mut used = false;
                let mut next = Some(cmd);
                // Drain what is queued so one persist request covers many updates.
                let mut budget = 256usize;
                while let Some(cmd) = next.take() {
                    used |= !matches!(*cmd, RoomCmd::Presence { .. });
                    if cmd.needs_flush() {
                        room.flush().await;
                    }
                    if room.handle(*cmd).await {
                        deleted = true;
                        break;
                    }
                    budget -= 1;
                    if budget > 0 {
                        next = rx.try_recv().ok();
                    }
                }
                if !deleted && room.should_hold() {
                    deleted = Box::pin(room.hold(&mut rx, &cancel)).await;
                }
                room.flush().await;
                if deleted {
                    relay.unregister(&name, generation, &rx, false);
                    exit_reason = "deleted";
                    break;
                }
                if room.dead {
                    room.close_all(close_code::INTERNAL, "room storage failed");
                    relay.unregister(&name, generation, &rx, false);
                    exit_reason = "storage failure";
                    break;
                }
                if used {
                    idle_deadline = tokio::time::Instant::now() + idle;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline), if room.conns.is_empty() => {
                if relay.unregister(&name, generation, &rx, true) {
                    exit_reason = "idle";
                    break;
                }
                // Something was queued. If it is real use, handling it restarts the idle
                // period; if it is only a presence poll, the room may unload right after it.
                idle_deadline = tokio::time::Instant::now() + IDLE_RECHECK;
            }
        }
    }
    rx.close();
    while let Ok(cmd) = rx.try_recv() {
        if cancel.is_cancelled() {
            cmd.bounce(|| RelayError::ShuttingDown);
        } else {
            cmd.bounce(|| RelayError::Unavailable(name.to_string()));
        }
    }
    if let Some(c) = room.compaction.take() {
        let _ = c.await;
    }
    metrics::gauge!(m::ROOMS_LOADED).decrement(1.0);
    info!(reason = exit_reason, "room unloaded");
    if exit_reason == "idle" {
        let _ = relay.shared.unloads.send(name.clone());
    }
}

/// A room as rebuilt from storage.
struct Loaded {
    doc: Doc,
    last_seq: u64,
    log_updates: u64,
    log_bytes: u64,
    /// Snapshot + log bytes: the estimate the document size limit is checked against.
    doc_bytes: u64,
}

async fn load(relay: &RelayHandle, name: &Arc<str>) -> Result<Loaded, RelayError> {
    // Bounded: a reconnect storm queues here instead of loading every room at once.
    // Saturated for longer than `load_wait` → refused (1013 / 503) rather than queued forever.
    let wait = relay.shared.config.limits.load_wait;
    let _permit = match tokio::time::timeout(wait, relay.shared.load_permits.acquire()).await {
        Ok(p) => p.map_err(|_| RelayError::ShuttingDown)?,
        Err(_) => {
            warn!("room loads saturated; refusing");
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "load_saturated")
                .increment(1);
            return Err(RelayError::Overloaded("too many rooms loading; try again"));
        }
    };
    let stored = relay.shared.store.load(name.clone()).await?;
    let room = name.clone();
    tokio::task::spawn_blocking(move || {
        let doc = build_doc(&room, &stored);
        let last_seq = stored
            .tail
            .last()
            .map(|(s, _)| *s)
            .unwrap_or(stored.snapshot_seq);
        let log_bytes = stored.tail_bytes();
        let snapshot_bytes = stored.snapshot.as_ref().map_or(0, |s| s.len() as u64);
        Loaded {
            doc,
            last_seq,
            log_updates: stored.tail.len() as u64,
            log_bytes,
            doc_bytes: snapshot_bytes + log_bytes,
        }
    })
    .await
    .map_err(|e| RelayError::Internal(format!("room load task failed: {e}")))
}

impl Room {
    /// Handles one command. Returns true when the room was deleted and must stop.
    async fn handle(&mut self, cmd: RoomCmd) -> bool {
        match cmd {
            RoomCmd::Join { link, reply } => {
                self.join(link);
                let _ = reply.send(Ok(()));
            }
            RoomCmd::Leave { conn_id } => self.remove_conn(conn_id),
            RoomCmd::SyncStep1 { conn_id, sv } => self.sync_step1(conn_id, &sv),
            RoomCmd::ClientUpdate { conn_id, update } => {
                if self.conns.contains_key(&conn_id) {
                    self.apply(update, UpdateOrigin::Client { conn_id }, None)
                        .await;
                }
            }
            RoomCmd::Awareness { conn_id, entries } => self.on_awareness(conn_id, entries),
            RoomCmd::QueryAwareness { conn_id } => {
                if let Some(frame) = self.all_awareness_frame() {
                    self.send_to(conn_id, frame);
                }
            }
            RoomCmd::Apply { req, reply } => {
                let (update, origin) = *req;
                self.apply(update, origin, Some(reply)).await
            }
            RoomCmd::State { sv, reply } => {
                let _ = reply.send(self.encode_state(sv.as_deref()));
            }
            RoomCmd::Presence { reply } => {
                let _ = reply.send(self.presence());
            }
            RoomCmd::Delete { reply } => {
                Box::pin(self.delete(reply)).await;
                return true;
            }
        }
        false
    }

    /// Whether the batch about to be committed should wait for more updates first: only when
    /// it holds something to store and the room receives updates faster than the configured
    /// rate (a write storm), never for ordinary editing.
    fn should_hold(&mut self) -> bool {
        let cfg = &self.relay.shared.config;
        if cfg.hold_window.is_zero() || self.dead || !self.batch.iter().any(|p| p.persist) {
            return false;
        }
        self.holding = storm(
            self.holding,
            self.rate.per_second(Instant::now()),
            cfg.hold_above_rate,
        );
        self.holding
    }

    /// Keeps applying commands into the batch until the hold window ends, the batch is large
    /// enough, or something needs the state (which flushes, as always). The caller commits
    /// what was gathered as one group: one fsync and one merged broadcast frame. Returns true
    /// when the room was deleted meanwhile. Shutdown and a closed inbox end the hold at once;
    /// the room loop handles them next, after committing the batch.
    async fn hold(
        &mut self,
        rx: &mut mpsc::Receiver<RoomMsg>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let window = tokio::time::sleep(self.relay.shared.config.hold_window);
        tokio::pin!(window);
        metrics::counter!(m::HELD_BATCHES_TOTAL).increment(1);
        loop {
            let bytes: usize = self.batch.iter().map(|p| p.update.len()).sum();
            if self.dead
                || self.batch.is_empty()
                || self.batch.len() >= HOLD_MAX_UPDATES
                || bytes >= HOLD_MAX_BYTES
            {
                break;
            }
            let cmd = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = &mut window => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => cmd,
                    None => break,
                },
            };
            if cmd.needs_flush() {
                self.flush().await;
            }
            if self.handle(*cmd).await {
                return true;
            }
        }
        false
    }

    async fn delete(&mut self, reply: oneshot::Sender<Result<(), RelayError>>) {
        if let Some(c) = self.compaction.take() {
            let _ = c.await;
        }
        self.close_all(close_code::ROOM_DELETED, "room deleted");
        let r = self.relay.shared.store.delete(self.name.clone()).await;
        info!(ok = r.is_ok(), "room deleted");
        if r.is_ok() {
            let _ = self.relay.shared.deletions.send(self.name.clone());
        }
        let _ = reply.send(r.map_err(RelayError::from));
    }

    fn join(&mut self, link: ConnLink) {
        let id = link.id;
        let sv = self.doc.transact().state_vector().encode_v1();
        self.conns.insert(
            id,
            ConnState {
                link,
                clients: HashSet::new(),
            },
        );
        self.send_to(id, Bytes::from(weaver_protocol::encode_sync_step1(&sv)));
        if let Some(frame) = self.all_awareness_frame() {
            self.send_to(id, frame);
        }
        debug!(conn = id, conns = self.conns.len(), "connection joined");
    }

    fn sync_step1(&mut self, conn_id: u64, sv: &[u8]) {
        if !self.conns.contains_key(&conn_id) {
            return;
        }
        match self.encode_state(Some(sv)) {
            Ok(update) => self.send_to(
                conn_id,
                Bytes::from(weaver_protocol::encode_sync_step2(&update)),
            ),
            Err(e) => self.reject(
                conn_id,
                close_code::INVALID_PAYLOAD,
                "bad_state_vector",
                &e.to_string(),
            ),
        }
    }

    /// The document as a v1 update, or the diff against a state vector (includes pending
    /// structs, like Yjs `encodeStateAsUpdate`).
    fn encode_state(&mut self, sv: Option<&[u8]>) -> Result<Vec<u8>, RelayError> {
        let sv = match sv {
            Some(b) => StateVector::decode_v1(b)
                .map_err(|e| RelayError::InvalidStateVector(e.to_string()))?,
            None => StateVector::default(),
        };
        let doc = &self.doc;
        catch_unwind(AssertUnwindSafe(|| {
            doc.transact().encode_state_as_update_v1(&sv)
        }))
        .map_err(|_| RelayError::Internal("yrs panicked encoding the document".into()))
    }

    async fn apply(
        &mut self,
        update: Bytes,
        origin: UpdateOrigin,
        reply: Option<oneshot::Sender<Result<(), RelayError>>>,
    ) {
        let cfg = &self.relay.shared.config;
        let (max_doc, max_pending) = (cfg.max_doc_bytes, cfg.max_pending_bytes);
        let pending_bytes: u64 = self.batch.iter().map(|p| p.update.len() as u64).sum();
        if self.doc_bytes + pending_bytes + update.len() as u64 > max_doc {
            self.refuse(
                origin,
                reply,
                (close_code::POLICY, "document_too_large"),
                RelayError::DocumentTooLarge { limit: max_doc },
            );
            return;
        }
        match apply_update(&self.doc, &update, max_pending) {
            Applied::Changed => {
                self.rate.add(Instant::now());
                self.batch.push(Pending {
                    update,
                    origin,
                    persist: true,
                    reply,
                })
            }
            Applied::Noop => self.batch.push(Pending {
                update,
                origin,
                persist: false,
                reply,
            }),
            Applied::Invalid(e) => self.refuse(
                origin,
                reply,
                (close_code::INVALID_PAYLOAD, "invalid_update"),
                RelayError::InvalidUpdate(e),
            ),
            Applied::Panicked => {
                metrics::counter!(m::POISON_UPDATES_TOTAL).increment(1);
                error!(origin = ?origin, "yrs panicked applying an update; dropping it and rebuilding the room");
                self.refuse(
                    origin,
                    reply,
                    (close_code::INTERNAL, "update_panicked"),
                    RelayError::InvalidUpdate("update could not be applied".into()),
                );
                Box::pin(self.rebuild()).await;
            }
            Applied::PendingTooLarge(size) => {
                warn!(origin = ?origin, size, "too many bytes of causally incomplete updates; refusing");
                self.refuse(
                    origin,
                    reply,
                    (close_code::POLICY, "pending_limit"),
                    RelayError::InvalidUpdate(format!(
                        "update depends on missing updates and would park {size} bytes"
                    )),
                );
                Box::pin(self.rebuild()).await;
            }
        }
    }

    /// Refuses one update: its connection is closed with `close`, an API caller gets `err`.
    fn refuse(
        &mut self,
        origin: UpdateOrigin,
        reply: Option<oneshot::Sender<Result<(), RelayError>>>,
        close: (u16, &'static str),
        err: RelayError,
    ) {
        if let UpdateOrigin::Client { conn_id } = origin {
            self.reject(conn_id, close.0, close.1, &err.to_string());
        } else {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => close.1).increment(1);
        }
        if let Some(r) = reply {
            let _ = r.send(Err(err));
        }
    }

    /// The doc may hold a refused update (half-applied on panic, or parked as pending): rebuild
    /// it from storage and re-apply the batch items accepted before (they are not stored yet).
    async fn rebuild(&mut self) {
        if let Err(e) = self.reload().await {
            error!(error = %e, "rebuilding the room failed");
            self.fail_batch(&e);
            self.dead = true;
            return;
        }
        let max_pending = self.relay.shared.config.max_pending_bytes;
        let mut kept = Vec::new();
        for p in std::mem::take(&mut self.batch) {
            match apply_update(&self.doc, &p.update, max_pending) {
                Applied::Changed | Applied::Noop => kept.push(p),
                _ => {
                    if let Some(r) = p.reply {
                        let _ =
                            r.send(Err(RelayError::Internal("update lost in a rebuild".into())));
                    }
                }
            }
        }
        self.batch = kept;
    }

    async fn reload(&mut self) -> Result<(), RelayError> {
        let loaded = load(&self.relay, &self.name).await?;
        self.doc = loaded.doc;
        self.last_seq = loaded.last_seq;
        self.log_updates = loaded.log_updates;
        self.log_bytes = loaded.log_bytes;
        self.doc_bytes = loaded.doc_bytes;
        Ok(())
    }

    fn fail_batch(&mut self, e: &RelayError) {
        for p in self.batch.drain(..) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(RelayError::Internal(e.to_string())));
            }
        }
    }

    /// Persists the batch (one durable group-commit request), then echoes and publishes it.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let to_store: Vec<Bytes> = batch
            .iter()
            .filter(|p| p.persist)
            .map(|p| p.update.clone())
            .collect();
        if !to_store.is_empty() {
            let n = to_store.len() as u64;
            let bytes: u64 = to_store.iter().map(|u| u.len() as u64).sum();
            let started = Instant::now();
            let persisting = self.relay.shared.store.append(self.name.clone(), to_store);
            match persisting.await {
                Ok(seq) => {
                    metrics::histogram!(m::PERSIST_SECONDS).record(started.elapsed().as_secs_f64());
                    self.last_seq = seq;
                    self.log_updates += n;
                    self.log_bytes += bytes;
                    self.doc_bytes += bytes;
                }
                Err(e) => {
                    // Nothing of the batch reached anyone. Clients resend on reconnect (step2).
                    error!(error = %e, updates = n, "persisting failed; closing the room's connections");
                    self.batch = batch;
                    let err = RelayError::Storage(e);
                    self.fail_batch(&err);
                    self.close_all(close_code::INTERNAL, "storage failure");
                    if let Err(e) = Box::pin(self.reload()).await {
                        error!(error = %e, "reloading after a storage failure failed");
                        self.dead = true;
                    }
                    return;
                }
            }
        }
        // Everything below runs only after the durable acknowledgement.
        let persisted: Vec<&[u8]> = batch
            .iter()
            .filter(|p| p.persist)
            .map(|p| p.update.as_ref())
            .collect();
        let merged = merged_frame(&persisted);
        drop(persisted);
        let merged_sent = merged.is_some();
        if let Some(frame) = merged {
            self.broadcast(frame);
        }
        for p in batch {
            if p.persist {
                let origin_label = match p.origin {
                    UpdateOrigin::Client { .. } => "client",
                    UpdateOrigin::Http => "http",
                    UpdateOrigin::Internal(_) => "internal",
                };
                metrics::counter!(m::UPDATES_IN_TOTAL, "origin" => origin_label).increment(1);
                metrics::counter!(m::UPDATE_BYTES_IN_TOTAL).increment(p.update.len() as u64);
                if !merged_sent {
                    let frame = Bytes::from(weaver_protocol::encode_update(&p.update));
                    self.broadcast(frame);
                }
                // Subscribers (the bridge) keep one event per update, with its origin.
                self.relay.shared.events.publish(CommittedUpdate {
                    room: self.name.clone(),
                    update: p.update,
                    origin: p.origin,
                });
            }
            if let Some(r) = p.reply {
                let _ = r.send(Ok(()));
            }
        }
        self.maybe_compact();
    }

    /// Starts a background compaction when the log is long. Runs only right after a flush,
    /// when the document equals exactly what is stored up to `last_seq`.
    fn maybe_compact(&mut self) {
        let cfg = &self.relay.shared.config;
        if self.log_updates < cfg.compact_after_updates && self.log_bytes < cfg.compact_after_bytes
        {
            return;
        }
        if self.compaction.as_ref().is_some_and(|c| !c.is_finished()) || !self.batch.is_empty() {
            return;
        }
        let doc = &self.doc;
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            (
                txn.encode_state_as_update_v1(&StateVector::default()),
                txn.state_vector(),
            )
        }));
        let Ok((snapshot, expected_sv)) = encoded else {
            error!("yrs panicked encoding a snapshot; compaction skipped");
            return;
        };
        let upto = self.last_seq;
        // After compaction the stored document is the snapshot (plus later log entries).
        self.doc_bytes = snapshot.len() as u64;
        let (updates, bytes) = (self.log_updates, self.log_bytes);
        self.log_updates = 0;
        self.log_bytes = 0;
        let store = self.relay.shared.store.clone();
        let name = self.name.clone();
        let span = tracing::Span::current();
        self.compaction = Some(tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Never replace the log with a snapshot that reads back as a smaller document.
                let check = tokio::task::spawn_blocking(move || {
                    let fresh = new_doc();
                    match apply_update(&fresh, &snapshot, usize::MAX) {
                        Applied::Changed | Applied::Noop => {}
                        _ => return Err("snapshot does not apply".to_string()),
                    }
                    let sv = fresh.transact().state_vector();
                    if sv != expected_sv {
                        return Err("snapshot state vector differs from the document's".to_string());
                    }
                    Ok(snapshot)
                })
                .await;
                let snapshot = match check {
                    Ok(Ok(s)) => s,
                    Ok(Err(reason)) => {
                        error!(reason, "compaction refused; the log is kept");
                        return;
                    }
                    Err(e) => {
                        error!(error = %e, "compaction check failed");
                        return;
                    }
                };
                let size = snapshot.len();
                match store.compact(name, upto, snapshot).await {
                    Ok(()) => {
                        metrics::counter!(m::COMPACTIONS_TOTAL).increment(1);
                        info!(
                            upto_seq = upto,
                            updates,
                            log_bytes = bytes,
                            snapshot_bytes = size,
                            "room compacted"
                        );
                    }
                    Err(e) => warn!(error = %e, "compaction failed; the log is kept"),
                }
            },
            span,
        )));
    }

    fn on_awareness(&mut self, conn_id: u64, entries: Vec<AwarenessEntry>) {
        let cfg = &self.relay.shared.config;
        let (max_state, max_clients) = (
            cfg.max_awareness_state_bytes,
            cfg.max_awareness_clients_per_conn,
        );
        if !self.conns.contains_key(&conn_id) {
            return;
        }
        let mut accepted = Vec::new();
        let mut violation = None;
        for e in entries {
            if e.state.len() > max_state {
                violation = Some("awareness state too large");
                break;
            }
            // The Yjs rule: newer clock wins; an equal clock only to remove a live state.
            let accept = match self.awareness.get(&e.client_id) {
                None => e.clock > 0,
                Some(slot) => {
                    slot.clock < e.clock
                        || (slot.clock == e.clock && e.is_removal() && slot.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            let owned = conn.clients.contains(&e.client_id);
            if !owned && !e.is_removal() && conn.clients.len() >= max_clients {
                violation = Some("too many awareness client ids");
                break;
            }
            if !owned {
                // A client id belongs to the connection that last set it: a client that
                // reconnects before its old socket is reaped must not lose its presence when
                // that socket goes. Only a first claim scans, renewals stay O(1).
                for other in self.conns.values_mut() {
                    other.clients.remove(&e.client_id);
                }
            }
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            let state = if e.is_removal() {
                conn.clients.remove(&e.client_id);
                None
            } else {
                conn.clients.insert(e.client_id);
                Some(e.state.clone())
            };
            self.awareness.insert(
                e.client_id,
                AwarenessSlot {
                    clock: e.clock,
                    state,
                },
            );
            accepted.push(e);
        }
        if let Some(v) = violation {
            self.reject(conn_id, close_code::POLICY, "awareness_limit", v);
        }
        if !accepted.is_empty() {
            let frame = Bytes::from(encode_awareness_message(&encode_awareness(&accepted)));
            self.broadcast(frame);
        }
        self.prune_awareness();
    }

    /// Removed entries keep their clock (so stale renewals are refused), but not forever.
    fn prune_awareness(&mut self) {
        const MAX_TOMBSTONES: usize = 10_000;
        if self.awareness.len() > MAX_TOMBSTONES {
            self.awareness.retain(|_, s| s.state.is_some());
        }
    }

    /// Copies of the live states; the caller parses them, off the room's task.
    fn presence(&self) -> RoomPresence {
        RoomPresence {
            connections: self.conns.len(),
            states: self
                .awareness
                .iter()
                .filter_map(|(id, slot)| Some((*id, slot.clock, slot.state.clone()?)))
                .collect(),
        }
    }

    fn all_awareness_frame(&self) -> Option<Bytes> {
        let entries: Vec<AwarenessEntry> = self
            .awareness
            .iter()
            .filter_map(|(id, s)| {
                s.state.as_ref().map(|state| AwarenessEntry {
                    client_id: *id,
                    clock: s.clock,
                    state: state.clone(),
                })
            })
            .collect();
        if entries.is_empty() {
            None
        } else {
            Some(Bytes::from(encode_awareness_message(&encode_awareness(
                &entries,
            ))))
        }
    }

    fn reject(&mut self, conn_id: u64, code: u16, reason: &'static str, detail: &str) {
        warn!(conn = conn_id, code, reason, detail, "closing connection");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
        if let Some(c) = self.conns.get(&conn_id) {
            c.link.outbox.close(code, reason);
        }
        self.remove_conn(conn_id);
    }

    /// Queues a frame to one connection; a full queue closes it (1013), never skips silently.
    fn send_to(&mut self, conn_id: u64, frame: Bytes) {
        let Some(c) = self.conns.get(&conn_id) else {
            return;
        };
        let len = frame.len() as u64;
        match c.link.outbox.push(frame) {
            Ok(()) => {
                metrics::counter!(m::MESSAGES_OUT_TOTAL).increment(1);
                metrics::counter!(m::BYTES_OUT_TOTAL).increment(len);
            }
            Err(PushError::Full) => self.slow_consumer(conn_id),
            Err(PushError::Gone) => self.remove_conn(conn_id),
        }
    }

    /// Sends one shared frame to every connection (sender included, as the reference server).
    fn broadcast(&mut self, frame: Bytes) {
        let mut failed = Vec::new();
        for (id, c) in &self.conns {
            match c.link.outbox.push(frame.clone()) {
                Ok(()) => {}
                Err(PushError::Full) => failed.push((*id, true)),
                Err(PushError::Gone) => failed.push((*id, false)),
            }
        }
        let delivered = (self.conns.len() - failed.len()) as u64;
        metrics::counter!(m::MESSAGES_OUT_TOTAL).increment(delivered);
        metrics::counter!(m::BYTES_OUT_TOTAL).increment(delivered * frame.len() as u64);
        for (id, full) in failed {
            if full {
                self.slow_consumer(id);
            } else {
                self.remove_conn(id);
            }
        }
    }

    fn slow_consumer(&mut self, conn_id: u64) {
        warn!(conn = conn_id, "outbound queue full; closing slow consumer");
        metrics::counter!(m::SLOW_CONSUMER_CLOSES_TOTAL).increment(1);
        if let Some(c) = self.conns.get(&conn_id) {
            c.link
                .outbox
                .close(close_code::SLOW_CONSUMER, "slow consumer");
        }
        self.remove_conn(conn_id);
    }

    /// Forgets a connection and tells the others its awareness states are gone.
    fn remove_conn(&mut self, conn_id: u64) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        debug!(conn = conn_id, conns = self.conns.len(), "connection left");
        let mut gone = Vec::new();
        for client in conn.clients {
            if let Some(slot) = self.awareness.get_mut(&client)
                && slot.state.take().is_some()
            {
                gone.push(AwarenessEntry {
                    client_id: client,
                    clock: slot.clock,
                    state: "null".into(),
                });
            }
        }
        if !gone.is_empty() && !self.conns.is_empty() {
            // Recursion through broadcast → remove_conn is bounded by the number of connections.
            self.broadcast(Bytes::from(encode_awareness_message(&encode_awareness(
                &gone,
            ))));
        }
    }

    fn close_all(&mut self, code: u16, reason: &'static str) {
        for (_, c) in self.conns.drain() {
            c.link.outbox.close(code, reason);
        }
    }
}

/// Every way a room ends closes the connections it still has (normally none are left): a
/// connection only learns that its room is gone through its outbox, including when the room
/// task panicked.
impl Drop for Room {
    fn drop(&mut self) {
        self.close_all(close_code::INTERNAL, "room closed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::UpdateRate;

    fn rate_after(n: u32, gap: Duration) -> f64 {
        let mut r = UpdateRate::new();
        let mut t = Instant::now();
        for _ in 0..n {
            t += gap;
            r.add(t);
        }
        r.per_second(t)
    }

    #[test]
    fn a_steady_stream_measures_its_rate() {
        // Typing (20/s), a 500/s stream and a storm (10,000/s) against the 2,000/s default.
        assert!(rate_after(100, Duration::from_millis(50)) < 100.0);
        let steady = rate_after(200, Duration::from_millis(2));
        assert!((400.0..600.0).contains(&steady), "{steady}");
        assert!(steady < f64::from(crate::DEFAULT_HOLD_ABOVE_RATE));
        let storm = rate_after(1000, Duration::from_micros(100));
        assert!(storm > 8_000.0, "{storm}");
    }

    #[test]
    fn a_storm_starts_above_the_threshold_and_ends_below_half_of_it() {
        use super::storm;
        assert!(!storm(false, 1_999.0, 2_000));
        assert!(storm(false, 2_000.0, 2_000));
        assert!(storm(true, 1_200.0, 2_000));
        assert!(!storm(true, 999.0, 2_000));
        // A steady 500/s stream is never a storm, even right after one.
        assert!(!storm(true, 500.0, 2_000));
    }

    #[test]
    fn the_rate_decays_when_updates_stop() {
        let mut r = UpdateRate::new();
        let mut t = Instant::now();
        for _ in 0..1000 {
            t += Duration::from_micros(100);
            r.add(t);
        }
        assert!(r.per_second(t) > 8_000.0);
        // 100 ms of silence is five time constants: the storm is over.
        assert!(r.per_second(t + Duration::from_millis(100)) < 100.0);
    }
}
