//! `Writeback`: a durable intent to write a status record into a room's document, and how a
//! call's outcome becomes one (with its `result` bounded so the relay never refuses it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{ApiCall, json_depth};

/// Status value written into the document for an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DocStatus {
    NotStarted,
    Processing,
    Done,
    Error,
}

impl DocStatus {
    /// The schema's status string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "notStarted",
            Self::Processing => "processing",
            Self::Done => "done",
            Self::Error => "error",
        }
    }
}

/// A durable intent to write a status record into a room's document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Writeback {
    pub room: String,
    pub block_id: String,
    pub index_name: String,
    pub attempt: u32,
    pub status: DocStatus,
    pub api_call_id: Option<String>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub completed_at: Option<u64>,
}

/// Largest `result` written into the document; bigger responses stay in the APICall only.
const MAX_DOC_RESULT_BYTES: usize = 8 * 1024;
/// Deepest `result` written into the document (the relay's validator allows 64 levels).
const MAX_DOC_RESULT_DEPTH: usize = 32;

impl Writeback {
    /// The write-back showing `call` (as it is now) with `status`.
    pub fn for_call(call: &ApiCall, status: DocStatus) -> Self {
        let result = call.response_data.clone().filter(|_| status == DocStatus::Done).map(|v| {
            let n = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
            if json_depth(&v) > MAX_DOC_RESULT_DEPTH {
                // The relay refuses deeply nested values; a refused write-back would retry forever.
                serde_json::json!({"truncated": true, "reason": "too deeply nested", "see": format!("/api/calls/{}", call.id)})
            } else if n > MAX_DOC_RESULT_BYTES {
                serde_json::json!({"truncated": true, "bytes": n, "see": format!("/api/calls/{}", call.id)})
            } else {
                v
            }
        });
        Self {
            room: call.room.clone(),
            block_id: call.block_id.clone(),
            index_name: call.index_name.clone(),
            attempt: call.attempt,
            status,
            api_call_id: Some(call.id.to_string()),
            result,
            // Error texts come from outside (API bodies, webhooks): keep the document's copy short.
            error: if status == DocStatus::Error {
                call.error.as_ref().map(|e| e.chars().take(2000).collect())
            } else {
                None
            },
            completed_at: if status == DocStatus::Processing {
                None
            } else {
                call.completed_at
            },
        }
    }
}
