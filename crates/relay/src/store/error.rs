//! `StoreError`: what any room storage engine reports through [`super::RoomStore`].
//!
//! Engine-neutral: an engine's own failure (redb's, a JetStream client's) travels boxed inside
//! the variant of the operation family it broke, so the relay and its callers never name an
//! engine's error type. Errors of opening an engine are the engine's own (e.g.
//! [`super::redb::OpenError`]): opening is not part of the seam.

/// An engine's own error, boxed so the trait does not name any engine.
pub type EngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of room storage operations.
// The engine's error is shown in the message and deliberately not exposed as `source()`: the
// relay shows storage failures by their message alone (HTTP bodies, the room's log line, which
// the durability tests read), and error chains (anyhow `{:#}`) would otherwise print it twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading a room or the listing failed.
    #[error("storage error: {0}")]
    Read(EngineError),
    /// A write (append, compact, delete) was not made durable; nothing of it was acknowledged.
    #[error("storage error: {0}")]
    Write(EngineError),
    /// Another writer took the room over (a cluster engine refused this node's write because
    /// someone else appended since): nothing of the write was acknowledged, and the room's
    /// actor must step down instead of treating the store as failed.
    #[error("room taken over by another writer: {0}")]
    Fenced(EngineError),
    /// The store was stopped ([`super::RoomStore::stop`]) or its engine went away.
    #[error("the persister has stopped")]
    Stopped,
    /// A stored row the engine cannot decode; the room cannot be loaded as it is.
    #[error("corrupt row in {table} for room {room}: {reason}")]
    Corrupt {
        table: &'static str,
        room: String,
        reason: &'static str,
    },
    /// A compaction that would lose data or go backwards; refused on its own, nothing changed.
    #[error("refused compaction of room {room}: {reason}")]
    CompactionRefused { room: String, reason: String },
    /// A version whose `base` is not the room's newest row; refused on its own.
    #[error("refused version of room {room}: base {base} is not the newest version")]
    VersionRefused { room: String, base: u64 },
    /// A version row asked for is not stored (it never was, or retention removed it).
    #[error("version {id} of room {room} is not stored")]
    VersionMissing { room: String, id: u64 },
}

impl StoreError {
    /// A read failure of the engine.
    pub fn read(e: impl Into<EngineError>) -> Self {
        StoreError::Read(e.into())
    }

    /// A write failure of the engine.
    pub fn write(e: impl Into<EngineError>) -> Self {
        StoreError::Write(e.into())
    }

    /// True when the write was refused because another writer owns the room now.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced(_))
    }

    /// The engine's own error behind a read or write failure, for callers that downcast it.
    pub fn engine_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            StoreError::Read(e) | StoreError::Write(e) | StoreError::Fenced(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}
