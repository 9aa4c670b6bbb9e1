//! weaver-notify: room-change webhooks. After a room changes, a configured URL receives a
//! signed `room.updated` POST naming the room and the update seq it has reached, so a backend
//! that cannot hold a change feed open (a serverless function, a job queue) learns what to
//! re-read. Bursts are debounced per room (at most one delivery per quiet period, at most
//! `max_wait` late under continuous editing), failures retried with backoff, and nothing is
//! lost across a crash: the room's durable seq is the truth, and a ledger records the seq last
//! delivered per room.
//!
//! Two modes share the debounce, signing, delivery and retries (`engine.rs`) and differ only
//! in their input and ledger:
//! - single node ([`Notifier::start`], `single.rs`): the relay event stream, and the
//!   `notify_rooms`/`notify_meta` redb tables (`redb_ledger.rs`) with a start-up scan that
//!   re-sends whatever changed since;
//! - cluster ([`Notifier::start_cluster`], `cluster.rs`): a durable, acknowledged [`Feed`] of
//!   every room's stored seqs and a shared [`Ledger`], both implemented outside this crate
//!   (weaver-cluster's `RoomFeed` and `NotifyLedger` on JetStream), so this crate knows no
//!   NATS; the caller runs one per cluster (a leased role).
//!
//! Owns: the `notify_*` redb tables, the scheduling, the delivery, the `Feed` and `Ledger`
//! seams. Knows the relay only through its public handle (`subscribe`: the relay event stream,
//! `room_seq`, `room_seqs`): nothing of sockets, document content, NATS, or the bridge's
//! APICalls. Never holds a write transaction across network I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::Database;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use weaver_relay::RelayHandle;

pub use error::NotifyError;
pub use input::{Feed, FeedChange, FeedError, FeedItem};
pub use ledger::{Delivered, Ledger, LedgerError};
pub use term::TermClock;
pub use weaver_auth::webhook::WebhookSecret;

use engine::{Scheduler, SeqSource};
use redb_ledger::{META, NOTIFIED, RedbLedger};

mod cluster;
mod engine;
mod error;
mod input;
mod ledger;
mod redb_ledger;
mod single;
mod term;
mod tls;

/// Deliveries by outcome: `ok`, `retry` (failed, will be tried again), `rejected` (a final
/// 4xx: that seq is given up, the next change is sent again).
pub const DELIVERIES_TOTAL: &str = "weaver_notify_deliveries_total";
/// Rooms with a notification waiting or in flight.
pub const PENDING: &str = "weaver_notify_pending";

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

    /// Checks the values (also done by every start).
    pub fn validate(&self) -> Result<(), NotifyError> {
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

/// The running notifier; [`Notifier::stop`] after cancelling its shutdown token.
#[derive(Debug)]
pub struct Notifier {
    task: JoinHandle<()>,
    /// True once the worker serves changes (single node: after its start-up scan).
    started: watch::Receiver<bool>,
}

impl Notifier {
    /// Single-node mode: creates the tables if needed and starts the worker over the relay
    /// event stream. On the first start with notifications (no table yet) the rooms' current
    /// seqs are recorded as delivered: history is not announced, only what changes from now on.
    pub fn start(
        config: NotifyConfig,
        db: Arc<Database>,
        relay: RelayHandle,
        shutdown: CancellationToken,
    ) -> Result<Notifier, NotifyError> {
        config.validate()?;
        let (ledger, fresh) = RedbLedger::open(db)?;
        let client = engine::client(&config)?;
        // Subscribed before the scan, so a change between the scan and the loop is not missed.
        let events = relay.subscribe();
        let worker = single::Single {
            sched: Scheduler::new(
                Arc::new(config),
                Arc::new(ledger),
                SeqSource::Relay(relay.clone()),
                client,
                Arc::new(term::Unbounded),
            ),
            relay,
        };
        let (started_tx, started) = watch::channel(false);
        let task = tokio::spawn(worker.run(fresh, events, shutdown, started_tx));
        Ok(Notifier { task, started })
    }

    /// Cluster mode: the one notifier of the cluster, for one term of its role. Reads `feed`
    /// (every room's stored changes, durable: what it did not acknowledge is read again by the
    /// next term), records deliveries in `ledger`, and stops when `stop` fires (the term
    /// ended), `clock` says the term may no longer act (checked before every send and every
    /// ledger write too, so a term nobody stopped in time does nothing), the feed ends or
    /// fails, or the ledger says a newer notifier took over.
    pub fn start_cluster<F: Feed, L: Ledger, C: TermClock>(
        config: NotifyConfig,
        feed: F,
        ledger: L,
        clock: C,
        stop: CancellationToken,
    ) -> Result<Notifier, NotifyError> {
        config.validate()?;
        let client = engine::client(&config)?;
        let latest: cluster::Latest = Arc::new(Mutex::new(HashMap::new()));
        let worker = cluster::ClusterLoop {
            sched: Scheduler::new(
                Arc::new(config),
                Arc::new(ledger),
                SeqSource::Latest(latest.clone()),
                client,
                Arc::new(clock),
            ),
            feed,
            latest,
            unacked: HashMap::new(),
        };
        let (started_tx, started) = watch::channel(false);
        let task = tokio::spawn(worker.run(stop, started_tx));
        Ok(Notifier { task, started })
    }

    /// Waits until the notifier serves changes: in single-node mode its start-up scan (and on
    /// the first start the baseline, which records what exists as delivered) is done, so a
    /// change from now on is announced. Returns at once if the worker ended.
    pub async fn started(&self) {
        let mut started = self.started.clone();
        // An error means the worker ended: nothing to wait for.
        let _ = started.wait_for(|s| *s).await;
    }

    /// Waits until the worker ended by itself (cluster mode: the feed ended or the ledger was
    /// taken over), without stopping it.
    pub async fn finished(&mut self) {
        if let Err(e) = (&mut self.task).await {
            warn!(error = %e, "room notifications task failed");
        }
    }

    /// Waits up to `grace` for the worker to stop (after its shutdown token was cancelled),
    /// then aborts it. Deliveries in flight are abandoned; the next start sends them again.
    pub async fn stop(mut self, grace: Duration) {
        if self.task.is_finished() {
            return;
        }
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
