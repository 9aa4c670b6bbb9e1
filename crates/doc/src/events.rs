//! Typed change events: one [`ChangeSet`] per committed transaction (local, remote update, or
//! undo) that touched the `blocks` tree. Implemented by deep-observing `blocks` to learn which
//! blocks were touched, then, after the commit's observers ran, re-reading those blocks and
//! diffing against a cached summary. The diff (not the raw Yjs events) is what makes the events
//! follow the reading rule: a duplicate-name entry merging in is not an "entry added", a late
//! record of an old attempt is no status change.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;
use yrs::types::{Event, PathSegment};
use yrs::{BranchID, DeepObservable, Doc, Map, MapRef, Out, ReadTxn, TransactionMut};

use crate::read::{self, EntryView, field};
use crate::{DocError, Status, Workspace};

/// One typed change. Block-level changes come first for a block, then entry changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
#[non_exhaustive]
pub enum Change {
    /// A block appeared (its entries follow as `EntryAdded`/`StatusChanged`).
    BlockAdded {
        /// Block id.
        block_id: String,
        /// Its type.
        block_type: String,
    },
    /// A block disappeared (no per-entry events follow).
    BlockRemoved {
        /// Block id.
        block_id: String,
    },
    /// The content text of an existing block changed.
    ContentChanged {
        /// Block id.
        block_id: String,
    },
    /// A logical entry appeared.
    EntryAdded {
        /// Block id.
        block_id: String,
        /// Entry name.
        index_name: String,
        /// Its configuration.
        collection_configs: Value,
    },
    /// A logical entry disappeared.
    EntryRemoved {
        /// Block id.
        block_id: String,
        /// Entry name.
        index_name: String,
    },
    /// The effective status of an entry changed (a new entry starts from attempt 0
    /// `notStarted`, so adding an entry that requests attempt 1 also yields this).
    /// `status == NotStarted` means "attempt `attempt` is requested".
    StatusChanged {
        /// Block id.
        block_id: String,
        /// Entry name.
        index_name: String,
        /// Effective attempt.
        attempt: u64,
        /// Effective status.
        status: Status,
        /// The entry's whole effective view.
        entry: EntryView,
    },
}

impl Change {
    /// The block this change is about.
    pub fn block_id(&self) -> &str {
        match self {
            Change::BlockAdded { block_id, .. }
            | Change::BlockRemoved { block_id }
            | Change::ContentChanged { block_id }
            | Change::EntryAdded { block_id, .. }
            | Change::EntryRemoved { block_id, .. }
            | Change::StatusChanged { block_id, .. } => block_id,
        }
    }

    /// The entry this change is about, for entry-level changes.
    pub fn index_name(&self) -> Option<&str> {
        match self {
            Change::EntryAdded { index_name, .. }
            | Change::EntryRemoved { index_name, .. }
            | Change::StatusChanged { index_name, .. } => Some(index_name),
            _ => None,
        }
    }
}

/// The changes of one committed transaction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeSet {
    /// The transaction origin as text (`None` without origin; undo/redo transactions carry the
    /// undo manager's binary origin, shown as `0x` + hex).
    pub origin: Option<String>,
    /// The changes, grouped by block in id order.
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// Was this transaction written with `origin` (e.g. [`crate::BRIDGE_ORIGIN`])?
    pub fn is_from(&self, origin: &str) -> bool {
        self.origin.as_deref() == Some(origin)
    }
}

pub(crate) fn origin_string(o: &yrs::Origin) -> String {
    let bytes: &[u8] = o.as_ref();
    // Text origins pass through; binary ones (the undo manager uses a pointer) become hex.
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
        _ => {
            let mut s = String::from("0x");
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

/// What we remember of a block between transactions.
#[derive(Clone, PartialEq)]
struct BlockSummary {
    identity: BranchID,
    block_type: String,
    entries: Vec<EntryView>,
}

fn summarize<T: ReadTxn>(txn: &T, blocks: &MapRef, id: &str) -> Option<BlockSummary> {
    let m = read::block_map(txn, blocks, id)?;
    let identity = <MapRef as AsRef<yrs::branch::Branch>>::as_ref(&m).id();
    Some(BlockSummary {
        identity,
        block_type: read::string_field(txn, &m, field::TYPE).unwrap_or_default(),
        entries: read::logical_entries(txn, &m)
            .iter()
            .map(read::LogicalEntry::view)
            .collect(),
    })
}

#[derive(Default)]
struct State {
    cache: HashMap<String, BlockSummary>,
    /// Blocks touched by the transaction being committed → was their content touched?
    touched: BTreeMap<String, bool>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A poisoned lock only means an earlier callback panicked; the state is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn record_touched(txn: &TransactionMut, events: &yrs::types::Events, st: &mut State) {
    for e in events.iter() {
        let path = e.path();
        match path.front() {
            // An event on `blocks` itself: keys are block ids.
            None => {
                if let Event::Map(me) = e {
                    for k in me.keys(txn).keys() {
                        st.touched.entry(k.to_string()).or_insert(false);
                    }
                }
            }
            Some(PathSegment::Key(id)) => {
                let content = match path.get(1) {
                    Some(PathSegment::Key(k)) => k.as_ref() == field::CONTENT,
                    // An event on the block map: did its `content` key change?
                    None => match e {
                        Event::Map(me) => me.keys(txn).contains_key(field::CONTENT),
                        _ => false,
                    },
                    _ => false,
                };
                let t = st.touched.entry(id.to_string()).or_insert(false);
                *t |= content;
            }
            Some(PathSegment::Index(_)) => {}
        }
    }
}

fn diff(
    id: &str,
    old: Option<&BlockSummary>,
    new: Option<&BlockSummary>,
    content_touched: bool,
    out: &mut Vec<Change>,
) {
    let added = |out: &mut Vec<Change>, n: &BlockSummary| {
        out.push(Change::BlockAdded {
            block_id: id.into(),
            block_type: n.block_type.clone(),
        });
        entry_diff(id, &[], &n.entries, out);
    };
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => out.push(Change::BlockRemoved {
            block_id: id.into(),
        }),
        (None, Some(n)) => added(out, n),
        (Some(o), Some(n)) if o.identity != n.identity => {
            // Replaced by another block map with the same id (e.g. concurrent adds).
            out.push(Change::BlockRemoved {
                block_id: id.into(),
            });
            added(out, n);
        }
        (Some(o), Some(n)) => {
            if content_touched {
                out.push(Change::ContentChanged {
                    block_id: id.into(),
                });
            }
            entry_diff(id, &o.entries, &n.entries, out);
        }
    }
}

fn entry_diff(id: &str, old: &[EntryView], new: &[EntryView], out: &mut Vec<Change>) {
    for o in old {
        if !new.iter().any(|n| n.index_name == o.index_name) {
            out.push(Change::EntryRemoved {
                block_id: id.into(),
                index_name: o.index_name.clone(),
            });
        }
    }
    for n in new {
        let prev = old.iter().find(|o| o.index_name == n.index_name);
        if prev.is_none() {
            out.push(Change::EntryAdded {
                block_id: id.into(),
                index_name: n.index_name.clone(),
                collection_configs: n.collection_configs.clone(),
            });
        }
        let changed = match prev {
            Some(p) => {
                (
                    p.attempt,
                    p.status,
                    &p.api_call_id,
                    &p.result,
                    &p.error,
                    p.completed_at,
                ) != (
                    n.attempt,
                    n.status,
                    &n.api_call_id,
                    &n.result,
                    &n.error,
                    n.completed_at,
                )
            }
            None => n.attempt > 0,
        };
        if changed {
            out.push(Change::StatusChanged {
                block_id: id.into(),
                index_name: n.index_name.clone(),
                attempt: n.attempt,
                status: n.status,
                entry: n.clone(),
            });
        }
    }
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

/// Keeps a [`Workspace::observe`] callback registered; dropping it unregisters.
pub struct ChangeSubscription {
    doc: Doc,
    blocks: MapRef,
    key: String,
    active: Arc<AtomicBool>,
}

impl std::fmt::Debug for ChangeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSubscription")
            .field("key", &self.key)
            .finish()
    }
}

impl Drop for ChangeSubscription {
    fn drop(&mut self) {
        // Silences the callbacks even if unregistering fails (dropped during a transaction).
        self.active.store(false, Ordering::Release);
        self.blocks.unobserve_deep(self.key.as_str());
        let _ = self.doc.unobserve_after_transaction(self.key.as_str());
    }
}

impl Workspace {
    /// Calls `f` with the typed [`ChangeSet`] of every committed transaction that changed the
    /// typed view (local writes, applied updates, undo/redo). Filter on
    /// [`ChangeSet::origin`] to ignore your own writes.
    ///
    /// `f` runs inside the commit, with the document locked: it must not open a transaction on
    /// this workspace (it would get [`DocError::Busy`]) — hand the `ChangeSet` to a channel.
    /// Must not be called while a transaction is open.
    pub fn observe<F>(&self, f: F) -> Result<ChangeSubscription, DocError>
    where
        F: Fn(&ChangeSet) + Send + Sync + 'static,
    {
        let key = format!(
            "weaver-doc/observe/{}",
            NEXT_KEY.fetch_add(1, Ordering::Relaxed)
        );
        let active = Arc::new(AtomicBool::new(true));
        let state = Arc::new(Mutex::new(State::default()));
        {
            use yrs::Transact;
            let txn = self.doc().try_transact().map_err(|_| DocError::Busy)?;
            let mut st = lock(&state);
            for (id, out) in self.blocks_map().iter(&txn) {
                if let Out::YMap(_) = out
                    && let Some(s) = summarize(&txn, self.blocks_map(), id)
                {
                    st.cache.insert(id.to_string(), s);
                }
            }
        }
        let (st1, act1) = (state.clone(), active.clone());
        self.blocks_map()
            .observe_deep(key.as_str(), move |txn, events| {
                if act1.load(Ordering::Acquire) {
                    record_touched(txn, events, &mut lock(&st1));
                }
            });
        let (st2, act2, blocks) = (state, active.clone(), self.blocks_map().clone());
        let registered = self
            .doc()
            .observe_after_transaction(key.as_str(), move |txn| {
                let mut st = lock(&st2);
                let touched = std::mem::take(&mut st.touched);
                if touched.is_empty() || !act2.load(Ordering::Acquire) {
                    return;
                }
                let mut changes = Vec::new();
                for (id, content) in touched {
                    let new = summarize(txn, &blocks, &id);
                    diff(&id, st.cache.get(&id), new.as_ref(), content, &mut changes);
                    match new {
                        Some(n) => st.cache.insert(id, n),
                        None => st.cache.remove(&id),
                    };
                }
                drop(st);
                if !changes.is_empty() {
                    f(&ChangeSet {
                        origin: txn.origin().map(origin_string),
                        changes,
                    });
                }
            });
        if registered.is_err() {
            self.blocks_map().unobserve_deep(key.as_str());
            return Err(DocError::Busy);
        }
        Ok(ChangeSubscription {
            doc: self.doc().clone(),
            blocks: self.blocks_map().clone(),
            key,
            active,
        })
    }
}
