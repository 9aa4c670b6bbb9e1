//! Cluster mode: one notifier per cluster (the caller runs it while it holds the cluster's
//! `notifier` role), fed by a durable [`Feed`] over every room's stored changes and recording
//! into a shared [`Ledger`] (written under the leader's epoch).
//!
//! A feed message is acknowledged only once the ledger covers it: its room's seq (or a later
//! one) was delivered or refused for good, or the room's deletion was recorded. So a leader
//! that dies leaves every unannounced change unacknowledged for the next one, which reads the
//! ledger before sending and skips every seq it covers: nothing is lost, and a seq already
//! recorded is never sent again. (A leader killed after the receiver answered but before the
//! ledger write leaves that one seq to be sent again, with the same `webhook-id`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::PENDING;
use crate::engine::{Scheduler, Settled, sleep_until_opt};
use crate::error::Chain;
use crate::input::{Feed, FeedChange, FeedItem};
use crate::ledger::{Ledger, LedgerError};

/// How long a stopping notifier waits for its deliveries in flight to be recorded. Nothing new
/// is sent once stopped, and should a next term already write the ledger, its writes win (the
/// ledger refuses an older epoch), so the wait cannot repeat or reorder a seq.
const DRAIN: Duration = Duration::from_millis(500);

/// Highest seq seen per room, read by the deliveries.
pub(crate) type Latest = Arc<Mutex<HashMap<Arc<str>, u64>>>;

pub(crate) struct ClusterLoop<F: Feed, L: Ledger> {
    pub(crate) sched: Scheduler<L>,
    pub(crate) feed: F,
    pub(crate) latest: Latest,
    /// Per room, the feed messages not acknowledged yet and the seq each carries.
    pub(crate) unacked: HashMap<Arc<str>, Vec<(u64, F::Ack)>>,
}

impl<F: Feed, L: Ledger> ClusterLoop<F, L> {
    pub(crate) async fn run(
        mut self,
        stop: CancellationToken,
        started: tokio::sync::watch::Sender<bool>,
    ) {
        started.send_replace(true);
        let cfg = self.sched.cfg();
        info!(url = %cfg.url, prefix = %cfg.prefix, signed = cfg.secret.is_some(), "room notifications on (cluster)");
        loop {
            self.sched.start_due();
            let next_due = self.sched.next_due();
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                (room, tries, outcome) = self.sched.join_next() => {
                    match self.sched.finished(room.clone(), tries, outcome) {
                        Settled::Upto(seq) => self.ack_upto(&room, seq).await,
                        Settled::Unknown => {}
                        Settled::Superseded => {
                            warn!("room notifications: a newer notifier owns the ledger; stopping");
                            break;
                        }
                    }
                }
                item = self.feed.next() => match item {
                    Ok(Some(item)) => {
                        if !self.handle(item).await {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %Chain(&e), "room notifications: the change feed failed; stopping");
                        break;
                    }
                },
                _ = sleep_until_opt(next_due) => {}
            }
            metrics::gauge!(PENDING).set(self.sched.load() as f64);
        }
        // Deliveries already sent get a moment to be recorded (and acknowledged): a receiver
        // that answered before the term ended should not get the same seq from the next one.
        // Whatever is still out after that is abandoned, unacknowledged.
        let drain = tokio::time::sleep(DRAIN);
        tokio::pin!(drain);
        while self.sched.in_flight() > 0 {
            tokio::select! {
                () = &mut drain => break,
                (room, tries, outcome) = self.sched.join_next() => {
                    if let Settled::Upto(seq) = self.sched.finished(room.clone(), tries, outcome) {
                        self.ack_upto(&room, seq).await;
                    }
                }
            }
        }
        self.sched.abort_all();
    }

    /// One feed message; false when the notifier must stop.
    async fn handle(&mut self, item: FeedItem<F::Ack>) -> bool {
        let FeedItem { change, ack } = item;
        let prefix = self.sched.cfg().prefix.as_str();
        match change {
            FeedChange::Changed { room, seq } if room.starts_with(prefix) => {
                {
                    let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
                    let at = latest.entry(room.clone()).or_insert(0);
                    *at = (*at).max(seq);
                }
                self.unacked
                    .entry(room.clone())
                    .or_default()
                    .push((seq, ack));
                self.sched.touch(room);
            }
            FeedChange::Deleted { room, last_seq } if room.starts_with(prefix) => {
                match self.sched.ledger().deleted(&room, last_seq).await {
                    Ok(()) => {}
                    Err(LedgerError::Superseded) => {
                        warn!(room = %room, "room notifications: a newer notifier owns the ledger; stopping");
                        return false;
                    }
                    Err(e) => {
                        // Left unacknowledged: the feed delivers it again.
                        warn!(room = %room, error = %Chain(&e), "room notifications: could not record a room's deletion");
                        return true;
                    }
                }
                {
                    let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
                    let at = latest.entry(room.clone()).or_insert(0);
                    *at = (*at).max(last_seq);
                }
                self.ack(ack).await;
                self.ack_upto(&room, last_seq).await;
            }
            // Another prefix, or a record without seqs: nothing to announce.
            _ => self.ack(ack).await,
        }
        true
    }

    async fn ack(&self, ack: F::Ack) {
        if let Err(e) = self.feed.ack(ack).await {
            // Not acknowledged: delivered again later, and then covered by the ledger.
            warn!(error = %Chain(&e), "room notifications: acknowledging a feed message failed");
        }
    }

    /// Acknowledges every message of `room` the ledger now covers (up to `seq`), and forgets
    /// the room once nothing of it is left.
    async fn ack_upto(&mut self, room: &Arc<str>, seq: u64) {
        let Some(list) = self.unacked.get_mut(room) else {
            self.forget_if_settled(room, seq);
            return;
        };
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(list)
            .into_iter()
            .partition(|(s, _)| *s <= seq);
        *list = keep;
        if list.is_empty() {
            self.unacked.remove(room);
        }
        for (_, ack) in done {
            self.ack(ack).await;
        }
        self.forget_if_settled(room, seq);
    }

    /// Keeps `latest` to the rooms with something unsettled.
    fn forget_if_settled(&mut self, room: &Arc<str>, seq: u64) {
        if self.unacked.contains_key(room) {
            return;
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.get(room).is_some_and(|at| *at <= seq) {
            latest.remove(room);
        }
    }
}
