//! weaver-notify: room-change webhooks. After a room changes, a configured URL receives a
//! signed `room.updated` POST naming the room and the update seq it has reached, so a backend
//! that cannot hold a change feed open (a serverless function, a job queue) learns what to
//! re-read. Bursts are debounced per room (at most one delivery per quiet period, at most
//! `max_wait` late under continuous editing), failures retried with backoff, and nothing is
//! lost across a crash: the relay's durable per-room seq is the truth, and the `notify_rooms`
//! table records the seq last delivered, so a start-up scan re-sends whatever changed since.
//!
//! Owns: the `notify_rooms` redb table, the scheduling, the delivery. Knows the relay only
//! through its public handle (`subscribe`: the relay event stream, `room_seq`, `room_seqs`):
//! nothing of sockets, document content, or the bridge's APICalls. Never holds a write
//! transaction across network I/O.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weaver_relay::{RecvError, RelayEvent, RelayHandle};
use weaver_retry::{Backoff, Jitter, StatusClass, classify, parse_retry_after};

pub use error::NotifyError;
pub use weaver_auth::webhook::WebhookSecret;

use error::{Chain, store_err};

mod error;
mod tls;

/// `room` → `(generation, seq)`: the seq of the last `room.updated` delivered (or refused for
/// good) for it, and how many times the room was deleted. A deleted room's seqs restart at 1;
/// the generation keeps its `webhook-id`s from repeating those of the room before.
const NOTIFIED: TableDefinition<&str, (u64, u64)> = TableDefinition::new("notify_rooms");
/// `baseline` → 1 once the first start recorded the rooms that existed before notifications.
const META: TableDefinition<&str, u64> = TableDefinition::new("notify_meta");

/// Deliveries by outcome: `ok`, `retry` (failed, will be tried again), `rejected` (a final
/// 4xx: that seq is given up, the next change is sent again).
pub const DELIVERIES_TOTAL: &str = "weaver_notify_deliveries_total";
/// Rooms with a notification waiting or in flight.
pub const PENDING: &str = "weaver_notify_pending";

/// Page size of start-up scans over the stored rooms.
const SCAN_PAGE: usize = 1000;

/// Where and how room changes are announced.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Receives `POST` with a JSON body (http or https).
    pub url: reqwest::Url,
    /// Signs each delivery (Standard Webhooks); unsigned without it.
    pub secret: Option<WebhookSecret>,
    /// Only rooms whose name starts with it (empty: every room).
    pub prefix: String,
    /// Quiet time after a room's last change before it is announced.
    pub debounce: Duration,
    /// Longest a change waits while the room keeps changing.
    pub max_wait: Duration,
    /// Per request.
    pub timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Cap of the retry backoff.
    pub max_backoff: Duration,
}

impl NotifyConfig {
    /// Defaults: 2 s debounce, 10 s max wait (as Hocuspocus' webhook extension), 10 s timeout,
    /// 4 deliveries at once, retries backing off up to 5 minutes.
    pub fn new(url: reqwest::Url) -> Self {
        Self {
            url,
            secret: None,
            prefix: String::new(),
            debounce: Duration::from_secs(2),
            max_wait: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            concurrency: 4,
            max_backoff: Duration::from_secs(300),
        }
    }

    fn validate(&self) -> Result<(), NotifyError> {
        if !matches!(self.url.scheme(), "http" | "https") {
            return Err(NotifyError::Config(format!(
                "the URL must be http or https, not {}",
                self.url.scheme()
            )));
        }
        if self.concurrency == 0 {
            return Err(NotifyError::Config("concurrency must be at least 1".into()));
        }
        if self.max_wait < self.debounce {
            return Err(NotifyError::Config(
                "max wait must be at least the debounce".into(),
            ));
        }
        if self.timeout.is_zero() || self.max_backoff.is_zero() {
            return Err(NotifyError::Config(
                "timeout and max backoff must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// The running notifier; [`Notifier::join`] after cancelling its shutdown token.
#[derive(Debug)]
pub struct Notifier {
    task: JoinHandle<()>,
}

impl Notifier {
    /// Creates the table if needed and starts the worker. On the first start with
    /// notifications (no table yet) the rooms' current seqs are recorded as delivered: history
    /// is not announced, only what changes from now on.
    pub fn start(
        config: NotifyConfig,
        db: Arc<Database>,
        relay: RelayHandle,
        shutdown: CancellationToken,
    ) -> Result<Notifier, NotifyError> {
        config.validate()?;
        // The tables exist from here on, so deliveries work even if the first scan fails; the
        // baseline marker is written only with the baseline itself, so a failed one is redone.
        let fresh = {
            let txn = db.begin_write().map_err(store_err)?;
            txn.open_table(NOTIFIED).map_err(store_err)?;
            let fresh = txn
                .open_table(META)
                .map_err(store_err)?
                .get("baseline")
                .map_err(store_err)?
                .is_none();
            txn.commit().map_err(store_err)?;
            fresh
        };
        let client = tls::client_builder()
            .timeout(config.timeout)
            // A redirected POST turns into a GET without the body: refuse it (a final status).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("weaver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(NotifyError::HttpClient)?;
        // Subscribed before the scan, so a change between the scan and the loop is not missed.
        let events = relay.subscribe();
        let worker = Worker {
            cfg: Arc::new(config),
            db,
            relay,
            client,
            pending: HashMap::new(),
            queue: BTreeSet::new(),
            inflight: HashMap::new(),
            tasks: JoinSet::new(),
        };
        let task = tokio::spawn(worker.run(fresh, events, shutdown));
        Ok(Notifier { task })
    }

    /// Waits up to `grace` for the worker to stop (after its shutdown token was cancelled),
    /// then aborts it. Deliveries in flight are abandoned; the next start sends them again.
    pub async fn stop(mut self, grace: Duration) {
        if tokio::time::timeout(grace, &mut self.task).await.is_err() {
            warn!("room notifications did not stop in time; aborted");
            self.task.abort();
        }
    }
}

/// Copies the notifier's tables into a backup being written (`GET /api/backup`), so a
/// restored server re-sends what was not delivered instead of starting afresh.
pub fn copy_tables(
    src: &redb::ReadTransaction,
    dst: &redb::WriteTransaction,
) -> Result<Vec<String>, NotifyError> {
    let mut copied = Vec::new();
    weaver_redb_backup::copy_table(src, dst, NOTIFIED, &mut copied)?;
    weaver_redb_backup::copy_table(src, dst, META, &mut copied)?;
    Ok(copied)
}

/// A room in the prefix whose row says it was delivered but which is no longer stored, with
/// the row's generation.
type GoneRoom = (String, u64);

struct Pending {
    /// When the change that opened this wait happened (bounds the wait by `max_wait`).
    first: Instant,
    due: Instant,
    /// Failed attempts so far.
    tries: u32,
}

#[derive(Debug)]
enum Outcome {
    /// Delivered (or refused for good) up to this seq, and recorded.
    Done { seq: u64, rejected: Option<u16> },
    /// Nothing to send: already delivered, or the room is empty or gone.
    Nothing,
    /// Try again: the reason, and the receiver's `Retry-After`.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

struct Worker {
    cfg: Arc<NotifyConfig>,
    db: Arc<Database>,
    relay: RelayHandle,
    client: reqwest::Client,
    pending: HashMap<Arc<str>, Pending>,
    /// `(due, room)` of every pending room: the next one to send is the first.
    queue: BTreeSet<(Instant, Arc<str>)>,
    /// Rooms being delivered, and whether they changed again meanwhile.
    inflight: HashMap<Arc<str>, bool>,
    tasks: JoinSet<(Arc<str>, u32, Outcome)>,
}

impl Worker {
    async fn run(
        mut self,
        fresh: bool,
        mut events: weaver_relay::EventReceiver,
        shutdown: CancellationToken,
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
        info!(url = %self.cfg.url, prefix = %self.cfg.prefix, signed = self.cfg.secret.is_some(), "room notifications on");
        loop {
            self.start_due();
            // With every delivery slot taken, the next wake-up is a finished delivery, not the
            // clock: a due room waiting for a slot must not spin this loop.
            let next_due = if self.tasks.len() < self.cfg.concurrency {
                self.queue.first().map(|(at, _)| *at)
            } else {
                None
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(RelayEvent::Committed(u)) => self.touch(u.room),
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
                Some(done) = self.tasks.join_next() => match done {
                    Ok((room, tries, outcome)) => self.finished(room, tries, outcome),
                    Err(e) => warn!(error = %e, "room notification task failed"),
                },
                _ = sleep_until_opt(next_due) => {}
            }
            metrics::gauge!(PENDING).set((self.pending.len() + self.inflight.len()) as f64);
        }
        self.tasks.abort_all();
    }

    fn schedule(&mut self, room: Arc<str>, p: Pending) {
        if let Some(old) = self.pending.remove(&room) {
            self.queue.remove(&(old.due, room.clone()));
        }
        self.queue.insert((p.due, room.clone()));
        self.pending.insert(room, p);
    }

    /// A committed update in `room`.
    fn touch(&mut self, room: Arc<str>) {
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

    /// Starts every due delivery the concurrency allows.
    fn start_due(&mut self) {
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
                db: self.db.clone(),
                relay: self.relay.clone(),
                client: self.client.clone(),
            };
            self.tasks.spawn(async move {
                let outcome = d.deliver(&room).await;
                (room, tries, outcome)
            });
        }
    }

    fn finished(&mut self, room: Arc<str>, tries: u32, outcome: Outcome) {
        let changed = self.inflight.remove(&room).unwrap_or(false);
        let now = Instant::now();
        match outcome {
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
                if changed {
                    self.touch(room);
                }
            }
            Outcome::Nothing => {
                if changed {
                    self.touch(room);
                }
            }
        }
    }

    /// `room` was deleted: its seqs restart at 1, so its generation moves on (new
    /// `webhook-id`s) and its recorded seq is cleared. A pending or in-flight delivery stays:
    /// it reads the room's seq when it runs (0: nothing to send; a re-created room: its new
    /// content), and an in-flight one does not record under the old generation.
    async fn forget(&mut self, room: Arc<str>) {
        if !room.starts_with(self.cfg.prefix.as_str()) {
            return;
        }
        let db = self.db.clone();
        let name = room.clone();
        let bumped = tokio::task::spawn_blocking(move || -> Result<(), NotifyError> {
            let mut txn = db.begin_write().map_err(store_err)?;
            txn.set_durability(redb::Durability::None)
                .map_err(store_err)?;
            {
                let mut t = txn.open_table(NOTIFIED).map_err(store_err)?;
                let gen_ = t.get(&*name).map_err(store_err)?.map_or(0, |v| v.value().0);
                t.insert(&*name, (gen_ + 1, 0)).map_err(store_err)?;
            }
            txn.commit().map_err(store_err)
        })
        .await;
        if !matches!(bumped, Ok(Ok(()))) {
            warn!(room = %room, "room notifications: could not record a room's deletion");
        }
    }

    /// Every stored room in the prefix, page by page: `(name, last_seq)`.
    async fn stored_rooms(&self) -> Result<Vec<(String, u64)>, NotifyError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .relay
                .room_seqs(&self.cfg.prefix, after.as_deref(), SCAN_PAGE)
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
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NotifyError> {
            let txn = db.begin_write().map_err(store_err)?;
            {
                let mut t = txn.open_table(NOTIFIED).map_err(store_err)?;
                for (name, seq) in &rooms {
                    // A row already there (an earlier baseline that did not finish) stays.
                    if t.get(name.as_str()).map_err(store_err)?.is_none() {
                        t.insert(name.as_str(), (0, *seq)).map_err(store_err)?;
                    }
                }
                txn.open_table(META)
                    .map_err(store_err)?
                    .insert("baseline", 1)
                    .map_err(store_err)?;
            }
            txn.commit().map_err(store_err)
        })
        .await
        .map_err(NotifyError::Blocking)??;
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
        let db = self.db.clone();
        let prefix = self.cfg.prefix.clone();
        let (stale, gone) = tokio::task::spawn_blocking(
            move || -> Result<(Vec<String>, Vec<GoneRoom>), NotifyError> {
                let txn = db.begin_read().map_err(store_err)?;
                let t = txn.open_table(NOTIFIED).map_err(store_err)?;
                let mut stale = Vec::new();
                for (name, seq) in &rooms {
                    let notified = t
                        .get(name.as_str())
                        .map_err(store_err)?
                        .map(|v| v.value().1);
                    if notified != Some(*seq) {
                        stale.push(name.clone());
                    }
                }
                let live: HashSet<&str> = rooms.iter().map(|(n, _)| n.as_str()).collect();
                let mut gone = Vec::new();
                for row in t.range(prefix.as_str()..).map_err(store_err)? {
                    let (k, v) = row.map_err(store_err)?;
                    let name = k.value();
                    if !name.starts_with(prefix.as_str()) {
                        break;
                    }
                    let (gen_, seq) = v.value();
                    if seq != 0 && !live.contains(name) {
                        gone.push((name.to_owned(), gen_));
                    }
                }
                Ok((stale, gone))
            },
        )
        .await
        .map_err(NotifyError::Blocking)??;
        if !gone.is_empty() {
            // Deleted while the notifier was not looking: the same as `forget`.
            let db = self.db.clone();
            tokio::task::spawn_blocking(move || -> Result<(), NotifyError> {
                let txn = db.begin_write().map_err(store_err)?;
                {
                    let mut t = txn.open_table(NOTIFIED).map_err(store_err)?;
                    for (name, gen_) in &gone {
                        t.insert(name.as_str(), (gen_ + 1, 0)).map_err(store_err)?;
                    }
                }
                txn.commit().map_err(store_err)
            })
            .await
            .map_err(NotifyError::Blocking)??;
        }
        if !stale.is_empty() {
            info!(
                rooms = stale.len(),
                "room notifications: announcing rooms changed while not delivered"
            );
        }
        let now = Instant::now();
        for name in stale {
            let room: Arc<str> = Arc::from(name);
            if self.inflight.contains_key(&room) || self.pending.contains_key(&room) {
                self.touch(room);
                continue;
            }
            self.schedule(
                room,
                Pending {
                    first: now,
                    due: now,
                    tries: 0,
                },
            );
        }
        Ok(())
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Exponential from 1 s, capped, with jitter in its upper half (never an immediate retry);
/// the receiver's `Retry-After` wins, capped the same way.
fn backoff(max: Duration, tries: u32, retry_after: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_secs(1);
    // `Retry-After: 0` (or a date in the past) must not turn into a tight loop.
    let retry_after = retry_after.map(|ra| ra.max(FIRST));
    Backoff::new(FIRST, max)
        .with_jitter(Jitter::Equal)
        .delay_or_retry_after(tries, retry_after, &mut rand::rng())
}

/// What one delivery needs, owned so it can run as its own task.
struct Delivery {
    cfg: Arc<NotifyConfig>,
    db: Arc<Database>,
    relay: RelayHandle,
    client: reqwest::Client,
}

impl Delivery {
    async fn deliver(&self, room: &str) -> Outcome {
        let seq = match self.relay.room_seq(room).await {
            Ok(seq) => seq,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("reading the room's seq: {e}"),
                    after: None,
                };
            }
        };
        if seq == 0 {
            return Outcome::Nothing;
        }
        let gen_ = match self.notified(room).await {
            Ok(Some((_, n))) if n == seq => return Outcome::Nothing,
            Ok(row) => row.map_or(0, |(g, _)| g),
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
        let mut req = self
            .client
            .post(self.cfg.url.clone())
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
        match self.record(room, gen_, seq).await {
            Ok(()) => Outcome::Done { seq, rejected },
            // Delivered but not recorded: sending it again later is the safe side.
            Err(e) => Outcome::Retry {
                reason: format!("delivered, but recording it failed: {}", Chain(&e)),
                after: None,
            },
        }
    }

    async fn notified(&self, room: &str) -> Result<Option<(u64, u64)>, NotifyError> {
        let db = self.db.clone();
        let room = room.to_owned();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let t = txn.open_table(NOTIFIED).map_err(store_err)?;
            Ok(t.get(room.as_str()).map_err(store_err)?.map(|v| v.value()))
        })
        .await
        .map_err(NotifyError::Blocking)?
    }

    /// Records `seq` as delivered, unless the room was deleted since the delivery began (its
    /// generation moved on). Not fsync'd on its own: it becomes durable with the relay's next
    /// commit, and a crash before that only sends this seq again (at least once), while an
    /// fsync per delivery would hold redb's single writer away from the relay's commits.
    async fn record(&self, room: &str, gen_: u64, seq: u64) -> Result<(), NotifyError> {
        let db = self.db.clone();
        let room = room.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().map_err(store_err)?;
            txn.set_durability(redb::Durability::None)
                .map_err(store_err)?;
            {
                let mut t = txn.open_table(NOTIFIED).map_err(store_err)?;
                let now = t
                    .get(room.as_str())
                    .map_err(store_err)?
                    .map_or(0, |v| v.value().0);
                if now == gen_ {
                    t.insert(room.as_str(), (gen_, seq)).map_err(store_err)?;
                }
            }
            txn.commit().map_err(store_err)
        })
        .await
        .map_err(NotifyError::Blocking)?
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
