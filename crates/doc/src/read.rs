//! Typed, read-only views of the document (blocks, logical index entries with their effective
//! status) and the JSON view shared with JavaScript `readBlocks`. Reading never fails: values
//! that do not fit the schema read as documented in docs/schema.md (ignored or defaulted).

use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Value};
use yrs::{Array, ArrayRef, GetString, Map, MapRef, Out, ReadTxn, TextRef};

use crate::json::any_to_json;
use crate::status::{Status, StatusRecord, effective_status};

/// Field names of the schema.
pub(crate) mod field {
    pub const ID: &str = "id";
    pub const TYPE: &str = "type";
    pub const CONTENT: &str = "content";
    pub const INDEXING_LIST: &str = "indexingList";
    pub const INDEX_NAME: &str = "index_name";
    pub const COLLECTION_CONFIGS: &str = "collection_configs";
    pub const STATUS_LOG: &str = "status_log";
}

/// A block as the typed view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockView {
    /// Block id (its key in `blocks`).
    pub id: String,
    /// Block type (`""` if absent or not a string).
    #[serde(rename = "type")]
    pub block_type: String,
    /// Content text (`""` if absent).
    pub content: String,
    /// Logical index entries in display order.
    #[serde(rename = "indexingList")]
    pub indexing_list: Vec<EntryView>,
}

impl BlockView {
    /// The logical entry named `index_name`.
    pub fn entry(&self, index_name: &str) -> Option<&EntryView> {
        self.indexing_list
            .iter()
            .find(|e| e.index_name == index_name)
    }
}

/// A logical index entry with its effective status (the fields of its effective record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryView {
    /// The entry's identity within its block.
    pub index_name: String,
    /// Configuration (a JSON object; `{}` if absent or not an object).
    pub collection_configs: Value,
    /// Effective status (`NotStarted` when there is no valid record).
    pub status: Status,
    /// Effective attempt (0 when there is no valid record).
    pub attempt: u64,
    /// APICall id of the effective record.
    pub api_call_id: Option<String>,
    /// Result object of the effective record.
    pub result: Option<Value>,
    /// Error message of the effective record.
    pub error: Option<String>,
    /// Completion time (ms since the epoch) of the effective record.
    #[serde(serialize_with = "crate::json::serialize_js_number")]
    pub completed_at: Option<f64>,
}

/// One logical entry (rule 1) with handles to the Y.Maps it is made of.
pub(crate) struct LogicalEntry {
    pub name: String,
    /// The Y.Maps sharing this name, in array order, with their positions in `indexingList`.
    pub maps: Vec<(u32, MapRef)>,
    pub collection_configs: Value,
    pub records: Vec<StatusRecord>,
}

impl LogicalEntry {
    pub fn view(&self) -> EntryView {
        let eff = effective_status(&self.records);
        EntryView {
            index_name: self.name.clone(),
            collection_configs: self.collection_configs.clone(),
            status: eff.map_or(Status::NotStarted, |r| r.status),
            attempt: eff.map_or(0, |r| r.attempt),
            api_call_id: eff.and_then(|r| r.api_call_id.clone()),
            result: eff.and_then(|r| r.result.clone()),
            error: eff.and_then(|r| r.error.clone()),
            completed_at: eff.and_then(|r| r.completed_at),
        }
    }

    /// Current effective attempt (0 if none).
    pub fn attempt(&self) -> u64 {
        effective_status(&self.records).map_or(0, |r| r.attempt)
    }
}

pub(crate) fn block_map<T: ReadTxn>(txn: &T, blocks: &MapRef, id: &str) -> Option<MapRef> {
    match blocks.get(txn, id) {
        Some(Out::YMap(m)) => Some(m),
        _ => None,
    }
}

pub(crate) fn content_text<T: ReadTxn>(txn: &T, block: &MapRef) -> Option<TextRef> {
    match block.get(txn, field::CONTENT) {
        Some(Out::YText(t)) => Some(t),
        _ => None,
    }
}

pub(crate) fn indexing_list<T: ReadTxn>(txn: &T, block: &MapRef) -> Option<ArrayRef> {
    match block.get(txn, field::INDEXING_LIST) {
        Some(Out::YArray(a)) => Some(a),
        _ => None,
    }
}

pub(crate) fn status_log<T: ReadTxn>(txn: &T, entry: &MapRef) -> Option<ArrayRef> {
    match entry.get(txn, field::STATUS_LOG) {
        Some(Out::YArray(a)) => Some(a),
        _ => None,
    }
}

pub(crate) fn string_field<T: ReadTxn>(txn: &T, map: &MapRef, key: &str) -> Option<String> {
    match map.get(txn, key) {
        Some(Out::Any(yrs::Any::String(s))) => Some(s.to_string()),
        _ => None,
    }
}

/// Logical entries of a block (rule 1), in display order.
pub(crate) fn logical_entries<T: ReadTxn>(txn: &T, block: &MapRef) -> Vec<LogicalEntry> {
    let Some(list) = indexing_list(txn, block) else {
        return Vec::new();
    };
    let mut out: Vec<LogicalEntry> = Vec::new();
    for (pos, item) in list.iter(txn).enumerate() {
        let Out::YMap(entry) = item else { continue };
        let Some(name) = string_field(txn, &entry, field::INDEX_NAME) else {
            continue;
        };
        let idx = match out.iter().position(|e| e.name == name) {
            Some(i) => i,
            None => {
                let collection_configs = match entry.get(txn, field::COLLECTION_CONFIGS) {
                    Some(Out::Any(a @ yrs::Any::Map(_))) => any_to_json(&a),
                    _ => Value::Object(JsonMap::new()),
                };
                out.push(LogicalEntry {
                    name,
                    maps: Vec::new(),
                    collection_configs,
                    records: Vec::new(),
                });
                out.len() - 1
            }
        };
        let le = &mut out[idx];
        if let Some(log) = status_log(txn, &entry) {
            le.records.extend(log.iter(txn).filter_map(|r| match r {
                Out::Any(a) => StatusRecord::from_any(&a),
                _ => None,
            }));
        }
        le.maps.push((pos as u32, entry));
    }
    out
}

pub(crate) fn logical_entry<T: ReadTxn>(
    txn: &T,
    block: &MapRef,
    name: &str,
) -> Option<LogicalEntry> {
    logical_entries(txn, block)
        .into_iter()
        .find(|e| e.name == name)
}

pub(crate) fn block_view<T: ReadTxn>(txn: &T, id: &str, block: &MapRef) -> BlockView {
    BlockView {
        id: id.to_string(),
        block_type: string_field(txn, block, field::TYPE).unwrap_or_default(),
        content: content_text(txn, block)
            .map(|t| t.get_string(txn))
            .unwrap_or_default(),
        indexing_list: logical_entries(txn, block)
            .iter()
            .map(LogicalEntry::view)
            .collect(),
    }
}

/// Orders ids as JavaScript's default string comparison does (UTF-16 code units), so Rust and
/// JS list blocks identically even for ids outside the Basic Multilingual Plane.
pub(crate) fn js_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

pub(crate) fn all_blocks<T: ReadTxn>(txn: &T, blocks: &MapRef) -> Vec<BlockView> {
    let mut v: Vec<BlockView> = blocks
        .iter(txn)
        .filter_map(|(id, out)| match out {
            Out::YMap(m) => Some(block_view(txn, id, &m)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| js_cmp(&a.id, &b.id));
    v
}

/// `{"blocks": [...]}` exactly as JS `readBlocks` (same values; object key order may differ).
pub(crate) fn blocks_json(views: &[BlockView]) -> Value {
    let blocks = serde_json::to_value(views).unwrap_or_else(|_| Value::Array(Vec::new()));
    let mut m = JsonMap::new();
    m.insert("blocks".into(), blocks);
    Value::Object(m)
}
