//! Room leases: one owner per room across nodes, in a JetStream KV bucket.
//!
//! - `acquire` is a KV `create` of the room's key: it succeeds only when the key is absent
//!   (never written, deleted, or expired), and its revision is the lease's epoch, a fencing
//!   token that only grows.
//! - The holder renews with `update(key, value, revision)` (compare-and-set) every TTL/3.
//! - The bucket's `max_age` is the TTL: the server removes the key TTL after its last write,
//!   and only then can another node `create` it. A write is stored no earlier than the holder
//!   sent it, so the key lives at least until `last successful renewal (send time) + TTL`.
//! - The holder fences itself at `deadline = last successful renewal + TTL - margin`: the
//!   lease's [`CancellationToken`] fires and [`Lease::check`] fails from then on, strictly
//!   before any other node may take over; `margin` covers clock-rate differences and the time
//!   the room actor needs to stop committing and close its sockets. A renewal refused as
//!   `WrongLastRevision` (someone overwrote or re-created the key) fences at once.
//! - `release` deletes the key only if its revision is still ours, so a stale holder never
//!   deletes its successor's lease.
//!
//! A renewal whose ack is lost but which landed leaves this holder with a stale revision: its
//! next renewal is refused and it fences, early but safely (the key then expires normally).
//! Likewise a `create` whose ack is lost returns an error and the key simply expires.
//!
//! [`Lease::check`] compares the clock itself, so even a holder whose renewal task did not
//! run (a paused process) refuses to act past its deadline. Must not know: rooms' contents.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::error::LeaseError;
use crate::names::encode_room;

/// The lease bucket and its timing; every node must use the same values.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub bucket: String,
    /// How long a lease outlives its last renewal (the bucket's `max_age`).
    pub ttl: Duration,
    /// How long before that a holder that could not renew fences itself.
    pub margin: Duration,
    pub replicas: usize,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            bucket: "weaver_leases".to_owned(),
            ttl: Duration::from_secs(10),
            margin: Duration::from_secs(2),
            replicas: 1,
        }
    }
}

/// The lease bucket of a node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leases {
    kv: kv::Store,
    cfg: LeaseConfig,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

/// What the renewal task publishes to its lease.
#[derive(Debug, Clone, Copy)]
struct View {
    revision: u64,
    deadline: Instant,
}

/// A held lease. Dropping it stops renewing (the key then expires after the TTL); prefer
/// [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    room: String,
    node_id: String,
    key: String,
    epoch: u64,
    kv: kv::Store,
    view: watch::Receiver<View>,
    fenced: CancellationToken,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Leases {
    /// Creates the bucket if missing (history 1, `max_age` = TTL).
    pub async fn open(js: &jetstream::Context, cfg: LeaseConfig) -> Result<Leases, LeaseError> {
        let kv = js
            .create_key_value(kv::Config {
                bucket: cfg.bucket.clone(),
                history: 1,
                max_age: cfg.ttl,
                storage: jetstream::stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(|source| LeaseError::Bucket {
                bucket: cfg.bucket.clone(),
                source,
            })?;
        Ok(Leases {
            kv,
            cfg,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Takes the room's lease for `node_id` if nobody holds it, and starts renewing it.
    pub async fn acquire(&self, room: &str, node_id: &str) -> Result<Lease, LeaseError> {
        let key = encode_room(room);
        let value = Bytes::from(node_id.to_owned());
        // The key lives at least TTL after this instant, whatever the server's clock says.
        let sent = Instant::now();
        let epoch = match self.kv.create(&key, value.clone()).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let holder = self
                    .holder(room)
                    .await?
                    .map(|(node, _)| node)
                    .unwrap_or_default();
                return Err(LeaseError::Held {
                    room: room.to_owned(),
                    holder,
                });
            }
            Err(source) => {
                return Err(LeaseError::Create {
                    room: room.to_owned(),
                    source,
                });
            }
        };
        let ttl = self.cfg.ttl;
        let deadline = sent + ttl.saturating_sub(self.cfg.margin);
        let (view_tx, view) = watch::channel(View {
            revision: epoch,
            deadline,
        });
        let fenced = CancellationToken::new();
        let stop = self.shutdown.child_token();
        let renewal = Renewal {
            kv: self.kv.clone(),
            room: room.to_owned(),
            key: key.clone(),
            value,
            ttl,
            margin: self.cfg.margin,
            view: view_tx,
            fenced: fenced.clone(),
            stop: stop.clone(),
        };
        let task = self.tracker.spawn(renewal.run(epoch, sent));
        info!(room, node_id, epoch, "lease acquired");
        Ok(Lease {
            room: room.to_owned(),
            node_id: node_id.to_owned(),
            key,
            epoch,
            kv: self.kv.clone(),
            view,
            fenced,
            stop,
            task: Some(task),
        })
    }

    /// Who holds the room's lease, and its current revision.
    pub async fn holder(&self, room: &str) -> Result<Option<(String, u64)>, LeaseError> {
        let entry = self
            .kv
            .entry(encode_room(room))
            .await
            .map_err(|source| LeaseError::Entry {
                room: room.to_owned(),
                source,
            })?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (String::from_utf8_lossy(&e.value).into_owned(), e.revision)))
    }

    /// How long a lease outlives its last renewal.
    pub fn ttl(&self) -> Duration {
        self.cfg.ttl
    }

    /// The underlying bucket (tests overwrite keys through it to simulate a usurper).
    pub fn bucket(&self) -> &kv::Store {
        &self.kv
    }

    /// Stops every renewal task of this node (their leases fence and then expire).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Lease {
    pub fn room(&self) -> &str {
        &self.room
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The fencing token: the revision that created the lease. A later holder's is larger.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Fires when this holder must stop acting for the room (before anyone else may start).
    pub fn fenced(&self) -> CancellationToken {
        self.fenced.clone()
    }

    /// `Ok` while this holder may still act for the room: not fenced and before its deadline
    /// by this process's own clock. Call it before committing and before broadcasting.
    pub fn check(&self) -> Result<(), LeaseError> {
        self.clock().check()
    }

    /// A cheap, cloneable view of [`Lease::check`] for work the holder hands to other tasks.
    pub fn clock(&self) -> LeaseClock {
        LeaseClock {
            room: self.room.clone(),
            epoch: self.epoch,
            view: self.view.clone(),
            fenced: self.fenced.clone(),
        }
    }

    /// Stops renewing, fences, and deletes the key if its revision is still ours. `Ok(false)`
    /// when it was not (expired, or another node holds it now): nothing was deleted.
    pub async fn release(mut self) -> Result<bool, LeaseError> {
        self.stop.cancel();
        self.fenced.cancel();
        if let Some(task) = self.task.take() {
            // The task ends at its next await; a renewal in flight finishes first, so the
            // revision read below is the latest one ours.
            let _ = task.await;
        }
        let revision = self.view.borrow().revision;
        match self
            .kv
            .delete_expect_revision(&self.key, Some(revision))
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(source) => Err(LeaseError::Release {
                room: self.room.clone(),
                source,
            }),
        }
    }
}

/// What [`Lease::check`] reads, without the lease itself: it stays valid as long as the lease
/// it came from (renewals move its deadline on) and fails for good once that one fenced.
#[derive(Debug, Clone)]
pub struct LeaseClock {
    room: String,
    epoch: u64,
    view: watch::Receiver<View>,
    fenced: CancellationToken,
}

impl LeaseClock {
    /// As [`Lease::check`].
    pub fn check(&self) -> Result<(), LeaseError> {
        match self.remaining() {
            Some(_) => Ok(()),
            None => Err(LeaseError::Fenced {
                room: self.room.clone(),
                epoch: self.epoch,
            }),
        }
    }

    /// The time left before the holder's deadline (which is `margin` before another node may
    /// take over); `None` once fenced or past it, by this process's own clock.
    pub fn remaining(&self) -> Option<Duration> {
        let left = self
            .view
            .borrow()
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|l| !l.is_zero());
        if self.fenced.is_cancelled() || left.is_none() {
            self.fenced.cancel();
            return None;
        }
        left
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
        self.fenced.cancel();
    }
}

/// The renewal task of one lease.
struct Renewal {
    kv: kv::Store,
    room: String,
    key: String,
    value: Bytes,
    ttl: Duration,
    margin: Duration,
    view: watch::Sender<View>,
    fenced: CancellationToken,
    stop: CancellationToken,
}

impl Renewal {
    async fn run(self, mut revision: u64, mut last_ok: Instant) {
        let period = self.ttl / 3;
        let retry = (self.ttl / 20).max(Duration::from_millis(50));
        let mut next = last_ok + period;
        loop {
            let deadline = last_ok + self.ttl.saturating_sub(self.margin);
            tokio::select! {
                biased;
                // A holder that stops renewing is no longer sure of its lease.
                _ = self.stop.cancelled() => return self.fenced.cancel(),
                _ = tokio::time::sleep_until(next.min(deadline)) => {}
            }
            let sent = Instant::now();
            if sent >= deadline {
                return self.fence("no renewal succeeded before the deadline");
            }
            let update = self.kv.update(&self.key, self.value.clone(), revision);
            let outcome = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return self.fenced.cancel(),
                r = tokio::time::timeout_at(deadline, update) => r,
            };
            match outcome {
                Ok(Ok(new_revision)) => {
                    revision = new_revision;
                    last_ok = sent;
                    self.view.send_replace(View {
                        revision,
                        deadline: sent + self.ttl.saturating_sub(self.margin),
                    });
                    next = sent + period;
                }
                Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return self.fence("the key was written by someone else");
                }
                Ok(Err(e)) => {
                    warn!(room = %self.room, error = %e, "lease renewal failed; retrying");
                    next = Instant::now() + retry;
                }
                Err(_) => return self.fence("no renewal succeeded before the deadline"),
            }
        }
    }

    fn fence(&self, why: &'static str) {
        warn!(room = %self.room, why, "lease lost; fencing this holder");
        self.fenced.cancel();
    }
}
