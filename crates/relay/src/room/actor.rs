//! The room task: loads the room, then serves its inbox until shutdown, deletion, storage failure
//! or idle unload. It owns the yrs `Doc`, the awareness states and the connections' queues.
//!
//! The order of work is the durability contract: a batch of client updates is applied,
//! persisted in one request to the group-commit persister, and only after the durable
//! acknowledgement echoed to every connection (sender included) and published as events.
//! Anything that reveals document state (step1/step2, HTTP reads) first flushes the batch, so
//! nobody ever sees a change that is not on disk.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

use super::RoomDeps;
use super::apply::load;
use super::awareness::AwarenessSlot;
use super::cmd::{ConnLink, RoomCmd, RoomMsg};
use super::conn_map::ConnMap;
use super::hold::UpdateRate;
use super::inbox::InboxReceiver;
use super::registry::Registry;
use crate::error::{RelayError, close_code};
use crate::events::UpdateOrigin;
use crate::metrics as m;
use crate::placement::{OwnerGuard, Placement};

pub(super) struct ConnState {
    pub(super) link: ConnLink,
    /// Awareness client ids this connection published (nulled when it leaves).
    pub(super) clients: HashSet<u64>,
}

pub(super) struct Pending {
    pub(super) update: Bytes,
    pub(super) origin: UpdateOrigin,
    /// False for updates that changed nothing: they are acknowledged with the batch but neither
    /// stored nor echoed.
    pub(super) persist: bool,
    pub(super) reply: Option<oneshot::Sender<Result<(), RelayError>>>,
    /// The sending connection gets `ACK_FRAME` after the commit.
    pub(super) ack: bool,
}

pub(super) struct Room {
    pub(super) deps: Arc<RoomDeps>,
    pub(super) name: Arc<str>,
    pub(super) doc: Doc,
    pub(super) conns: ConnMap<ConnState>,
    pub(super) awareness: HashMap<u64, AwarenessSlot>,
    pub(super) batch: Vec<Pending>,
    pub(super) last_seq: u64,
    pub(super) log_updates: u64,
    pub(super) log_bytes: u64,
    /// Estimated stored size of the document (snapshot + log), for the size limit.
    pub(super) doc_bytes: u64,
    pub(super) compaction: Option<JoinHandle<()>>,
    /// Smoothed rate of document-changing updates, which decides whether batches are held.
    pub(super) rate: UpdateRate,
    /// Whether the last batch was held: a storm keeps being held until its rate falls to half
    /// the threshold (hysteresis), so a storm whose rate wavers around the threshold does not
    /// flip between holding and committing every update.
    pub(super) holding: bool,
    /// Set when the room cannot continue (storage failed and reload failed).
    pub(super) dead: bool,
    /// This node's right to run the room (cluster mode: a lease; never fenced on one node).
    pub(super) owner: Option<OwnerGuard>,
    /// Set once the owner guard failed: nothing is committed or broadcast any more.
    pub(super) fenced: bool,
    /// The room's newest stored version, as far as the room knows (versions.rs).
    pub(super) head: super::versions::Head,
    /// The store write of the version being taken, if any (versions.rs).
    pub(super) version_task: Option<Box<super::versions::PendingVersion>>,
}

/// How soon an idle room tries again to unload when a command arrived just as it tried.
const IDLE_RECHECK: std::time::Duration = std::time::Duration::from_millis(10);

/// The room task: load, then serve commands until shutdown, deletion, failure or idle unload.
pub(crate) async fn run(
    registry: Arc<Registry>,
    name: Arc<str>,
    generation: u64,
    mut rx: InboxReceiver<RoomMsg>,
) {
    let deps = registry.deps().clone();
    let started = Instant::now();
    // Placed before anything is loaded: a room owned by another node never loads here.
    let placed = Box::pin(deps.config.placement.place(&name)).await;
    let owner = match placed {
        Ok(Placement::Local(guard)) => guard,
        Ok(Placement::Remote(remote)) => {
            registry.unregister(&name, generation, &rx, false);
            rx.close();
            while let Some(cmd) = rx.try_recv() {
                cmd.bounce(|| RelayError::Remote(remote.clone()));
            }
            return;
        }
        Err(e) => {
            error!(error = %e, "room could not be placed");
            let e = Arc::new(e);
            registry.unregister(&name, generation, &rx, false);
            rx.close();
            while let Some(cmd) = rx.try_recv() {
                cmd.bounce(|| RelayError::Placement(e.clone()));
            }
            return;
        }
    };
    // Boxed, like every rare or large await of the room (rebuilds, deletion, the persist
    // request): a task's memory is its future's largest state, held for the room's whole life.
    let loaded = Box::pin(load(&deps, &name)).await;
    let loaded = match loaded {
        Ok(v) => v,
        Err(e) => {
            error!(error = %e, "room failed to load");
            registry.unregister(&name, generation, &rx, false);
            deps.store.unloaded(&name);
            owner.release().await;
            rx.close();
            let overloaded = matches!(e, RelayError::Overloaded(_));
            while let Some(cmd) = rx.try_recv() {
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
        deps: deps.clone(),
        name: name.clone(),
        doc: loaded.doc,
        conns: ConnMap::new(),
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
        fenced: false,
        owner: None,
        head: super::versions::Head::default(),
        version_task: None,
    };
    // Polled only when the guard can fire: a single node's rooms wait on nothing more.
    let can_fence = owner.can_fence();
    let fenced = owner.fenced().clone();
    room.owner = Some(owner);
    room.maybe_compact();
    let cancel = deps.cancel.clone();
    let idle = deps.config.idle_unload;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    let exit_reason: &str;
    loop {
        tokio::select! {
            biased;
            _ = fenced.cancelled(), if can_fence => {
                // Another node may own the room soon: stop at once, commit nothing more.
                room.fenced = true;
                exit_reason = "fenced";
                break;
            }
            _ = cancel.cancelled() => {
                // Updates already received are applied and committed before the room closes:
                // shutdown loses nothing the server has read off a socket.
                rx.close();
                while let Some(cmd) = rx.try_recv() {
                    match *cmd {
                        cmd @ (RoomCmd::ClientUpdate { .. } | RoomCmd::Apply { .. } | RoomCmd::Leave { .. }) => {
                            room.handle(cmd).await;
                        }
                        other => other.bounce(|| RelayError::ShuttingDown),
                    }
                }
                room.flush().await;
                room.close_all(close_code::SHUTDOWN, "server shutting down");
                registry.unregister(&name, generation, &rx, false);
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
                    used |= !matches!(*cmd, RoomCmd::Presence { .. } | RoomCmd::Loaded { .. });
                    if cmd.needs_flush() {
                        room.flush().await;
                    }
                    if room.handle(*cmd).await {
                        deleted = true;
                        break;
                    }
                    budget -= 1;
                    if budget > 0 {
                        next = rx.try_recv();
                    }
                }
                if !deleted && room.should_hold() {
                    deleted = Box::pin(room.hold(&mut rx, &cancel)).await;
                }
                room.flush().await;
                if deleted {
                    registry.unregister(&name, generation, &rx, false);
                    exit_reason = "deleted";
                    break;
                }
                if room.fenced {
                    exit_reason = "fenced";
                    break;
                }
                if room.dead {
                    room.close_all(close_code::INTERNAL, "room storage failed");
                    registry.unregister(&name, generation, &rx, false);
                    exit_reason = "storage failure";
                    break;
                }
                if used {
                    idle_deadline = tokio::time::Instant::now() + idle;
                }
            }
            _ = tokio::time::sleep_until(idle_deadline), if room.conns.is_empty() => {
                if registry.unregister(&name, generation, &rx, true) {
                    exit_reason = "idle";
                    break;
                }
                // Something was queued. If it is real use, handling it restarts the idle
                // period; if it is only a presence poll, the room may unload right after it.
                idle_deadline = tokio::time::Instant::now() + IDLE_RECHECK;
            }
        }
    }
    if room.fenced {
        warn!("ownership of the room lost; closing its connections");
        room.fail_batch(&RelayError::Unavailable(name.to_string()));
        room.close_all(close_code::SHUTDOWN, "room moved to another node");
        registry.unregister(&name, generation, &rx, false);
    }
    rx.close();
    while let Some(cmd) = rx.try_recv() {
        if cancel.is_cancelled() {
            cmd.bounce(|| RelayError::ShuttingDown);
        } else {
            cmd.bounce(|| RelayError::Unavailable(name.to_string()));
        }
    }
    if let Some(c) = room.compaction.take() {
        let _ = c.await;
    }
    if let Some(v) = room.version_task.take() {
        let _ = v.task.await;
    }
    // Forget the room's storage state before the lease goes: once released, another node may
    // append, and nothing here may act on the tip this node knew.
    deps.store.unloaded(&name);
    if let Some(owner) = room.owner.take() {
        owner.release().await;
    }
    metrics::gauge!(m::ROOMS_LOADED).decrement(1.0);
    info!(reason = exit_reason, "room unloaded");
}

impl Room {
    /// Handles one command. Returns true when the room was deleted and must stop.
    pub(super) async fn handle(&mut self, cmd: RoomCmd) -> bool {
        // Not even a sync reply or an awareness relay once the lease is gone: a paused owner
        // that wakes up past its lease must not show its clients anything (the actor then
        // stops and closes them with 1012).
        if !self.owns() {
            // Callers retry; the room is placed again, possibly on another node.
            cmd.bounce(|| RelayError::Unavailable(self.name.to_string()));
            return false;
        }
        match cmd {
            RoomCmd::Join { link, reply } => {
                self.join(link);
                let _ = reply.send(Ok(()));
            }
            RoomCmd::Leave { conn_id } => self.remove_conn(conn_id),
            RoomCmd::SyncStep1 { conn_id, sv } => self.sync_step1(conn_id, &sv),
            RoomCmd::ClientUpdate {
                conn_id,
                update,
                ack,
            } => {
                if self.conns.contains_key(&conn_id) {
                    let queued = self.batch.len();
                    self.apply(update, UpdateOrigin::Client { conn_id }, None)
                        .await;
                    // An update the room took is the one entry added to the batch; a refused
                    // one added none (its connection is closed instead).
                    if ack
                        && self.batch.len() == queued + 1
                        && let Some(p) = self.batch.last_mut()
                    {
                        p.ack = true;
                    }
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
            RoomCmd::Loaded { reply } => {
                let _ = reply.send(Ok(()));
            }
            RoomCmd::Presence { reply } => {
                let _ = reply.send(self.presence());
            }
            RoomCmd::Delete { reply } => {
                Box::pin(self.delete(reply)).await;
                return true;
            }
            RoomCmd::TakeVersion { label, reply } => {
                Box::pin(self.take_explicit_version(label, reply)).await;
            }
            RoomCmd::Restore { id, reply } => {
                let restored = Box::pin(self.restore(&id)).await;
                let _ = reply.send(restored);
            }
        }
        false
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
    pub(super) fn encode_state(&mut self, sv: Option<&[u8]>) -> Result<Vec<u8>, RelayError> {
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

    /// Persists the batch (one durable group-commit request), then echoes and publishes it.
    pub(super) async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if !self.owns() {
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
            let persisting = self.deps.store.append(self.name.clone(), to_store);
            match persisting.await {
                Ok(seq) => {
                    metrics::histogram!(m::PERSIST_SECONDS).record(started.elapsed().as_secs_f64());
                    self.last_seq = seq;
                    self.log_updates += n;
                    self.log_bytes += bytes;
                    self.doc_bytes += bytes;
                }
                Err(e) if e.is_fenced() => {
                    // Another node owns the room now: step down. Its clients reconnect (1012),
                    // possibly to the new owner, and resend what was not acknowledged; the store
                    // is not failed.
                    warn!(error = %e, updates = n, "room taken over by another writer; stepping down");
                    self.batch = batch;
                    self.fail_batch(&RelayError::Storage(e));
                    self.close_all(close_code::SHUTDOWN, "room moved to another node");
                    self.dead = true;
                    return;
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
        // Everything below runs only after the durable acknowledgement, and only while this
        // node still owns the room: a fenced owner broadcasts nothing (its clients resync from
        // the new owner, where the update is durable).
        self.batch = batch;
        if !self.owns() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.committed(batch);
        self.maybe_compact();
        if self.version_due() {
            Box::pin(self.maybe_take_auto_version()).await;
        }
    }
}

impl Room {
    /// Whether this node may still commit and broadcast for the room; once not, marks the room
    /// fenced and answers the batch's waiters (the actor then stops).
    pub(super) fn owns(&mut self) -> bool {
        if !self.fenced && self.owner.as_ref().is_none_or(OwnerGuard::check) {
            return true;
        }
        self.fenced = true;
        self.fail_batch(&RelayError::Unavailable(self.name.to_string()));
        false
    }
}

/// Every way a room ends closes the connections it still has (normally none are left): a
/// connection only learns that its room is gone through its queue, including when the room
/// task panicked.
impl Drop for Room {
    fn drop(&mut self) {
        self.close_all(close_code::INTERNAL, "room closed");
    }
}
