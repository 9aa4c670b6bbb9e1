//! The typed blocks view served at `GET /api/rooms/{room}/blocks`: a document state (v1
//! update) in, JSON out. The relay itself knows nothing of the schema; this is the one place
//! that asks the document crate for its view.

use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::{Transact, Update};

use crate::error::RelayError;

/// Renders a room's state as JSON. Until weaver-doc's typed view lands this is the raw
/// `blocks` root map (`{ "blocks": { id: {...} } }`); switch the body to the typed view here.
pub fn blocks_json(state: &[u8]) -> Result<serde_json::Value, RelayError> {
    let doc = crate::room::new_doc();
    let update = Update::decode_v1(state).map_err(|e| RelayError::Internal(e.to_string()))?;
    let blocks = doc.get_or_insert_map("blocks");
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut txn = doc.transact_mut();
        txn.apply_update(update).map_err(|e| e.to_string())
    }))
    .map_err(|_| RelayError::Internal("yrs panicked rendering blocks".into()))?;
    applied.map_err(RelayError::Internal)?;
    let txn = doc.transact();
    let mut text = String::new();
    blocks.to_json(&txn).to_json(&mut text);
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RelayError::Internal(e.to_string()))?;
    Ok(serde_json::json!({ "blocks": value }))
}
