//! What the outbox hands back: claims, completion verdicts, webhook verdicts, stored events,
//! and the filter of the call listing. Plain data, the same for every engine.

use crate::model::transition::Phase;
use crate::model::{ApiCall, CallStatus, Event};

/// A leased call handed to a worker.
#[derive(Debug, Clone)]
pub struct Claim {
    pub call: ApiCall,
    /// Fencing token: the result is only accepted (unless it is a success) with this token.
    pub token: u64,
    pub phase: Phase,
}

/// What `complete` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Recorded; the call as it is now.
    Recorded(Box<ApiCall>),
    /// The lease was stale (rescued and maybe re-claimed) and the outcome was not a success.
    Fenced,
    /// The call is gone (pruned) or already terminal.
    Ignored,
}

/// Result of an inbound webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookApply {
    Duplicate,
    /// Applied to the call.
    Applied(Box<ApiCall>),
    /// No call knows this external id yet: kept until `initialized` links it.
    Parked,
}

/// Filter for `list`.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub room: Option<String>,
    pub block_id: Option<String>,
    pub status: Option<CallStatus>,
    pub limit: Option<usize>,
}

/// An event with its sequence number in the call's log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u32,
    pub event: Event,
}
