//! weaver-bridge: turns document changes into durable APICalls, runs them through
//! integrations, and writes the outcomes back into the document.
//!
//! Files: `engine/` (start-up, the document actor with its mirrors, the pure rules,
//! write-back, dispatcher, workers, completer, pruner), `model` (APICall, events, pure fold, the
//! pure state transition), `outbox` (the `OutboxStore` trait and its redb engine), `error`
//! (`BridgeError`), `integration/` (the `Integration` trait and registry; `local`, and `http`,
//! the outbound HTTP integration), `routes` (the inbound HTTP routes: `/api/calls…` and
//! `/api/webhooks/{integration}`), `webhook` (inbound payload; the Standard Webhooks verifier
//! itself is `weaver_auth::webhook`), `host` (the `DocumentHost` seam and `MemoryHost`),
//! `retry` (the delivery policy over `weaver_retry`), `config` (TOML), `metrics` (metric names).
//! The bridge reaches documents only through the `DocumentHost` trait; it never depends on
//! the relay crate.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod access;
pub mod config;
mod engine;
mod error;
mod host;
mod integration;
pub mod metrics;
pub mod model;
pub mod outbox;
mod retry;
mod routes;
mod tls;
mod webhook;

pub use config::BridgeConfig;
pub use engine::{Bridge, BridgeHandle, RetryError};
pub use error::{BridgeError, IntegrationSetupError};
pub use host::{DocumentHost, HostError, HostEvent, MemoryHost, UpdateStream};
pub use integration::{BoxFuture, HttpIntegration, Integration, LocalIntegration, Registry};
pub use model::{ApiCall, CallStatus, Event, EventKind, FailureReason};
pub use outbox::{FailureNotice, OutboxError, OutboxStore, Outcome, RedbOutbox};
pub use webhook::{WebhookPayload, WebhookSecret};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
