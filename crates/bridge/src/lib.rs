//! weaver-bridge: turns document changes into durable APICalls, runs them through
//! integrations, and writes the outcomes back into the document.
//!
//! Files: `engine/` (start-up, the document actor with its mirrors, the pure rules,
//! write-back, dispatcher, workers, completer, pruner), `model` (APICall, events, pure fold),
//! `outbox` (redb tables), `integration/` (the `Integration` trait and registry; `local`,
//! and `http`, the outbound HTTP integration), `routes` (the inbound HTTP routes: `/api/calls…`
//! and `/api/webhooks/{integration}`), `webhook` (inbound payload; the Standard Webhooks
//! verifier itself is `weaver_auth::webhook`), `host` (the `DocumentHost` seam and
//! `MemoryHost`), `retry` (the delivery policy over `weaver_retry`), `config` (TOML),
//! `metrics` (metric names).
//! The bridge reaches documents only through the `DocumentHost` trait; it never depends on
//! the relay crate.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
mod engine;
mod host;
mod integration;
mod metrics;
pub mod model;
pub mod outbox;
mod retry;
mod routes;
mod webhook;

pub use config::BridgeConfig;
pub use engine::{Bridge, BridgeHandle, RetryError};
pub use host::{DocumentHost, HostError, HostEvent, MemoryHost, UpdateStream};
pub use integration::{BoxFuture, HttpIntegration, Integration, LocalIntegration, Registry};
pub use model::{ApiCall, CallStatus, Event, EventKind};
pub use outbox::{Outbox, Outcome};
pub use webhook::{WebhookPayload, WebhookSecret};

/// Errors of the bridge crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    #[error("bridge config: {0}")]
    Config(String),
    #[error("bridge store: {0}")]
    Store(String),
    #[error("document host: {0}")]
    Host(String),
    #[error("document: {0}")]
    Doc(String),
    #[error("integration: {0}")]
    Integration(String),
    #[error("bridge is shutting down")]
    Shutdown,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
