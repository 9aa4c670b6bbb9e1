//! The local replica: one redb file (`<dir>/replica.redb`) holding the document's update log,
//! the local updates the server has not acknowledged yet, and this replica's client id.
//!
//! Rules:
//! - A local edit is appended with `Durability::Immediate` before the call that made it
//!   returns, to the log and to the pending table: a process killed right after keeps it, and
//!   the next process on the same directory pushes it (the handshake sends everything the
//!   server lacks, and the pending table says it is not acknowledged yet).
//! - Updates from the server are appended without an fsync: losing them in a crash costs only
//!   a re-download on the next connect.
//! - The client id is stored once and reused, so a replica never writes under another id and
//!   never reuses one with a state it does not hold.
//! - Compaction replaces the log by one full-state update (in one durable transaction) once
//!   it holds `compact_after` updates; it is skipped while yrs holds causally incomplete
//!   updates, which a full-state encoding would not carry. Pending rows are kept apart from the
//!   log, so compaction never touches what "unsynced" means (see `ack.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, Durability, ReadableTable, TableDefinition};
use weaver_doc::{ChangeSet, ChangeSubscription, Workspace, WriteTxn};
use yrs::{ReadTxn, Transact};

use crate::ack::{self, PendingSummary, ServerKnowledge};
use crate::error::ReplicaError;

const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("client_updates");
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("client_pending");
const META: TableDefinition<&str, u64> = TableDefinition::new("client_meta");
const META_CLIENT_ID: &str = "client_id";

/// The file name inside the replica directory.
pub const REPLICA_FILE: &str = "replica.redb";

/// Origin of the transactions of local edits.
pub const LOCAL_ORIGIN: &str = "weaver-client/local";
/// Origin of the transactions that apply what the server sent.
pub const REMOTE_ORIGIN: &str = "weaver-client/remote";

/// Called with every change set of the document (local and remote), inside its commit.
pub(crate) type ChangeSink = Arc<dyn Fn(&ChangeSet) + Send + Sync>;

pub(crate) struct Replica {
    db: Database,
    ws: Workspace,
    client_id: u64,
    next_seq: u64,
    log_len: u64,
    /// Bytes in the log (an upper bound of the document's encoded size).
    log_bytes: u64,
    compact_after: u64,
    max_doc_bytes: u64,
    pending: BTreeMap<u64, PendingSummary>,
    sink: ChangeSink,
    _subscription: ChangeSubscription,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("client_id", &self.client_id)
            .field("log_len", &self.log_len)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// A fresh 53-bit client id (Yjs ids are JavaScript safe integers), never 0.
fn random_client_id() -> u64 {
    (rand::random::<u64>() & ((1 << 53) - 1)).max(1)
}

struct Loaded {
    client_id: u64,
    log: Vec<(u64, Vec<u8>)>,
    pending: Vec<(u64, Vec<u8>)>,
}

fn load(db: &Database) -> Result<Loaded, ReplicaError> {
    let txn = db.begin_write()?;
    let loaded = {
        let mut meta = txn.open_table(META)?;
        let stored = meta.get(META_CLIENT_ID)?.map(|g| g.value());
        let client_id = match stored {
            Some(id) => id,
            None => {
                let id = random_client_id();
                meta.insert(META_CLIENT_ID, id)?;
                id
            }
        };
        let read_all = |t: &redb::Table<u64, &[u8]>| -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        };
        let log = read_all(&txn.open_table(UPDATES)?)?;
        let pending = read_all(&txn.open_table(PENDING)?)?;
        Loaded {
            client_id,
            log,
            pending,
        }
    };
    txn.commit()?;
    Ok(loaded)
}

/// A workspace with `client_id` holding every update of `log`, observed by `sink`.
fn rebuild(
    client_id: u64,
    log: &[(u64, Vec<u8>)],
    sink: &ChangeSink,
) -> Result<(Workspace, ChangeSubscription), ReplicaError> {
    let ws = Workspace::with_client_id(client_id);
    for (_, update) in log {
        ws.apply_update_v1(update, "weaver-client/load")
            .map_err(ReplicaError::Corrupt)?;
    }
    let sink = sink.clone();
    let sub = ws.observe(move |cs| sink(cs))?;
    Ok((ws, sub))
}

impl Replica {
    /// Opens (or creates) the replica in `dir` and loads its document.
    pub(crate) fn open(
        dir: &Path,
        compact_after: u64,
        max_doc_bytes: u64,
        sink: ChangeSink,
    ) -> Result<Replica, ReplicaError> {
        std::fs::create_dir_all(dir).map_err(|source| ReplicaError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path: PathBuf = dir.join(REPLICA_FILE);
        let db = Database::create(&path).map_err(|source| ReplicaError::Open {
            path: path.clone(),
            source,
        })?;
        let loaded = load(&db)?;
        let (ws, sub) = rebuild(loaded.client_id, &loaded.log, &sink)?;
        let mut pending = BTreeMap::new();
        for (seq, update) in &loaded.pending {
            // Our own bytes; one yrs refuses cannot be pushed either, so it is not waited for.
            if let Some(u) = ack::decode(update) {
                pending.insert(*seq, PendingSummary::of(&u));
            }
        }
        let next_seq = loaded
            .log
            .iter()
            .chain(loaded.pending.iter())
            .map(|(s, _)| s + 1)
            .max()
            .unwrap_or(1);
        Ok(Replica {
            db,
            ws,
            client_id: loaded.client_id,
            next_seq,
            log_len: loaded.log.len() as u64,
            log_bytes: loaded.log.iter().map(|(_, u)| u.len() as u64).sum(),
            compact_after: compact_after.max(2),
            max_doc_bytes,
            pending,
            sink,
            _subscription: sub,
        })
    }

    pub(crate) fn workspace(&self) -> &Workspace {
        &self.ws
    }

    pub(crate) fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Local updates the server has not acknowledged.
    pub(crate) fn unsynced(&self) -> usize {
        self.pending.len()
    }

    /// Runs a local edit and makes it durable before returning; the update is empty when `f`
    /// changed nothing. If the commit fails the edit stays in memory (yrs cannot roll back)
    /// and the error is returned: the caller knows it is not durable.
    pub(crate) fn transact<R>(
        &mut self,
        f: impl FnOnce(&mut WriteTxn<'_>) -> R,
    ) -> Result<(R, Vec<u8>), ReplicaError> {
        let (r, update) = self.ws.transact(LOCAL_ORIGIN, f)?;
        if !update.is_empty() {
            self.append(&update, true)?;
        }
        Ok((r, update))
    }

    /// Applies an update the server sent (already validated by the caller). On failure the
    /// document is rebuilt from the log: a panic inside yrs integration may have left it
    /// half-applied.
    pub(crate) fn apply_remote(&mut self, update: &[u8]) -> Result<(), ReplicaError> {
        let len = update.len() as u64;
        if self.log_bytes.saturating_add(len) > self.max_doc_bytes {
            // The log over-counts what compaction folds away: fold, then decide.
            self.compact()?;
            if self.log_bytes.saturating_add(len) > self.max_doc_bytes {
                return Err(ReplicaError::TooLarge {
                    limit: self.max_doc_bytes,
                });
            }
        }
        if let Err(e) = self.ws.apply_update_v1(update, REMOTE_ORIGIN) {
            self.reload()?;
            return Err(ReplicaError::Doc(e));
        }
        self.append(update, false)
    }

    fn reload(&mut self) -> Result<(), ReplicaError> {
        let loaded = load(&self.db)?;
        let (ws, sub) = rebuild(self.client_id, &loaded.log, &self.sink)?;
        self.ws = ws;
        self._subscription = sub;
        Ok(())
    }

    fn append(&mut self, update: &[u8], local: bool) -> Result<(), ReplicaError> {
        let seq = self.next_seq;
        let mut txn = self.db.begin_write()?;
        if !local {
            // Not durable on purpose (module doc); if redb refuses, the default is durable.
            let _ = txn.set_durability(Durability::None);
        }
        {
            txn.open_table(UPDATES)?.insert(seq, update)?;
            if local {
                txn.open_table(PENDING)?.insert(seq, update)?;
            }
        }
        txn.commit()?;
        self.next_seq += 1;
        self.log_len += 1;
        self.log_bytes += update.len() as u64;
        if local && let Some(u) = ack::decode(update) {
            self.pending.insert(seq, PendingSummary::of(&u));
        }
        if self.log_len >= self.compact_after {
            self.compact()?;
        }
        Ok(())
    }

    /// Folds the log into one full-state update (see the module doc for when it is skipped).
    pub(crate) fn compact(&mut self) -> Result<(), ReplicaError> {
        let incomplete = match self.ws.doc().try_transact() {
            Ok(t) => t.has_missing_updates(),
            Err(_) => true,
        };
        if incomplete {
            return Ok(());
        }
        let state = self.ws.encode_state_v1()?;
        let seq = self.next_seq;
        let txn = self.db.begin_write()?;
        {
            let mut log = txn.open_table(UPDATES)?;
            log.retain(|_, _| false)?;
            log.insert(seq, state.as_slice())?;
        }
        txn.commit()?;
        self.next_seq += 1;
        self.log_len = 1;
        self.log_bytes = state.len() as u64;
        Ok(())
    }

    /// Drops the pending rows the server now holds (see `ack.rs`); true if any went.
    pub(crate) fn acknowledge(&mut self, server: &ServerKnowledge) -> Result<bool, ReplicaError> {
        let done: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| server.covers(p))
            .map(|(s, _)| *s)
            .collect();
        if done.is_empty() {
            return Ok(false);
        }
        let mut txn = self.db.begin_write()?;
        // Losing this in a crash only makes the rows pending again until the next handshake.
        let _ = txn.set_durability(Durability::None);
        {
            let mut t = txn.open_table(PENDING)?;
            for s in &done {
                t.remove(s)?;
            }
        }
        txn.commit()?;
        for s in done {
            self.pending.remove(&s);
        }
        Ok(true)
    }
}
