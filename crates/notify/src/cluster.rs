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
//!
//! Fencing: the term's [`TermClock`] is asked before every send and every ledger write (in
//! `engine.rs` and here), at every turn of the loop (a term past its lease ends, told or not),
//! and it caps the drain at the end. So a term whose lease ran out while a newer one runs
//! (paused, or not stopped yet) neither sends nor records.
//!
//! Per room only the newest message stays unacknowledged: a webhook says "changed up to seq
//! S", so an older message of the same room is acknowledged as superseded when a newer one
//! arrives. What the notifier holds, and what the feed's server keeps pending for it, is
//! bounded by the rooms waiting for a delivery, not by how often they changed or were
//! delivered again.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::PENDING;
use crate::engine::{Scheduler, Settled, sleep_until_opt};
use crate::error::Chain;
use crate::input::{Feed, FeedChange, FeedItem};
use crate::ledger::{Ledger, LedgerError};

/// How long a stopping notifier waits for its deliveries in flight to be recorded, at most:
/// never past the term's lease (the clock caps it, and every record checks it). Nothing new
/// is sent once stopped, and should a next term already write the ledger, its writes win (the
/// ledger refuses an older epoch), so the wait cannot repeat or reorder a seq.
const DRAIN: Duration = Duration::from_millis(500);

/// When a room's deletion could not be recorded, its message comes back after this long.
const DELETION_RETRY: Duration = Duration::from_secs(1);

/// Highest seq seen per room, read by the deliveries.
pub(crate) type Latest = Arc<Mutex<HashMap<Arc<str>, u64>>>;

pub(crate) struct ClusterLoop<F: Feed, L: Ledger> {
    pub(crate) sched: Scheduler<L>,
    pub(crate) feed: F,
    pub(crate) latest: Latest,
    /// Per room, the one feed message not acknowledged yet (the newest) and its seq.
    pub(crate) unacked: HashMap<Arc<str>, (u64, F::Ack)>,
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
            // Checked before anything starts: a stopped term, or one past its lease, that
            // was not woken by `stop` (a paused process) must not send what came due.
            if stop.is_cancelled() {
                break;
            }
            let Some(left) = self.sched.clock().remaining().filter(|l| !l.is_zero()) else {
                warn!("room notifications: this term's lease ran out; stopping");
                break;
            };
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
                        Settled::Fenced => {
                            warn!("room notifications: this term's lease ran out; stopping");
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
                // Wakes an idle loop when the lease would run out (a renewal moves it on).
                _ = tokio::time::sleep(left) => {}
            }
            metrics::gauge!(PENDING).set(self.sched.load() as f64);
        }
        // Deliveries already sent get a moment to be recorded (and acknowledged): a receiver
        // that answered before the term ended should not get the same seq from the next one.
        // Whatever is still out after that is abandoned, unacknowledged.
        let left = self.sched.clock().remaining().unwrap_or(Duration::ZERO);
        let drain = tokio::time::sleep(DRAIN.min(left));
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
                self.see(&room, seq);
                if let Some(superseded) = self.hold(room.clone(), seq, ack) {
                    self.ack(superseded).await;
                }
                self.sched.touch(room);
            }
            FeedChange::Deleted { room, last_seq } if room.starts_with(prefix) => {
                if !self.sched.clock().valid() {
                    warn!(room = %room, "room notifications: this term's lease ran out; stopping");
                    return false;
                }
                match self.sched.ledger().deleted(&room, last_seq).await {
                    Ok(()) => {}
                    Err(LedgerError::Superseded) => {
                        warn!(room = %room, "room notifications: a newer notifier owns the ledger; stopping");
                        return false;
                    }
                    Err(e) => {
                        // Handed back, to be read again soon: a deletion not recorded would
                        // let the re-created room's webhooks repeat the old `webhook-id`s.
                        warn!(room = %room, error = %Chain(&e), retry_in_ms = DELETION_RETRY.as_millis() as u64, "room notifications: could not record a room's deletion; will retry");
                        if let Err(e) = self.feed.retry(ack, DELETION_RETRY).await {
                            // Then the feed delivers it again after its ack wait.
                            warn!(room = %room, error = %Chain(&e), "room notifications: handing a feed message back failed");
                        }
                        return true;
                    }
                }
                self.see(&room, last_seq);
                self.ack(ack).await;
                self.ack_upto(&room, last_seq).await;
            }
            // Another prefix, or a record without seqs: nothing to announce.
            _ => self.ack(ack).await,
        }
        true
    }

    /// Raises the seq the room's next delivery announces.
    fn see(&self, room: &Arc<str>, seq: u64) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let at = latest.entry(room.clone()).or_insert(0);
        *at = (*at).max(seq);
    }

    /// Keeps the room's newest message; returns the one it supersedes, to acknowledge.
    fn hold(&mut self, room: Arc<str>, seq: u64, ack: F::Ack) -> Option<F::Ack> {
        match self.unacked.entry(room) {
            Entry::Vacant(v) => {
                v.insert((seq, ack));
                None
            }
            Entry::Occupied(mut o) => {
                let held = o.get().0;
                if seq > held {
                    Some(std::mem::replace(o.get_mut(), (seq, ack)).1)
                } else if seq < held {
                    Some(ack)
                } else {
                    // The same seq again: most likely the held message delivered again, and
                    // acknowledging either handle would acknowledge it before the ledger covers
                    // it. The newer handle is kept; a distinct message at the same seq left
                    // unacknowledged comes back after the ack wait, covered by then.
                    o.get_mut().1 = ack;
                    None
                }
            }
        }
    }

    async fn ack(&self, ack: F::Ack) {
        if let Err(e) = self.feed.ack(ack).await {
            // Not acknowledged: delivered again later, and then covered by the ledger.
            warn!(error = %Chain(&e), "room notifications: acknowledging a feed message failed");
        }
    }

    /// Acknowledges the room's held message if the ledger now covers it (up to `seq`), and
    /// forgets the room once nothing of it is left.
    async fn ack_upto(&mut self, room: &Arc<str>, seq: u64) {
        if self.unacked.get(room).is_some_and(|(held, _)| *held <= seq)
            && let Some((_, ack)) = self.unacked.remove(room)
        {
            self.ack(ack).await;
        }
        if self.unacked.contains_key(room) {
            return;
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.get(room).is_some_and(|at| *at <= seq) {
            latest.remove(room);
        }
    }
}
