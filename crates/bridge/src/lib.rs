//! weaver-bridge: turns document changes into durable APICalls, runs them through
//! integrations, and writes the outcomes back into the document.
//!
//! Layers: `model` (APICall, events, pure fold), `retry` (backoff, classification),
//! `outbox` (redb tables), `webhook` (inbound payload; the Standard Webhooks verifier itself is
//! `weaver_auth::webhook`, re-exported there), `config` (TOML).
//! The bridge reaches documents only through the `DocumentHost` trait; it never depends on
//! the relay crate.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod config;
pub mod engine;
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
pub use host::{DocumentHost, HostError, HostEvent, MemoryHost, UpdateStream};
pub use integration::{BoxFuture, Integration, Registry};
pub use model::{ApiCall, CallStatus, Event, EventKind};
pub use outbox::{Outbox, Outcome};

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
