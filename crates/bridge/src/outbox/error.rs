//! `OutboxError`: what can go wrong inside an outbox engine. The redb engine reports its
//! database errors and its value codec; another engine adds its own variants (the enum is
//! non-exhaustive). As in `crate::error`, each cause is printed once: shown by a `transparent`
//! variant, or exposed as `source()` under a message that says what was being done.

/// Errors of an outbox engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The database refused or failed (open, transaction, table, storage, commit).
    #[error(transparent)]
    Database(#[from] redb::Error),
    /// A record could not be serialized.
    #[error("a record does not encode")]
    Encode(#[source] serde_json::Error),
    /// A stored record does not parse.
    #[error("a stored record does not decode")]
    Decode(#[source] serde_json::Error),
    /// A stored value carries an encoding version this build does not know.
    #[error("unknown value encoding version {0}")]
    UnknownEncoding(u8),
    /// A stored value is empty (not even its version byte).
    #[error("empty value")]
    EmptyValue,
    /// The tables were written by a newer (or older, incompatible) layout.
    #[error("bridge tables have schema version {found}, this build understands {supported}")]
    SchemaVersion { found: u64, supported: u64 },
    /// A batch operation returned fewer results than it was given items (an engine bug).
    #[error("{0} returned nothing")]
    Empty(&'static str),
    /// Another handle (a newer bridge leader) wrote to the shared outbox since this handle
    /// last did: nothing was written, and this handle writes nothing more.
    #[error("the outbox was opened by another handle (a newer bridge leader); this one is fenced")]
    Fenced,
    /// A remote outbox's storage failed or did not answer (what was being done, and why).
    #[error("outbox storage: {what}")]
    Remote {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A record of a remote outbox's log does not decode or does not apply: the log is
    /// damaged or written by a newer build. Replaying past it would diverge, so the outbox
    /// refuses to open.
    #[error("outbox log record {seq} is unusable: {why}")]
    Corrupt { seq: u64, why: String },
}

impl OutboxError {
    /// Any redb error (each redb operation has its own error type; all convert to `redb::Error`).
    pub(crate) fn db<E: Into<redb::Error>>(e: E) -> Self {
        Self::Database(e.into())
    }
}
