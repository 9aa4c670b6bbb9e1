//! The single-node [`Ledger`]: the `notify_rooms` and `notify_meta` tables in the shared redb
//! file. Never holds a write transaction across network I/O (each operation is one short
//! transaction on the blocking pool).

use std::collections::HashSet;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{NotifyError, store_err};
use crate::ledger::{Delivered, Ledger, LedgerError};

/// `room` → `(generation, seq)`: the seq of the last `room.updated` delivered (or refused for
/// good) for it, and how many times the room was deleted. A deleted room's seqs restart at 1;
/// the generation keeps its `webhook-id`s from repeating those of the room before.
pub(crate) const NOTIFIED: TableDefinition<&str, (u64, u64)> = TableDefinition::new("notify_rooms");
/// `baseline` → 1 once the first start recorded the rooms that existed before notifications.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("notify_meta");

/// A room in the prefix whose row says it was delivered but which is no longer stored, with
/// the row's generation.
pub(crate) type GoneRoom = (String, u64);

/// The notifier's tables in the node's redb file.
#[derive(Debug, Clone)]
pub(crate) struct RedbLedger {
    pub(crate) db: Arc<Database>,
}

fn ledger_err(e: impl Into<NotifyError>) -> LedgerError {
    LedgerError::Store(Box::new(e.into()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NotifyError> + Send + 'static,
) -> Result<T, NotifyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(NotifyError::Blocking)?
}

impl RedbLedger {
    /// Creates the tables if needed; true when no baseline was recorded yet.
    pub(crate) fn open(db: Arc<Database>) -> Result<(RedbLedger, bool), NotifyError> {
        // The tables exist from here on, so deliveries work even if the first scan fails; the
        // baseline marker is written only with the baseline itself, so a failed one is redone.
        let txn = db.begin_write().map_err(store_err)?;
        txn.open_table(NOTIFIED).map_err(store_err)?;
        let fresh = txn
            .open_table(META)
            .map_err(store_err)?
            .get("baseline")
            .map_err(store_err)?
            .is_none();
        txn.commit().map_err(store_err)?;
        Ok((RedbLedger { db }, fresh))
    }

    /// First start: record every room's seq as delivered, and the marker that says so.
    pub(crate) async fn baseline(&self, rooms: Vec<(String, u64)>) -> Result<(), NotifyError> {
        let db = self.db.clone();
        blocking(move || {
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
    }

    /// Of the stored `rooms`, those whose seq differs from the recorded one (stale), and the
    /// rooms in `prefix` recorded as delivered that are no longer stored (gone).
    pub(crate) async fn compare(
        &self,
        rooms: Vec<(String, u64)>,
        prefix: String,
    ) -> Result<(Vec<String>, Vec<GoneRoom>), NotifyError> {
        let db = self.db.clone();
        blocking(move || {
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
        })
        .await
    }

    /// Rooms deleted while the notifier was not looking: the same as [`Ledger::deleted`].
    pub(crate) async fn forget_all(&self, gone: Vec<GoneRoom>) -> Result<(), NotifyError> {
        let db = self.db.clone();
        blocking(move || {
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
    }
}

impl Ledger for RedbLedger {
    async fn delivered(&self, room: &str) -> Result<Option<Delivered>, LedgerError> {
        let db = self.db.clone();
        let room = room.to_owned();
        blocking(move || {
            let txn = db.begin_read().map_err(store_err)?;
            let t = txn.open_table(NOTIFIED).map_err(store_err)?;
            Ok(t.get(room.as_str())
                .map_err(store_err)?
                .map(|v| v.value())
                .map(|(generation, seq)| Delivered { generation, seq }))
        })
        .await
        .map_err(ledger_err)
    }

    /// Not fsync'd on its own: it becomes durable with the relay's next commit, and a crash
    /// before that only sends this seq again (at least once), while an fsync per delivery
    /// would hold redb's single writer away from the relay's commits.
    async fn record(&self, room: &str, generation: u64, seq: u64) -> Result<(), LedgerError> {
        self.update_row(room, move |gen_, _| {
            (gen_ == generation).then_some((generation, seq))
        })
        .await
    }

    /// A deleted room's seqs restart at 1: its recorded seq is cleared.
    async fn deleted(&self, room: &str, _last_seq: u64) -> Result<(), LedgerError> {
        self.update_row(room, |gen_, _| Some((gen_ + 1, 0))).await
    }
}

impl RedbLedger {
    /// One room's row `(generation, seq)` (`(0, 0)` when absent) replaced by what `change`
    /// returns (`None`: left as it is), in one write transaction that is not fsync'd on its
    /// own (see [`Ledger::record`]).
    async fn update_row(
        &self,
        room: &str,
        change: impl FnOnce(u64, u64) -> Option<(u64, u64)> + Send + 'static,
    ) -> Result<(), LedgerError> {
        let db = self.db.clone();
        let room = room.to_owned();
        blocking(move || {
            let mut txn = db.begin_write().map_err(store_err)?;
            txn.set_durability(redb::Durability::None)
                .map_err(store_err)?;
            {
                let mut t = txn.open_table(NOTIFIED).map_err(store_err)?;
                let (gen_, seq) = t
                    .get(room.as_str())
                    .map_err(store_err)?
                    .map_or((0, 0), |v| v.value());
                if let Some(row) = change(gen_, seq) {
                    t.insert(room.as_str(), row).map_err(store_err)?;
                }
            }
            txn.commit().map_err(store_err)
        })
        .await
        .map_err(ledger_err)
    }
}
