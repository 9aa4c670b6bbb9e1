//! [`Workspace`]: a yrs document holding the Weaver schema, with update exchange (v1), typed
//! reads, and [`WriteTxn`], the only way this crate writes the document. No IO lives here:
//! callers move the update bytes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, Doc, Map, MapPrelim, MapRef, OffsetKind, Options, ReadTxn,
    StateVector, Text, TextPrelim, Transact, TransactionMut, Update,
};

use crate::DocError;
use crate::json::json_to_any;
use crate::read::{self, BlockView, field};
use crate::status::{Status, StatusRecord};

/// Name of the root map.
pub const BLOCKS_ROOT: &str = "blocks";

/// A Weaver workspace document: a `yrs::Doc` (UTF-16 offsets, like Yjs) and its `blocks` root.
///
/// Cloning is cheap and yields another handle to the same document.
///
/// Nothing here blocks on the document lock: while another transaction is open (on another
/// thread, or the commit that is running an observer callback on this one), reads and writes
/// return [`DocError::Busy`]. Give each document one owner, as Weaver's room actors do.
#[derive(Debug, Clone)]
pub struct Workspace {
    doc: Doc,
    blocks: MapRef,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace::new()
    }
}

fn busy(_: yrs::TransactionAcqError) -> DocError {
    DocError::Busy
}

fn panic_reason(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "decoder panicked".to_string())
}

impl Workspace {
    /// An empty workspace with a random client id.
    pub fn new() -> Self {
        Workspace::from_options(Options::default())
    }

    /// An empty workspace with a fixed client id (tests, deterministic fixtures). Client ids
    /// must be unique among the replicas that write a document; like Yjs ids they have 53 bits
    /// (higher bits are dropped).
    pub fn with_client_id(client_id: u64) -> Self {
        let id = yrs::ClientID::new(client_id & ((1 << 53) - 1));
        Workspace::from_options(Options::with_client_id(id))
    }

    fn from_options(mut options: Options) -> Self {
        // Yjs counts text positions in UTF-16 code units; so must we, or indices drift on
        // anything outside ASCII.
        options.offset_kind = OffsetKind::Utf16;
        let doc = Doc::with_options(options);
        let blocks = doc.get_or_insert_map(BLOCKS_ROOT);
        Workspace { doc, blocks }
    }

    /// Options for creating a `yrs::Doc` elsewhere (e.g. in the relay) that this crate can wrap
    /// with [`Workspace::from_doc`]: UTF-16 offsets like Yjs.
    pub fn doc_options() -> Options {
        Options {
            offset_kind: OffsetKind::Utf16,
            ..Options::default()
        }
    }

    /// Wraps an existing document. It must use UTF-16 offsets ([`Workspace::doc_options`]);
    /// with any other offset kind text positions would not match Yjs, so that is an error.
    pub fn from_doc(doc: Doc) -> Result<Self, DocError> {
        if doc.offset_kind() != OffsetKind::Utf16 {
            return Err(DocError::Invalid {
                field: "offset_kind",
                reason: "the yrs Doc must use OffsetKind::Utf16 (Yjs positions)".into(),
            });
        }
        let blocks = doc.get_or_insert_map(BLOCKS_ROOT);
        Ok(Workspace { doc, blocks })
    }

    /// A workspace initialised from a full-state (or any) v1 update.
    pub fn from_update_v1(update: &[u8]) -> Result<Self, DocError> {
        let ws = Workspace::new();
        ws.apply_update_v1(update, "load")?;
        Ok(ws)
    }

    /// The underlying yrs document (for bindings; write through [`Workspace::transact`] to keep
    /// the schema).
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The `blocks` root map.
    pub fn blocks_map(&self) -> &MapRef {
        &self.blocks
    }

    /// This replica's client id.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Applies a v1 update (from a peer, storage or the relay) under `origin`. Malformed bytes
    /// are an error, never a panic. Updates with missing dependencies are kept pending by yrs
    /// and integrate once the missing ones arrive.
    pub fn apply_update_v1(&self, update: &[u8], origin: &str) -> Result<(), DocError> {
        let malformed = |reason: String| DocError::Malformed {
            what: "update",
            reason,
        };
        // yrs reserves the declared client count up front (a hash map it initialises), so a
        // 5-byte update claiming 2^28 clients costs hundreds of MB; every client takes at
        // least 2 bytes, so a count beyond the input size is malformed.
        check_leading_count(update, 2, "update")?;
        // yrs may panic on hostile bytes; decoding touches no shared state, so catching is safe.
        let decoded = catch_unwind(|| Update::decode_v1(update))
            .map_err(|p| malformed(panic_reason(p)))?
            .map_err(|e| malformed(e.to_string()))?;
        catch_unwind(AssertUnwindSafe(|| {
            let mut txn = self.doc.try_transact_mut_with(origin).map_err(busy)?;
            crate::pending::apply_update_retrying_pending(&mut txn, decoded)
                .map_err(|e| malformed(e.to_string()))?;
            // Commit inside the guard, so a panic while integrating is caught too.
            txn.commit();
            Ok(())
        }))
        .map_err(|p| malformed(panic_reason(p)))?
    }

    /// `Ok` when no transaction is open on this document right now (so one can be started
    /// from this thread without deadlocking).
    pub(crate) fn idle(&self) -> Result<(), DocError> {
        self.doc.try_transact().map(drop).map_err(busy)
    }

    /// The whole document as one v1 update.
    pub fn encode_state_v1(&self) -> Result<Vec<u8>, DocError> {
        let txn = self.doc.try_transact().map_err(busy)?;
        Ok(txn.encode_state_as_update_v1(&StateVector::default()))
    }

    /// This replica's state vector (v1).
    pub fn state_vector_v1(&self) -> Result<Vec<u8>, DocError> {
        use yrs::updates::encoder::Encode;
        let txn = self.doc.try_transact().map_err(busy)?;
        Ok(txn.state_vector().encode_v1())
    }

    /// What a peer with state vector `state_vector` (v1 bytes) is missing, as a v1 update.
    pub fn encode_diff_v1(&self, state_vector: &[u8]) -> Result<Vec<u8>, DocError> {
        check_leading_count(state_vector, 2, "state vector")?;
        let sv = catch_unwind(|| StateVector::decode_v1(state_vector))
            .map_err(|p| DocError::Malformed {
                what: "state vector",
                reason: panic_reason(p),
            })?
            .map_err(|e| DocError::Malformed {
                what: "state vector",
                reason: e.to_string(),
            })?;
        let txn = self.doc.try_transact().map_err(busy)?;
        Ok(txn.encode_diff_v1(&sv))
    }

    /// Runs `f` in one transaction with `origin` and commits it. Returns `f`'s value and the v1
    /// update the transaction produced (empty when it changed nothing), ready to broadcast.
    ///
    /// yrs has no rollback: if `f` returns early after some writes, those writes stay. Every
    /// [`WriteTxn`] operation validates before writing, so a failed operation writes nothing.
    /// Fails with [`DocError::Busy`] if a transaction is already open (e.g. inside an observer).
    pub fn transact<R>(
        &self,
        origin: &str,
        f: impl FnOnce(&mut WriteTxn<'_>) -> R,
    ) -> Result<(R, Vec<u8>), DocError> {
        let txn = self.doc.try_transact_mut_with(origin).map_err(busy)?;
        let mut w = WriteTxn {
            txn,
            blocks: self.blocks.clone(),
        };
        let r = f(&mut w);
        let update = if w.txn.has_changes() {
            w.txn.encode_update_v1()
        } else {
            Vec::new()
        };
        drop(w); // commits: observers run here
        Ok((r, update))
    }

    /// All blocks, sorted by id (UTF-16 order, as JS sorts).
    pub fn blocks(&self) -> Result<Vec<BlockView>, DocError> {
        let txn = self.doc.try_transact().map_err(busy)?;
        Ok(read::all_blocks(&txn, &self.blocks))
    }

    /// One block.
    pub fn block(&self, id: &str) -> Result<Option<BlockView>, DocError> {
        let txn = self.doc.try_transact().map_err(busy)?;
        Ok(read::block_map(&txn, &self.blocks, id).map(|m| read::block_view(&txn, id, &m)))
    }

    /// The typed JSON view, equal to JavaScript `readBlocks(doc)`.
    pub fn to_json(&self) -> Result<Value, DocError> {
        Ok(read::blocks_json(&self.blocks()?))
    }
}

/// Rejects input whose leading lib0 var-uint count promises more items (of at least
/// `min_item_len` bytes each) than the input could hold.
fn check_leading_count(
    bytes: &[u8],
    min_item_len: u64,
    what: &'static str,
) -> Result<(), DocError> {
    let mut count: u64 = 0;
    for (i, b) in bytes.iter().take(10).enumerate() {
        count |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let room = (bytes.len() - i - 1) as u64;
            if count.saturating_mul(min_item_len) > room {
                return Err(DocError::Malformed {
                    what,
                    reason: format!("declares {count} items in {} bytes", bytes.len()),
                });
            }
            return Ok(());
        }
    }
    if bytes.len() >= 10 {
        // Ten bytes without a terminator is more than any u64: yrs would read a wrapped,
        // arbitrary count and reserve for it (found by `mutated_updates_never_panic`).
        return Err(DocError::Malformed {
            what,
            reason: "leading count is not a valid var-uint".into(),
        });
    }
    // Empty or truncated: let the decoder report it.
    Ok(())
}

/// Is UTF-16 position `pos` between two characters of `s` (not inside a surrogate pair)?
fn is_utf16_boundary(s: &str, pos: u64) -> bool {
    let mut at = 0u64;
    for c in s.chars() {
        if at >= pos {
            break;
        }
        at += c.len_utf16() as u64;
    }
    at <= pos
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An open read-write transaction on a [`Workspace`]; see [`Workspace::transact`].
///
/// Text positions and lengths are in UTF-16 code units, as in Yjs.
pub struct WriteTxn<'doc> {
    txn: TransactionMut<'doc>,
    blocks: MapRef,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("origin", &self.txn.origin())
            .finish_non_exhaustive()
    }
}

impl<'doc> WriteTxn<'doc> {
    /// The raw yrs transaction (escape hatch for bindings; keep to the schema).
    pub fn yrs_txn(&mut self) -> &mut TransactionMut<'doc> {
        &mut self.txn
    }

    fn block_map(&self, id: &str) -> Result<MapRef, DocError> {
        read::block_map(&self.txn, &self.blocks, id).ok_or_else(|| DocError::NoBlock(id.into()))
    }

    fn text(&self, block_id: &str) -> Result<yrs::TextRef, DocError> {
        let b = self.block_map(block_id)?;
        read::content_text(&self.txn, &b).ok_or_else(|| DocError::NoBlock(block_id.into()))
    }

    /// Does a block with this id exist?
    pub fn has_block(&self, id: &str) -> bool {
        read::block_map(&self.txn, &self.blocks, id).is_some()
    }

    /// Adds a block `{id, type, content, indexingList: []}`. Fails if `id` is taken here
    /// (two replicas adding the same id concurrently: Yjs keeps one of the two).
    pub fn add_block(&mut self, id: &str, block_type: &str, content: &str) -> Result<(), DocError> {
        if self.blocks.contains_key(&self.txn, id) {
            return Err(DocError::BlockExists(id.into()));
        }
        let b = self.blocks.insert(&mut self.txn, id, MapPrelim::default());
        b.insert(&mut self.txn, field::ID, id);
        b.insert(&mut self.txn, field::TYPE, block_type);
        b.insert(&mut self.txn, field::CONTENT, TextPrelim::new(content));
        b.insert(&mut self.txn, field::INDEXING_LIST, ArrayPrelim::default());
        Ok(())
    }

    /// Removes a block; `false` if it did not exist.
    pub fn remove_block(&mut self, id: &str) -> bool {
        if !self.blocks.contains_key(&self.txn, id) {
            return false;
        }
        self.blocks.remove(&mut self.txn, id);
        true
    }

    /// Content length in UTF-16 code units.
    pub fn content_len(&self, block_id: &str) -> Result<u32, DocError> {
        Ok(self.text(block_id)?.len(&self.txn))
    }

    /// Content of a block.
    pub fn content(&self, block_id: &str) -> Result<String, DocError> {
        use yrs::GetString;
        Ok(self.text(block_id)?.get_string(&self.txn))
    }

    /// Checks `index..index + len` lies in the content and does not cut a surrogate pair (JS
    /// would keep a lone surrogate where yrs writes U+FFFD, and the replicas' views would differ).
    fn check_range(&self, t: &yrs::TextRef, index: u32, len: u32) -> Result<(), DocError> {
        use yrs::GetString;
        let content_len = t.len(&self.txn);
        let end = u64::from(index) + u64::from(len);
        if end > u64::from(content_len) {
            return Err(DocError::OutOfRange {
                index: index.into(),
                len: len.into(),
                content_len: content_len.into(),
            });
        }
        let s = t.get_string(&self.txn);
        for pos in [u64::from(index), end] {
            if !is_utf16_boundary(&s, pos) {
                return Err(DocError::Invalid {
                    field: "index",
                    reason: format!("position {pos} splits a surrogate pair"),
                });
            }
        }
        Ok(())
    }

    /// Inserts `text` at UTF-16 position `index`.
    pub fn insert_text(&mut self, block_id: &str, index: u32, text: &str) -> Result<(), DocError> {
        let t = self.text(block_id)?;
        self.check_range(&t, index, 0)?;
        t.insert(&mut self.txn, index, text);
        Ok(())
    }

    /// Deletes `len` UTF-16 code units at `index`.
    pub fn delete_text(&mut self, block_id: &str, index: u32, len: u32) -> Result<(), DocError> {
        let t = self.text(block_id)?;
        self.check_range(&t, index, len)?;
        if len > 0 {
            t.remove_range(&mut self.txn, index, len);
        }
        Ok(())
    }

    /// Replaces `len` UTF-16 code units at `index` with `text` (JS `editContent`).
    pub fn replace_text(
        &mut self,
        block_id: &str,
        index: u32,
        len: u32,
        text: &str,
    ) -> Result<(), DocError> {
        let t = self.text(block_id)?;
        self.check_range(&t, index, len)?;
        if len > 0 {
            t.remove_range(&mut self.txn, index, len);
        }
        t.insert(&mut self.txn, index, text);
        Ok(())
    }

    /// Asks for indexing (JS `requestIndex`): adds the entry with attempt 1, or requests attempt
    /// `A + 1` on the existing logical entry (its `collection_configs` stay unchanged).
    /// `collection_configs` must be a JSON object. Returns the requested attempt.
    pub fn request_index(
        &mut self,
        block_id: &str,
        index_name: &str,
        collection_configs: &Value,
    ) -> Result<u64, DocError> {
        if !collection_configs.is_object() {
            return Err(DocError::Invalid {
                field: "collection_configs",
                reason: "must be a JSON object".into(),
            });
        }
        let block = self.block_map(block_id)?;
        let at = now_ms();
        if let Some(le) = read::logical_entry(&self.txn, &block, index_name) {
            let attempt = le.attempt() + 1;
            let rec = StatusRecord::new(attempt, Status::NotStarted);
            self.push_record(&le.maps[0].1, rec.to_any(at));
            return Ok(attempt);
        }
        let list = match read::indexing_list(&self.txn, &block) {
            Some(l) => l,
            None => block.insert(&mut self.txn, field::INDEXING_LIST, ArrayPrelim::default()),
        };
        let entry = list.push_back(&mut self.txn, MapPrelim::default());
        entry.insert(&mut self.txn, field::INDEX_NAME, index_name);
        entry.insert(
            &mut self.txn,
            field::COLLECTION_CONFIGS,
            json_to_any(collection_configs),
        );
        let log = entry.insert(&mut self.txn, field::STATUS_LOG, ArrayPrelim::default());
        log.push_back(
            &mut self.txn,
            StatusRecord::new(1, Status::NotStarted).to_any(at),
        );
        Ok(1)
    }

    fn push_record(&mut self, entry: &MapRef, record: Any) {
        let log: ArrayRef = match read::status_log(&self.txn, entry) {
            Some(l) => l,
            None => entry.insert(&mut self.txn, field::STATUS_LOG, ArrayPrelim::default()),
        };
        log.push_back(&mut self.txn, record);
    }

    /// Removes every entry named `index_name` (JS `removeIndex`); returns how many Y.Maps went.
    pub fn remove_index(&mut self, block_id: &str, index_name: &str) -> usize {
        let Some(block) = read::block_map(&self.txn, &self.blocks, block_id) else {
            return 0;
        };
        let Some(le) = read::logical_entry(&self.txn, &block, index_name) else {
            return 0;
        };
        let Some(list) = read::indexing_list(&self.txn, &block) else {
            return 0;
        };
        // From the end, so earlier positions stay valid.
        for (pos, _) in le.maps.iter().rev() {
            list.remove(&mut self.txn, *pos);
        }
        le.maps.len()
    }

    /// Records an outcome (JS `recordOutcome`): appends `record` to the entry's first
    /// `status_log`. `Ok(false)` without writing when the block or entry is gone or the same fact
    /// (attempt, status, api_call_id) is already recorded; `Err` if the record is invalid.
    pub fn record_status(
        &mut self,
        block_id: &str,
        index_name: &str,
        record: &StatusRecord,
    ) -> Result<bool, DocError> {
        record.validate()?;
        let Some(block) = read::block_map(&self.txn, &self.blocks, block_id) else {
            return Ok(false);
        };
        let Some(le) = read::logical_entry(&self.txn, &block, index_name) else {
            return Ok(false);
        };
        if le.records.iter().any(|r| r.same_fact(record)) {
            return Ok(false);
        }
        self.push_record(&le.maps[0].1, record.to_any(now_ms()));
        Ok(true)
    }

    /// Optional pruning: deletes valid records of attempts older than the entry's effective
    /// attempt (they can never be effective again, so no replica's view changes). Returns how
    /// many records were deleted.
    pub fn prune_status_log(&mut self, block_id: &str, index_name: &str) -> usize {
        let Some(block) = read::block_map(&self.txn, &self.blocks, block_id) else {
            return 0;
        };
        let Some(le) = read::logical_entry(&self.txn, &block, index_name) else {
            return 0;
        };
        let current = le.attempt();
        let mut removed = 0;
        for (_, entry) in &le.maps {
            let Some(log) = read::status_log(&self.txn, entry) else {
                continue;
            };
            let stale: Vec<u32> = log
                .iter(&self.txn)
                .enumerate()
                .filter_map(|(i, r)| match r {
                    yrs::Out::Any(a) => StatusRecord::from_any(&a)
                        .filter(|r| r.attempt < current)
                        .map(|_| i as u32),
                    _ => None,
                })
                .collect();
            for i in stale.into_iter().rev() {
                log.remove(&mut self.txn, i);
                removed += 1;
            }
        }
        removed
    }

    /// All blocks as seen inside this transaction.
    pub fn blocks(&self) -> Vec<BlockView> {
        read::all_blocks(&self.txn, &self.blocks)
    }

    /// One block as seen inside this transaction.
    pub fn block(&self, id: &str) -> Option<BlockView> {
        read::block_map(&self.txn, &self.blocks, id).map(|m| read::block_view(&self.txn, id, &m))
    }
}
