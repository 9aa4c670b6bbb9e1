//! The persister: the one thread that performs every relay write. It takes the first queued
//! request, drains what else is queued (bounded), applies all of it to ONE write transaction,
//! makes it durable once (group commit) and only then answers each request. With a journal
//! (`journal.rs`), a group of appends is made durable by one appended, fsynced journal frame and
//! commits to redb without an fsync; a group that compacts, deletes or adds a version, a full or
//! old journal, the idle tick and stopping checkpoint instead (a `Durability::Immediate` commit
//! that records the journal generation done, then the journal starts over). Without a journal
//! every group commits with `Durability::Immediate`. A storage error fails the whole group and
//! marks the store failed for good.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use redb::Database;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info};

use super::compaction::compact_in_txn;
use super::format::{FORMAT_V1, ROOMS, SNAPSHOTS, UPDATES, last_seq};
use super::journal::Journal;
use super::{replay, versions, write_err};
use crate::metrics as m;
use crate::store::{NewVersion, Retention, StoreError, VersionMeta};

/// Upper bound on requests folded into one write transaction: keeps a single commit's latency
/// and memory bounded when thousands of rooms write at once.
const MAX_GROUP_OPS: usize = 4096;
/// Upper bound on update bytes folded into one write transaction.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Depth of the persister's request queue; senders wait (backpressure) when it is full.
pub(super) const PERSIST_QUEUE: usize = 8192;

/// How the persister commits. Both are `Durability::Immediate` (durable when commit returns);
/// docs/storage.md says why one-phase is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// redb's two-phase commit (two fsyncs): also defeats an attacker who controls the order
    /// in which the disk writes pages, can crash the machine during the fsync, and knows the
    /// database contents well enough to forge an XXH3 collision.
    TwoPhase,
    /// One fsync per commit (1PC + checksum, redb's own default): a torn commit after a crash
    /// fails its checksums and is rolled back to the previous commit. The default: the fsync is
    /// the fan-out latency, and nothing unacknowledged is lost either way.
    #[default]
    OnePhase,
}

/// A request to the persister.
pub(super) enum StoreOp {
    Append {
        room: Arc<str>,
        updates: Vec<Bytes>,
        reply: oneshot::Sender<Result<u64, Arc<StoreError>>>,
    },
    Compact {
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
    },
    Delete {
        room: Arc<str>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
    },
    AddVersion {
        room: Arc<str>,
        version: Box<(NewVersion, Retention)>,
        reply: oneshot::Sender<Result<VersionMeta, Arc<StoreError>>>,
    },
    /// Checkpoint the journal if it holds frames (the idle tick).
    Checkpoint,
    /// Commit everything queued before this, then exit the persister.
    Stop { reply: oneshot::Sender<()> },
}

impl std::fmt::Debug for StoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreOp::Append { room, updates, .. } => {
                write!(f, "Append({room}, {} updates)", updates.len())
            }
            StoreOp::Compact { room, upto_seq, .. } => write!(f, "Compact({room}, {upto_seq})"),
            StoreOp::Delete { room, .. } => write!(f, "Delete({room})"),
            StoreOp::AddVersion { room, .. } => write!(f, "AddVersion({room})"),
            StoreOp::Checkpoint => write!(f, "Checkpoint"),
            StoreOp::Stop { .. } => write!(f, "Stop"),
        }
    }
}

/// The persister thread's body: group commits until the queue closes or a `Stop` arrives.
/// `failed` is set for good at the first failed commit.
pub(super) fn persister_loop(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<StoreOp>,
    commit: CommitMode,
    failed: Arc<AtomicBool>,
    mut journal: Option<Journal>,
) {
    info!(journal = journal.is_some(), "persister started");
    let fail = |failed: &AtomicBool| {
        if !failed.swap(true, Ordering::SeqCst) {
            metrics::gauge!(m::STORE_FAILED).set(1.0);
            error!(
                "the store refuses writes after this failure until the server is restarted (redb reopens and checks the file at start); /readyz now answers 503"
            );
        }
    };
    while let Some(first) = rx.blocking_recv() {
        let mut ops = Vec::new();
        let mut stop = None;
        let mut tick = false;
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                StoreOp::Stop { reply } => {
                    stop = Some(reply);
                    break;
                }
                StoreOp::Checkpoint => tick = true,
                op => {
                    bytes += op_bytes(&op);
                    ops.push(op);
                }
            }
            if ops.len() < MAX_GROUP_OPS && bytes < MAX_GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        let healthy = !failed.load(Ordering::SeqCst);
        if !ops.is_empty() {
            let started = Instant::now();
            let n = ops.len();
            if !commit_group(&db, ops, commit, journal.as_mut().filter(|_| healthy)) {
                fail(&failed);
            }
            metrics::histogram!(m::GROUP_COMMIT_OPS).record(n as f64);
            metrics::histogram!(m::GROUP_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        }
        if (tick || stop.is_some())
            && let Some(j) = journal.as_mut()
            && !failed.load(Ordering::SeqCst)
            && j.dirty()
            && let Err(e) = checkpoint(&db, j, commit)
        {
            error!(error = %e, "journal checkpoint failed");
            fail(&failed);
        }
        if let Some(reply) = stop {
            rx.close();
            // Anything that slipped in after Stop is refused (its sender sees a dropped reply).
            while rx.try_recv().is_ok() {}
            let _ = reply.send(());
            break;
        }
    }
    // Dropped without `stop`: the queue was drained above; leave nothing to replay.
    if let Some(j) = journal.as_mut()
        && !failed.load(Ordering::SeqCst)
        && j.dirty()
        && let Err(e) = checkpoint(&db, j, commit)
    {
        error!(error = %e, "journal checkpoint at exit failed; the next start replays it");
    }
    info!("persister stopped");
}

/// One durable commit recording the journal's generation as done, then a fresh journal.
fn checkpoint(db: &Database, journal: &mut Journal, commit: CommitMode) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(write_err)?;
    txn.set_two_phase_commit(commit == CommitMode::TwoPhase);
    txn.set_durability(redb::Durability::Immediate)
        .map_err(write_err)?;
    replay::write_record(&txn, journal.header()).map_err(write_err)?;
    txn.commit().map_err(write_err)?;
    rotate(journal)
}

fn rotate(journal: &mut Journal) -> Result<(), StoreError> {
    let next = journal.header().generation + 1;
    journal.rotate(next).map_err(|e| journal_err(journal, e))?;
    metrics::counter!(m::JOURNAL_CHECKPOINTS_TOTAL).increment(1);
    Ok(())
}

fn journal_err(journal: &Journal, e: std::io::Error) -> StoreError {
    StoreError::write(format!("journal {}: {e}", journal.path().display()))
}

fn op_bytes(op: &StoreOp) -> usize {
    match op {
        StoreOp::Append { updates, .. } => updates.iter().map(|u| u.len()).sum(),
        StoreOp::Compact { snapshot, .. } => snapshot.len(),
        StoreOp::AddVersion { version, .. } => version.0.data.len(),
        StoreOp::Delete { .. } | StoreOp::Checkpoint | StoreOp::Stop { .. } => 0,
    }
}

/// One request of a group: its work and where its answer goes, kept together so that a failure
/// anywhere in the group still answers every request.
enum Job {
    Append {
        room: Arc<str>,
        updates: Vec<Bytes>,
        reply: oneshot::Sender<Result<u64, Arc<StoreError>>>,
        /// The last seq written, once the work is done inside the transaction.
        done: Option<u64>,
    },
    Compact {
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
        /// `Some(Err(..))`: refused on its own, the rest of the group goes on.
        done: Option<Result<(), Arc<StoreError>>>,
    },
    Delete {
        room: Arc<str>,
        reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
        done: bool,
    },
    AddVersion {
        room: Arc<str>,
        version: Box<(NewVersion, Retention)>,
        reply: oneshot::Sender<Result<VersionMeta, Arc<StoreError>>>,
        /// `Some(Err(..))`: refused on its own (a stale base), the rest of the group goes on.
        done: Option<Result<VersionMeta, Arc<StoreError>>>,
    },
}

/// Applies every op to one write transaction and commits once; returns whether it committed.
/// A storage error aborts the whole group and every request in it gets that error (nothing is
/// acknowledged); a semantic refusal (e.g. a compaction that would lose data) fails only its
/// own request.
fn commit_group(
    db: &Database,
    ops: Vec<StoreOp>,
    commit: CommitMode,
    mut journal: Option<&mut Journal>,
) -> bool {
    // Only appends go through the journal: compactions, deletions and versions are checkpoints,
    // so recovery never has to order them against journal frames.
    let journaled = journal.as_ref().is_some_and(|j| !j.due())
        && ops.iter().all(|op| matches!(op, StoreOp::Append { .. }));
    let mut frame: Vec<(Arc<str>, u64, Bytes)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            StoreOp::Append {
                room,
                updates,
                reply,
            } => jobs.push(Job::Append {
                room,
                updates,
                reply,
                done: None,
            }),
            StoreOp::Compact {
                room,
                upto_seq,
                snapshot,
                reply,
            } => jobs.push(Job::Compact {
                room,
                upto_seq,
                snapshot,
                reply,
                done: None,
            }),
            StoreOp::Delete { room, reply } => jobs.push(Job::Delete {
                room,
                reply,
                done: false,
            }),
            StoreOp::AddVersion {
                room,
                version,
                reply,
            } => jobs.push(Job::AddVersion {
                room,
                version,
                reply,
                done: None,
            }),
            // Never reaches a group: the persister takes them out.
            StoreOp::Stop { reply } => {
                let _ = reply.send(());
            }
            StoreOp::Checkpoint => {}
        }
    }
    let result = (|| -> Result<(), StoreError> {
        let mut txn = db.begin_write().map_err(write_err)?;
        txn.set_two_phase_commit(commit == CommitMode::TwoPhase);
        txn.set_durability(if journaled {
            redb::Durability::None
        } else {
            redb::Durability::Immediate
        })
        .map_err(write_err)?;
        {
            let mut log = txn.open_table(UPDATES).map_err(write_err)?;
            let mut snaps = txn.open_table(SNAPSHOTS).map_err(write_err)?;
            let mut rooms = txn.open_table(ROOMS).map_err(write_err)?;
            for job in &mut jobs {
                match job {
                    Job::Append {
                        room,
                        updates,
                        done,
                        ..
                    } => {
                        let (mut seq, registered) =
                            last_seq(&log, &rooms, room).map_err(write_err)?;
                        if !registered {
                            // The key makes the room one of `stored_rooms`; its value only
                            // needs to be a lower bound from now on.
                            rooms
                                .insert(&**room, seq + updates.len() as u64)
                                .map_err(write_err)?;
                        }
                        let mut row = Vec::new();
                        for u in updates.iter() {
                            seq += 1;
                            row.clear();
                            row.push(FORMAT_V1);
                            row.extend_from_slice(u);
                            log.insert((&**room, seq), row.as_slice())
                                .map_err(write_err)?;
                            if journaled {
                                frame.push((room.clone(), seq, u.clone()));
                            }
                        }
                        *done = Some(seq);
                    }
                    Job::Compact {
                        room,
                        upto_seq,
                        snapshot,
                        done,
                        ..
                    } => {
                        let r = compact_in_txn(
                            &mut log, &mut snaps, &mut rooms, room, *upto_seq, snapshot,
                        );
                        *done = Some(match r {
                            Ok(()) => Ok(()),
                            Err(e @ StoreError::CompactionRefused { .. }) => Err(Arc::new(e)),
                            Err(e) => return Err(e),
                        });
                    }
                    Job::Delete { room, done, .. } => {
                        log.retain_in((&**room, 0)..=(&**room, u64::MAX), |_, _| false)
                            .map_err(write_err)?;
                        snaps.remove(&**room).map_err(write_err)?;
                        rooms.remove(&**room).map_err(write_err)?;
                        versions::delete_in_txn(&txn, room)?;
                        *done = true;
                    }
                    Job::AddVersion {
                        room,
                        version,
                        done,
                        ..
                    } => {
                        let (version, retention) = &**version;
                        *done = Some(
                            versions::add_in_txn(&txn, room, version, retention)?.map_err(Arc::new),
                        );
                    }
                }
            }
        }
        match journal.as_deref_mut() {
            // The durability point: the frame is on disk before anyone is answered.
            Some(j) if journaled => {
                j.append(frame.iter().map(|(r, s, u)| (&**r, *s, &u[..])))
                    .map_err(|e| journal_err(j, e))?;
                metrics::counter!(m::JOURNAL_FRAMES_TOTAL).increment(1);
                if let Err(e) = txn.commit() {
                    if let Err(undo) = j.unappend() {
                        error!(error = %undo, "could not take the failed group's journal frame back");
                    }
                    return Err(write_err(e));
                }
            }
            Some(j) => {
                replay::write_record(&txn, j.header()).map_err(write_err)?;
                txn.commit().map_err(write_err)?;
                rotate(j)?;
            }
            None => txn.commit().map_err(write_err)?,
        }
        Ok(())
    })();
    let failure = match result {
        Ok(()) => None,
        Err(e) => {
            error!(error = %e, "group commit failed; nothing in the group was persisted");
            metrics::counter!(m::PERSIST_FAILURES_TOTAL).increment(1);
            Some(Arc::new(e))
        }
    };
    // After a commit every job is done; `Stopped` only guards the impossible.
    let stopped = || Arc::new(StoreError::Stopped);
    for job in jobs {
        match job {
            Job::Append { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None => done.ok_or_else(stopped),
                });
            }
            Job::Compact { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None => done.unwrap_or_else(|| Err(stopped())),
                });
            }
            Job::Delete { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None if done => Ok(()),
                    None => Err(stopped()),
                });
            }
            Job::AddVersion { reply, done, .. } => {
                let _ = reply.send(match &failure {
                    Some(e) => Err(e.clone()),
                    None => done.unwrap_or_else(|| Err(stopped())),
                });
            }
        }
    }
    failure.is_none()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::CommitMode;
    use crate::store::RoomStore;
    use crate::store::redb::test_support::{b, start};

    /// Many concurrent requests (many rooms) are all committed and acknowledged; every room's
    /// log is complete and in order.
    #[tokio::test]
    async fn concurrent_appends_from_many_rooms_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = start(dir.path(), CommitMode::OnePhase);
        let mut tasks = Vec::new();
        for room in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let name: Arc<str> = Arc::from(format!("room-{room}"));
                for i in 0..10 {
                    store
                        .append(name.clone(), vec![b(&format!("{room}:{i}"))])
                        .await
                        .unwrap();
                }
                name
            }));
        }
        for t in tasks {
            let name = t.await.unwrap();
            let loaded = store.load(name.clone()).await.unwrap();
            assert_eq!(loaded.tail.len(), 10, "{name}");
            assert!(loaded.tail.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[tokio::test]
    async fn delete_removes_the_room_and_stop_refuses_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = start(dir.path(), CommitMode::TwoPhase);
        let r: Arc<str> = Arc::from("d");
        store.append(r.clone(), vec![b("1")]).await.unwrap();
        store.compact(r.clone(), 1, b"s".to_vec()).await.unwrap();
        store.append(r.clone(), vec![b("2")]).await.unwrap();
        store.delete(r.clone()).await.unwrap();
        let loaded = store.load(r.clone()).await.unwrap();
        assert!(loaded.snapshot.is_none() && loaded.tail.is_empty());
        assert!(store.rooms().await.unwrap().is_empty());
        store.stop().await;
        assert!(store.append(r, vec![b("late")]).await.is_err());
    }
}
