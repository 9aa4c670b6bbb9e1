//! The typed blocks view served at `GET /api/rooms/{room}/blocks`: a document state (v1
//! update) in, JSON out. The relay itself knows nothing of the schema; this is the one place
//! that asks the document crate (`weaver_doc::Workspace::to_json`, equal to the JavaScript
//! `readBlocks(doc)`) for its view.

use crate::error::RelayError;

/// Renders a room's state as `{"blocks": [...]}` (the weaver-doc typed view).
pub fn blocks_json(state: &[u8]) -> Result<serde_json::Value, RelayError> {
    // The state comes from our own store, but yrs may still panic on odd content: contain it.
    std::panic::catch_unwind(|| {
        weaver_doc::Workspace::from_update_v1(state)
            .and_then(|ws| ws.to_json())
            .map_err(|e| RelayError::Internal(format!("blocks view: {e}")))
    })
    .map_err(|_| RelayError::Internal("yrs panicked rendering blocks".into()))?
}
