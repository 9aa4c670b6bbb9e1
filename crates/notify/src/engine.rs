//! What both modes share: per-room debounce and scheduling ([`Scheduler`]), and one delivery
//! (read the seq to announce, skip it if the ledger covers it, sign, POST, classify the
//! answer, record). Only the input (the relay event stream, or the cluster's durable feed) and
//! the ledger differ between single-node and cluster mode.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};
use weaver_relay::RelayHandle;
use weaver_retry::{Backoff, Jitter, StatusClass, classify, parse_retry_after};

use crate::error::Chain;
use crate::ledger::{Ledger, LedgerError};
use crate::term::TermClock;
use crate::{DELIVERIES_TOTAL, NotifyConfig, NotifyError, tls};

/// Where a delivery reads the seq it announces.
#[derive(Debug, Clone)]
pub(crate) enum SeqSource {
    /// The relay's durable per-room seq (single node).
    Relay(RelayHandle),
    /// The highest seq the cluster feed showed per room (cluster mode; the loop fills it).
    Latest(Arc<Mutex<HashMap<Arc<str>, u64>>>),
}

impl SeqSource {
    async fn seq(&self, room: &str) -> Result<u64, String> {
        match self {
            SeqSource::Relay(relay) => relay
                .room_seq(room)
                .await
                .map_err(|e| format!("reading the room's seq: {e}")),
            SeqSource::Latest(map) => Ok(map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(room)
                .copied()
                .unwrap_or(0)),
        }
    }
}

/// The HTTP client of the deliveries: the configured timeout, no redirects.
pub(crate) fn client(cfg: &NotifyConfig) -> Result<reqwest::Client, NotifyError> {
    tls::client_builder()
        .timeout(cfg.timeout)
        // A redirected POST turns into a GET without the body: refuse it (a final status).
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("weaver/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(NotifyError::HttpClient)
}

struct Pending {
    /// When the change that opened this wait happened (bounds the wait by `max_wait`).
    first: Instant,
    due: Instant,
    /// Failed attempts so far.
    tries: u32,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    /// Delivered (or refused for good) up to this seq, and recorded.
    Done { seq: u64, rejected: Option<u16> },
    /// Nothing to send: the ledger already covers the room up to `upto` (if known), or the
    /// room is empty or gone.
    Nothing { upto: Option<u64> },
    /// Try again: the reason, and the receiver's `Retry-After`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A newer notifier owns the ledger: stop.
    Superseded,
    /// The term's lease ran out before the send or the record: nothing (more) was done.
    Fenced,
}

/// What a finished delivery settled, for the cluster loop's acknowledgements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The ledger covers the room up to this seq.
    Upto(u64),
    /// Nothing new is known to be covered.
    Unknown,
    /// A newer notifier owns the ledger.
    Superseded,
    /// The term may no longer act (its lease ran out).
    Fenced,
}

/// Debounce, concurrency and retries over the rooms that changed.
pub(crate) struct Scheduler<L: Ledger> {
    cfg: Arc<NotifyConfig>,
    ledger: Arc<L>,
    seqs: SeqSource,
    client: reqwest::Client,
    clock: Arc<dyn TermClock>,
    pending: HashMap<Arc<str>, Pending>,
    /// `(due, room)` of every pending room: the next one to send is the first.
    queue: BTreeSet<(Instant, Arc<str>)>,
    /// Rooms being delivered, and whether they changed again meanwhile.
    inflight: HashMap<Arc<str>, bool>,
    tasks: JoinSet<(Arc<str>, u32, Outcome)>,
}

impl<L: Ledger> Scheduler<L> {
    pub(crate) fn new(
        cfg: Arc<NotifyConfig>,
        ledger: Arc<L>,
        seqs: SeqSource,
        client: reqwest::Client,
        clock: Arc<dyn TermClock>,
    ) -> Self {
        Scheduler {
            cfg,
            ledger,
            seqs,
            client,
            clock,
            pending: HashMap::new(),
            queue: BTreeSet::new(),
            inflight: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    pub(crate) fn cfg(&self) -> &NotifyConfig {
        &self.cfg
    }

    pub(crate) fn ledger(&self) -> &Arc<L> {
        &self.ledger
    }

    pub(crate) fn clock(&self) -> &dyn TermClock {
        &*self.clock
    }

    /// Rooms with a notification waiting or in flight.
    pub(crate) fn load(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }

    /// When the loop must wake for the next due room. With every delivery slot taken, the
    /// next wake-up is a finished delivery, not the clock: a due room waiting for a slot must
    /// not spin the loop.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.tasks.len() < self.cfg.concurrency {
            self.queue.first().map(|(at, _)| *at)
        } else {
            None
        }
    }

    /// The next finished delivery (pending forever while none runs).
    pub(crate) async fn join_next(&mut self) -> (Arc<str>, u32, Outcome) {
        loop {
            match self.tasks.join_next().await {
                Some(Ok(done)) => return done,
                Some(Err(e)) => warn!(error = %e, "room notification task failed"),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Deliveries running now.
    pub(crate) fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    pub(crate) fn abort_all(&mut self) {
        self.tasks.abort_all();
    }

    fn schedule(&mut self, room: Arc<str>, p: Pending) {
        if let Some(old) = self.pending.remove(&room) {
            self.queue.remove(&(old.due, room.clone()));
        }
        self.queue.insert((p.due, room.clone()));
        self.pending.insert(room, p);
    }

    /// Due now unless already waiting or in flight (then as [`Scheduler::touch`]).
    pub(crate) fn due_now(&mut self, room: Arc<str>) {
        if self.inflight.contains_key(&room) || self.pending.contains_key(&room) {
            self.touch(room);
            return;
        }
        let now = Instant::now();
        self.schedule(
            room,
            Pending {
                first: now,
                due: now,
                tries: 0,
            },
        );
    }

    /// A committed update in `room`.
    pub(crate) fn touch(&mut self, room: Arc<str>) {
        if !room.starts_with(self.cfg.prefix.as_str()) {
            return;
        }
        if let Some(changed) = self.inflight.get_mut(&room) {
            *changed = true;
            return;
        }
        let now = Instant::now();
        let p = match self.pending.get(&room) {
            // Waiting for a retry: the retry carries the newest seq anyway.
            Some(p) if p.tries > 0 => return,
            Some(p) => Pending {
                first: p.first,
                due: (now + self.cfg.debounce).min(p.first + self.cfg.max_wait),
                tries: 0,
            },
            None => Pending {
                first: now,
                due: now + self.cfg.debounce,
                tries: 0,
            },
        };
        self.schedule(room, p);
    }

    /// Starts every due delivery the concurrency allows, none once the term may not act.
    pub(crate) fn start_due(&mut self) {
        if !self.clock.valid() {
            return;
        }
        let now = Instant::now();
        while self.tasks.len() < self.cfg.concurrency {
            let Some((due, room)) = self.queue.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            self.queue.remove(&(due, room.clone()));
            let tries = self.pending.remove(&room).map_or(0, |p| p.tries);
            self.inflight.insert(room.clone(), false);
            let d = Delivery {
                cfg: self.cfg.clone(),
                ledger: self.ledger.clone(),
                seqs: self.seqs.clone(),
                client: self.client.clone(),
                clock: self.clock.clone(),
            };
            self.tasks.spawn(async move {
                let outcome = d.deliver(&room).await;
                (room, tries, outcome)
            });
        }
    }

    pub(crate) fn finished(&mut self, room: Arc<str>, tries: u32, outcome: Outcome) -> Settled {
        let changed = self.inflight.remove(&room).unwrap_or(false);
        let now = Instant::now();
        let settled = match outcome {
            Outcome::Superseded => return Settled::Superseded,
            Outcome::Fenced => return Settled::Fenced,
            Outcome::Retry { reason, after } => {
                let tries = tries.saturating_add(1);
                let delay = backoff(self.cfg.max_backoff, tries, after);
                metrics::counter!(DELIVERIES_TOTAL, "outcome" => "retry").increment(1);
                warn!(room = %room, tries, retry_in_ms = delay.as_millis() as u64, reason, "room notification failed; will retry");
                self.schedule(
                    room,
                    Pending {
                        first: now,
                        due: now + delay,
                        tries,
                    },
                );
                return Settled::Unknown;
            }
            Outcome::Done { seq, rejected } => {
                match rejected {
                    Some(status) => {
                        metrics::counter!(DELIVERIES_TOTAL, "outcome" => "rejected").increment(1);
                        warn!(room = %room, seq, status, "room notification refused by the receiver; not retried");
                    }
                    None => {
                        metrics::counter!(DELIVERIES_TOTAL, "outcome" => "ok").increment(1);
                        debug!(room = %room, seq, "room notification delivered");
                    }
                }
                Settled::Upto(seq)
            }
            Outcome::Nothing { upto } => upto.map_or(Settled::Unknown, Settled::Upto),
        };
        if changed {
            self.touch(room);
        }
        settled
    }
}

/// Exponential from 1 s, capped, with jitter in its upper half (never an immediate retry);
/// the receiver's `Retry-After` wins, capped the same way.
pub(crate) fn backoff(max: Duration, tries: u32, retry_after: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    // `Retry-After: 0` (or a date in the past) must not turn into a tight loop.
    let retry_after = retry_after.map(|ra| ra.max(FIRST));
    Backoff::new(FIRST, max)
        .with_jitter(Jitter::Equal)
        .delay_or_retry_after(tries, retry_after, &mut rand::rng())
}

/// What one delivery needs, owned so it can run as its own task.
struct Delivery<L> {
    cfg: Arc<NotifyConfig>,
    ledger: Arc<L>,
    seqs: SeqSource,
    client: reqwest::Client,
    clock: Arc<dyn TermClock>,
}

impl<L: Ledger> Delivery<L> {
    async fn deliver(&self, room: &str) -> Outcome {
        let seq = match self.seqs.seq(room).await {
            Ok(seq) => seq,
            Err(reason) => {
                return Outcome::Retry {
                    reason,
                    after: None,
                };
            }
        };
        if seq == 0 {
            return Outcome::Nothing { upto: None };
        }
        let gen_ = match self.ledger.delivered(room).await {
            Ok(Some(d)) if self.ledger.covers(d.seq, seq) => {
                return Outcome::Nothing { upto: Some(d.seq) };
            }
            Ok(row) => row.map_or(0, |d| d.generation),
            Err(LedgerError::Superseded) => return Outcome::Superseded,
            Err(e) => {
                return Outcome::Retry {
                    reason: Chain(&e).to_string(),
                    after: None,
                };
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let body = serde_json::json!({
            "type": "room.updated",
            "room": room,
            "seq": seq,
            "timestamp": u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
        })
        .to_string();
        // Stable across retries of the same seq: receivers deduplicate on it.
        let id = format!("msg_{room}_{gen_}_{seq}");
        let ts = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        // Right before the send: a term whose lease ran out meanwhile (the ledger reads above
        // take time, the process may have been paused) must leave the seq to the next term.
        // Nor may the request outlive the term: its answer could not be recorded anyway.
        let Some(left) = self.clock.remaining().filter(|l| !l.is_zero()) else {
            return Outcome::Fenced;
        };
        let mut req = self
            .client
            .post(self.cfg.url.clone())
            .timeout(self.cfg.timeout.min(left))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string());
        if let Some(secret) = &self.cfg.secret {
            req = req.header("webhook-signature", secret.sign(&id, ts, body.as_bytes()));
        }
        let rejected = match req.body(body).send().await {
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("request failed: {e}"),
                    after: None,
                };
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let after = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                match classify(status) {
                    StatusClass::Success => None,
                    class if class.is_retryable() => {
                        return Outcome::Retry {
                            reason: format!("HTTP {status}"),
                            after,
                        };
                    }
                    _ => Some(status),
                }
            }
        };
        // Delivered, but a term past its lease must not write: the next term owns the ledger
        // (and sends this seq again, with the same `webhook-id`).
        if !self.clock.valid() {
            return Outcome::Fenced;
        }
        match self.ledger.record(room, gen_, seq).await {
            Ok(()) => Outcome::Done { seq, rejected },
            Err(LedgerError::Superseded) => Outcome::Superseded,
            // Delivered but not recorded: sending it again later is the safe side.
            Err(e) => Outcome::Retry {
                reason: format!("delivered, but recording it failed: {}", Chain(&e)),
                after: None,
            },
        }
    }
}

pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let max = Duration::from_secs(60);
        for _ in 0..50 {
            let first = backoff(max, 1, None);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let late = backoff(max, 30, None);
            assert!(late >= Duration::from_secs(30) && late <= max);
        }
        assert_eq!(
            backoff(max, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(backoff(max, 1, Some(Duration::from_secs(3600))), max);
        assert_eq!(
            backoff(max, 1, Some(Duration::ZERO)),
            Duration::from_secs(1)
        );
    }
}
