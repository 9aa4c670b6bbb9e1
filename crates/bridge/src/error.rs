//! `BridgeError`: the bridge crate's error at its public edges (start-up, the actors, the HTTP
//! API). Each cause keeps its own typed error as the source; the outbox's storage errors are
//! `OutboxError` (in `outbox/error.rs`), the document's are `weaver_doc::DocError`.
//!
//! Messages repeat their source's text (`{0}`) on purpose: every caller logs errors as one line
//! with `%e`, and those lines must keep saying what failed underneath.

use std::sync::Arc;

use crate::host::HostError;
use crate::outbox::OutboxError;

/// Errors of the bridge crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is invalid (a bad value, a missing secret, a malformed header).
    #[error("bridge config: {0}")]
    Config(String),
    /// The configuration file is not valid TOML for the bridge's config.
    #[error("bridge config: {0}")]
    ConfigParse(#[source] toml::de::Error),
    /// The configuration file could not be read.
    #[error("bridge config: cannot read {}: {source}", path.display())]
    ConfigRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The durable outbox failed.
    #[error("bridge store: {0}")]
    Store(#[from] OutboxError),
    /// A blocking outbox task panicked or was cancelled.
    #[error("bridge store: blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    /// The document host refused or failed.
    #[error("document host: {0}")]
    Host(#[from] HostError),
    /// The bridge has no mirror of a room it was asked to write into.
    #[error("document host: room {0} is not loaded")]
    RoomNotLoaded(String),
    /// The document model refused an update or a status record.
    #[error("document: {0}")]
    Doc(#[from] weaver_doc::DocError),
    /// One failure answered to several waiters (a batch commit that failed as a whole).
    #[error(transparent)]
    Shared(Arc<BridgeError>),
    #[error("bridge is shutting down")]
    Shutdown,
}
