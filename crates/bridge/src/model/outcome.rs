//! `Outcome`: what an integration reports for one try of a call; the input of the call's state
//! transition (`transition.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::FailureReason;

/// What an integration reports for one try. Serializable: a replicated outbox logs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Finished successfully (sync API, or a poll that found the job done).
    Completed {
        external_id: Option<String>,
        data: Value,
    },
    /// Accepted asynchronously; finishes by webhook or polling (`poll_after_ms`).
    Started {
        external_id: String,
        poll_after_ms: Option<u64>,
    },
    /// A poll found the job still running.
    Pending { poll_after_ms: u64 },
    /// Failed; `retryable` decides between a scheduled retry and a terminal failure.
    Failed {
        error: String,
        retryable: bool,
        retry_after_ms: Option<u64>,
        reason: FailureReason,
    },
}

impl Outcome {
    /// One line for the audit log (`late_result_ignored` events).
    pub fn describe(&self) -> String {
        match self {
            Self::Completed { .. } => "completed".into(),
            Self::Started { external_id, .. } => format!("started {external_id}"),
            Self::Pending { .. } => "pending".into(),
            Self::Failed { error, .. } => format!("failed: {error}"),
        }
    }
}
