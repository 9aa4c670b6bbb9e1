//! `DocumentHost`: the narrow view of the document store the bridge needs (rooms, their state,
//! applying an update durably, a stream of committed updates) and its events and errors.
//! `memory.rs` holds `MemoryHost`, an in-memory implementation for embedding and tests.
//!
//! The binary implements the trait over the relay (crates/weaver/src/bridge_host.rs); the
//! bridge deliberately does not depend on the relay crate.

mod memory;

pub use memory::MemoryHost;

use crate::integration::BoxFuture;

/// A host implementation's own error, kept as the source of a [`HostError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Error reported by a host. The bridge treats every kind alike (a refused write-back is
/// retried with backoff, a failed read is retried by the room's next update); the kinds say
/// what happened in logs and in `writeback_failed` events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The host refused the update (malformed, invalid, over a size limit).
    #[error("update refused: {0}")]
    Refused(#[source] BoxError),
    /// The host cannot serve the request now (its storage failed, it is overloaded or
    /// shutting down).
    #[error("document host unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// A lock of the in-memory host was poisoned by a panic.
    #[error("memory host lock poisoned")]
    Poisoned,
}

/// One event of the committed-update stream.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// `update` (Yjs v1) was durably committed to `room`. `origin` is the host's description
    /// of who wrote it; the bridge's own writes carry `weaver_doc::BRIDGE_ORIGIN`.
    Update {
        room: String,
        update: Vec<u8>,
        origin: String,
    },
    /// `room` was deleted (its stored state is gone, its clients were disconnected). Published
    /// after the deletion, in order with the room's updates. The bridge cancels the room's
    /// unfinished calls and drops its mirror and queued write-backs, so it never re-creates
    /// content in the deleted room.
    RoomDeleted { room: String },
    /// The host unloaded `room` from memory (it sat idle). A hint: the bridge drops its mirror
    /// of the room too (once no re-index is pending), so unloaded rooms cost no memory; the
    /// next update reloads it. Hosts that never unload need not send it.
    RoomUnloaded { room: String },
    /// Events were dropped (slow consumer): the bridge rebuilds its mirrors from `room_state`.
    Lagged,
}

/// A subscription to committed updates.
pub trait UpdateStream: Send {
    /// The next event; `None` when the host shut down.
    fn next(&mut self) -> BoxFuture<'_, Option<HostEvent>>;
}

/// The document store as the bridge sees it.
pub trait DocumentHost: Send + Sync + 'static {
    /// Every room that has stored state (swept at start-up).
    fn stored_rooms(&self) -> BoxFuture<'_, Result<Vec<String>, HostError>>;
    /// Whether `needle` may occur in the room's stored state, answered without building a
    /// document (the start-up sweep asks it of every stored room and loads only those that
    /// may hold bridge work). `false` must mean no committed update of the room contains it;
    /// a host that cannot tell cheaply keeps the default `true`.
    fn stored_state_contains<'a>(
        &'a self,
        _room: &'a str,
        _needle: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, HostError>> {
        Box::pin(std::future::ready(Ok(true)))
    }
    /// The full state of a room as one v1 update (empty doc → a valid empty update).
    fn room_state<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<u8>, HostError>>;
    /// Persists and broadcasts `update` to `room`; returns once it is durable.
    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<(), HostError>>;
    /// Subscribes to committed updates (subscribe before reading state, so nothing is missed).
    fn subscribe(&self) -> Box<dyn UpdateStream>;
}
