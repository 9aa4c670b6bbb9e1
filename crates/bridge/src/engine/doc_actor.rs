//! The document actor: the one task that owns the bridge's mirrors of rooms. Its loop takes
//! the host's events (committed updates in bursts, deletions, unloads, lag) and the handle's
//! commands, and runs the debounce, the write-back queue and idle eviction on timers.
//!
//! What it does with them lives next door: `mirror` (load and apply), `reconcile` (rules),
//! `writeback`, `manual` (manual retry).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::Inner;
use super::debounce::Debounce;
use super::manual::RetryError;
use super::mirror::{MIRROR_IDLE, Mirror};
use super::sweep::SweepQueue;
use super::writeback::{WRITEBACK_RETRY, WritebackFailures};
use crate::host::{HostEvent, UpdateStream};
use crate::model::ApiCall;

/// Commands to the document actor.
pub(crate) enum DocCmd {
    /// New rows in `bridge_writeback`.
    Writebacks,
    /// Manual retry: request attempt N+1 for the entry of this call.
    Retry {
        call_id: Uuid,
        reply: oneshot::Sender<Result<ApiCall, RetryError>>,
    },
}

/// Most host events absorbed into one burst (rules run once per burst).
const BURST: usize = 512;

pub(super) struct DocActor {
    pub(super) inner: Arc<Inner>,
    /// Mirrors of the rooms with bridge content that the bridge is following now.
    pub(super) rooms: HashMap<String, Mirror>,
    /// Rooms with bridge content whose mirror was dropped (the host unloaded the room, it sat
    /// idle, or a rebuild failed): their next update reloads and re-sweeps them. Every other
    /// room without a mirror is known to have nothing under `blocks` (swept at start-up, or
    /// every committed update of it seen without the marker), so its updates are skipped
    /// unless they carry the marker (`mirror::may_touch_blocks`).
    pub(super) unmirrored: HashSet<Box<str>>,
    /// Stored rooms not yet checked for bridge content (start-up, lag): worked a batch per
    /// turn of the loop (`sweep.rs`). Until checked, a room's every update loads it.
    pub(super) sweep: SweepQueue,
    /// Blocks whose content changed: the re-index debounce.
    pub(super) dirty: Debounce,
    /// Rooms whose write-backs the host refused: the write-back backoff.
    pub(super) wb_failures: WritebackFailures,
}

impl DocActor {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        let dirty = Debounce::new(&inner.cfg.debounce);
        Self {
            inner,
            rooms: HashMap::new(),
            unmirrored: HashSet::new(),
            sweep: SweepQueue::default(),
            dirty,
            wb_failures: WritebackFailures::default(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut stream: Box<dyn UpdateStream>,
        mut rx: mpsc::UnboundedReceiver<DocCmd>,
    ) {
        let shutdown = self.inner.shutdown.clone();
        // Only the names are read here; which rooms hold bridge work is found out a batch per
        // turn below, so start-up costs no document loads.
        match self.inner.host.stored_rooms().await {
            Ok(rooms) => {
                tracing::info!(rooms = rooms.len(), "bridge start-up sweep queued");
                self.sweep.extend(rooms);
            }
            Err(e) => tracing::error!(error = %e, "bridge cannot list stored rooms"),
        }
        let mut wb_retry: Option<Instant> = Some(Instant::now());
        loop {
            let deadline = self.next_deadline(wb_retry);
            tokio::select! {
                // Live events and commands before the timers, which include the sweep's turn.
                biased;
                () = shutdown.cancelled() => break,
                ev = stream.next() => {
                    // Absorb what else is already queued so rules run once per burst, with all
                    // missing calls created in one transaction.
                    let mut batch = vec![ev];
                    while batch.len() < BURST {
                        match tokio::time::timeout(Duration::ZERO, stream.next()).await {
                            Ok(ev) => batch.push(ev),
                            Err(_) => break,
                        }
                    }
                    if self.host_events(batch).await.is_break() {
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
            if !self.sweep.is_empty() {
                self.sweep_batch().await;
            }
        }
        tracing::info!("bridge document actor stopped");
    }

    /// Handles one burst of host events; `Break` when the host shut down.
    async fn host_events(&mut self, batch: Vec<Option<HostEvent>>) -> std::ops::ControlFlow<()> {
        let mut to_drain = BTreeSet::new();
        let mut host_gone = false;
        for ev in batch {
            match ev {
                Some(HostEvent::Update {
                    room,
                    update,
                    origin,
                }) => {
                    if self.apply_committed(&room, &update, &origin).await {
                        to_drain.insert(room);
                    }
                }
                Some(HostEvent::RoomDeleted { room }) => {
                    to_drain.remove(&room);
                    self.room_deleted(&room).await;
                }
                Some(HostEvent::RoomUnloaded { room }) => {
                    let busy = to_drain.contains(&room) || self.dirty.has_room(&room);
                    if !busy {
                        self.drop_mirror(&room);
                    } else if let Some(m) = self.rooms.get_mut(&room) {
                        // Changes still to drain or a re-index pending: `evict_idle` drops it
                        // once they are done.
                        m.host_unloaded = true;
                    }
                }
                Some(HostEvent::Lagged) => {
                    to_drain.clear();
                    self.lagged().await;
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
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    }

    /// Updates were lost, possibly for rooms without a mirror too: rebuild the mirrors now and
    /// queue every other stored room for the sweep, as at start-up.
    async fn lagged(&mut self) {
        tracing::warn!("bridge lagged behind the host; rebuilding mirrors");
        let mut rooms: BTreeSet<String> = self.rooms.keys().cloned().collect();
        rooms.extend(self.unmirrored.drain().map(String::from));
        self.rooms.clear();
        for room in &rooms {
            self.sweep_stored_room(room, "rebuilding mirror failed")
                .await;
        }
        match self.inner.host.stored_rooms().await {
            Ok(stored) => self
                .sweep
                .extend(stored.into_iter().filter(|r| !rooms.contains(r))),
            Err(e) => tracing::warn!(error = %e, "cannot list stored rooms after lag"),
        }
    }

    /// The host deleted `room`: cancel its unfinished calls, drop its mirror, debounce state and
    /// queued write-backs, so nothing of the old room is written into it again. Calls that
    /// finish later are terminal already (`late_result_ignored`), so they queue nothing.
    async fn room_deleted(&mut self, room: &str) {
        self.rooms.remove(room);
        self.unmirrored.remove(room);
        self.sweep.take(room);
        self.dirty.forget_room(room);
        self.wb_failures.forget(room);
        let calls = self.non_terminal_calls(room, None).await;
        for c in &calls {
            self.cancel(c, "room deleted").await;
        }
        let dropped = self.forget_writebacks(room).await;
        tracing::info!(
            room,
            cancelled = calls.len(),
            writebacks_dropped = dropped,
            "room deleted: bridge dropped its calls, mirror and write-backs"
        );
    }

    /// Drops mirrors of rooms nobody touched for `MIRROR_IDLE` (and with no pending re-index),
    /// bounding memory to the rooms in use; everything needed is in the store.
    fn evict_idle(&mut self) {
        let now = Instant::now();
        let dirty_rooms = self.dirty.rooms();
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

    /// When the loop must wake at the latest: a debounce firing, a write-back retry, or the
    /// idle check.
    fn next_deadline(&self, wb_retry: Option<Instant>) -> Option<Instant> {
        let idle_check = Instant::now() + Duration::from_secs(60);
        // The sweep's next batch runs at the end of this turn: do not wait for it.
        let sweep = (!self.sweep.is_empty()).then(Instant::now);
        [self.dirty.next_deadline(), wb_retry, sweep]
            .into_iter()
            .flatten()
            .min()
            .map_or(Some(idle_check), |t| Some(t.min(idle_check)))
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
