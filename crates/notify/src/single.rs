//! Single-node mode: the input is the relay event stream, the ledger the `notify_*` redb
//! tables, and a start-up scan (and one after the stream lagged) compares every stored room's
//! seq with the ledger, so what a crash left unsent goes out then.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use weaver_relay::{RecvError, RelayEvent, RelayHandle};

use crate::engine::{Scheduler, sleep_until_opt};
use crate::error::Chain;
use crate::ledger::Ledger;
use crate::redb_ledger::RedbLedger;
use crate::{NotifyError, PENDING};

/// Page size of start-up scans over the stored rooms.
const SCAN_PAGE: usize = 1000;

pub(crate) struct Single {
    pub(crate) sched: Scheduler<RedbLedger>,
    pub(crate) relay: RelayHandle,
}

impl Single {
    pub(crate) async fn run(
        mut self,
        fresh: bool,
        mut events: weaver_relay::EventReceiver,
        shutdown: CancellationToken,
        started: tokio::sync::watch::Sender<bool>,
    ) {
        let scan = async {
            if fresh {
                self.baseline().await?;
            }
            self.rescan().await
        };
        let scanned = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = scan => r,
        };
        if let Err(e) = scanned {
            // Not fatal: live changes are still announced; the next start scans again.
            warn!(error = %Chain(&e), "room notifications: start-up scan failed");
        }
        started.send_replace(true);
        let cfg = self.sched.cfg();
        info!(url = %cfg.url, prefix = %cfg.prefix, signed = cfg.secret.is_some(), "room notifications on");
        loop {
            // A stop that arrived while another branch ran must not start what came due.
            if shutdown.is_cancelled() {
                break;
            }
            self.sched.start_due();
            let next_due = self.sched.next_due();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(RelayEvent::Committed(u)) => self.sched.touch(u.room),
                    Ok(RelayEvent::Deleted { room }) => self.forget(room).await,
                    Ok(RelayEvent::Unloaded { .. }) => {}
                    // A deletion may be among the missed events: the scan compares every room.
                    Err(RecvError::Lagged(n)) => {
                        warn!(missed = n, "room notifications fell behind the relay; rescanning");
                        let r = tokio::select! {
                            _ = shutdown.cancelled() => break,
                            r = self.rescan() => r,
                        };
                        if let Err(e) = r {
                            warn!(error = %Chain(&e), "room notifications: rescan failed");
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                (room, tries, outcome) = self.sched.join_next() => {
                    self.sched.finished(room, tries, outcome);
                }
                _ = sleep_until_opt(next_due) => {}
            }
            metrics::gauge!(PENDING).set(self.sched.load() as f64);
        }
        self.sched.abort_all();
    }

    /// `room` was deleted: its seqs restart at 1, so its generation moves on (new
    /// `webhook-id`s) and its recorded seq is cleared. A pending or in-flight delivery stays:
    /// it reads the room's seq when it runs (0: nothing to send; a re-created room: its new
    /// content), and an in-flight one does not record under the old generation.
    async fn forget(&mut self, room: Arc<str>) {
        if !room.starts_with(self.sched.cfg().prefix.as_str()) {
            return;
        }
        if self.sched.ledger().deleted(&room, 0).await.is_err() {
            warn!(room = %room, "room notifications: could not record a room's deletion");
        }
    }

    /// Every stored room in the prefix, page by page: `(name, last_seq)`.
    async fn stored_rooms(&self) -> Result<Vec<(String, u64)>, NotifyError> {
        let prefix = self.sched.cfg().prefix.clone();
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .relay
                .room_seqs(&prefix, after.as_deref(), SCAN_PAGE)
                .await?;
            let full = page.len() == SCAN_PAGE;
            after = page.last().map(|(n, _)| n.clone());
            out.extend(page.into_iter().filter(|(_, seq)| *seq > 0));
            if !full {
                return Ok(out);
            }
        }
    }

    /// First start: record every room's seq as delivered, and the marker that says so.
    async fn baseline(&mut self) -> Result<(), NotifyError> {
        let rooms = self.stored_rooms().await?;
        let n = rooms.len();
        self.sched.ledger().baseline(rooms).await?;
        info!(
            rooms = n,
            "room notifications enabled: existing rooms recorded, changes from now on are announced"
        );
        Ok(())
    }

    /// Schedules every room whose seq moved since its last delivery (a crash, a restart, a
    /// lag), and clears the recorded seq of rooms in the prefix that are gone.
    async fn rescan(&mut self) -> Result<(), NotifyError> {
        let rooms = self.stored_rooms().await?;
        let prefix = self.sched.cfg().prefix.clone();
        let (stale, gone) = self.sched.ledger().compare(rooms, prefix).await?;
        if !gone.is_empty() {
            // Deleted while the notifier was not looking: the same as `forget`.
            self.sched.ledger().forget_all(gone).await?;
        }
        if !stale.is_empty() {
            info!(
                rooms = stale.len(),
                "room notifications: announcing rooms changed while not delivered"
            );
        }
        for name in stale {
            self.sched.due_now(Arc::from(name));
        }
        Ok(())
    }
}
