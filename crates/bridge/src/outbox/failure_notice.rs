//! `FailureNotice`: a durable intent to tell the operator's endpoint that a call gave up (the
//! `call.failed` webhook). Queued in the transaction that fails the call, so a crash after that
//! commit still delivers it; it carries everything the webhook says, so it outlives the call's
//! pruning and needs no read of the call when it is sent.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ApiCall, FailureReason};

/// Longest error text a notice carries (error texts come from outside: API bodies, webhooks).
const MAX_ERROR_CHARS: usize = 2000;

/// What the `call.failed` webhook reports about one failed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureNotice {
    pub call_id: Uuid,
    pub room: String,
    pub block_id: String,
    pub index_name: String,
    /// The document's indexing attempt the call served.
    pub attempt: u32,
    pub integration: String,
    /// Delivery tries the call made.
    pub tries: u32,
    pub error: String,
    pub reason: FailureReason,
    /// When the call failed (ms since the Unix epoch).
    pub failed_at: u64,
}

impl FailureNotice {
    /// The notice of `call`, which has just failed.
    pub fn for_call(call: &ApiCall) -> Self {
        Self {
            call_id: call.id,
            room: call.room.clone(),
            block_id: call.block_id.clone(),
            index_name: call.index_name.clone(),
            attempt: call.attempt,
            integration: call.integration.clone(),
            tries: call.tries,
            error: call
                .error
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(MAX_ERROR_CHARS)
                .collect(),
            reason: call.failure_reason.unwrap_or_default(),
            failed_at: call.completed_at.unwrap_or(call.created_at),
        }
    }
}
