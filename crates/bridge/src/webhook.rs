//! Inbound webhooks: the payload format, and the Standard Webhooks verifier re-exported from
//! `weaver-auth` (which owns the signature crypto, so the fuzz workspace can test it without
//! building the bridge).
//!
//! `routes.rs` verifies the raw bytes before anything is parsed. Storage (dedupe by
//! `webhook-id`, parking of webhooks that arrive before `initialized`) is the outbox's
//! (`OutboxStore::apply_webhook`; the redb engine's `outbox/redb/webhooks.rs`).

use serde::Deserialize;
use serde_json::Value;

pub use weaver_auth::webhook::{WebhookError, WebhookSecret, verify};

/// The JSON body the bridge accepts on `POST /api/webhooks/{integration}`.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookPayload {
    /// `processing`, `completed` or `failed`.
    #[serde(rename = "type", alias = "status")]
    pub kind: String,
    pub external_id: String,
    /// Response data of `completed` (also accepted as `result`).
    #[serde(default, alias = "result")]
    pub data: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// `failed` only: whether the external side thinks a retry helps (default false).
    #[serde(default)]
    pub retryable: bool,
}
