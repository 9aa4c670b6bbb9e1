//! weaver-bridge: turns document changes into durable APICalls, runs them through
//! integrations, and writes the outcomes back into the document.
//!
//! Layers: `model` (APICall, events, pure fold, the pure state transition), `retry` (backoff,
//! classification), `outbox` (the `OutboxStore` trait and its redb engine), `error` (`BridgeError`), `webhook` (inbound payload; the Standard Webhooks verifier itself is
//! `weaver_auth::webhook`, re-exported there), `config` (TOML).
//! The bridge reaches documents only through the `DocumentHost` trait; it never depends on
//! the relay crate.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod config;
pub mod engine;
mod error;
pub mod host;
pub mod http;
pub mod integration;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod retry;
pub mod webhook;

pub use config::BridgeConfig;
pub use engine::{Bridge, BridgeHandle, RetryError};
pub use error::{BridgeError, IntegrationSetupError};
pub use host::{DocumentHost, HostError, HostEvent, MemoryHost, UpdateStream};
pub use integration::{BoxFuture, Integration, Registry};
pub use model::{ApiCall, CallStatus, Event, EventKind};
pub use outbox::{OutboxError, OutboxStore, Outcome, RedbOutbox};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
