//! `RoomPlacement`, the seam that decides which node runs a room's actor (cluster mode, issue
//! 16). The registry asks it before a room actor starts on this node: [`Placement::Local`]
//! hands the actor an [`OwnerGuard`] (a fencing token and a release on unload),
//! [`Placement::Remote`] names the node that owns the room, and the relay forwards the room's
//! WebSockets and HTTP requests there (forward.rs).
//!
//! The default, [`SingleNode`], places every room here and never fences: single-node behaviour
//! and cost are unchanged. Must not know: leases, NATS, or how an engine finds owners.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use tokio_util::sync::CancellationToken;

/// The token of every never-fenced guard (single node), shared: it never fires, so one is
/// enough, and a room no longer allocates a token of its own (a cancellation tree node of
/// about a hundred bytes, per loaded room; docs/benchmarks.md, "Open connections"). Cancelling
/// it would not stop a room either: a guard without an engine is never polled for fencing
/// ([`OwnerGuard::can_fence`]) and [`OwnerGuard::check`] does not look at it.
static NEVER_FENCED: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

/// A boxed future, as the seam's methods return (the trait stays object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An engine's own error, boxed so the seam does not name any engine.
pub type PlacementEngineError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a room could not be placed; the room is then unavailable (clients retry).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The engine failed (e.g. the cluster is unreachable).
    #[error("placing room {room:?}")]
    Engine {
        room: String,
        #[source]
        source: PlacementEngineError,
    },
    /// Nobody could be made the room's owner in time (its last owner's lease has not expired).
    #[error("room {room:?} has no reachable owner yet")]
    NoOwner { room: String },
}

/// The node that owns a room, as its clients' traffic is forwarded to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOwner {
    pub node_id: String,
    /// Base URL the owner serves its rooms at (`http://host:port`, or `ws://…`).
    pub url: String,
}

/// What an engine holds while this node owns a room.
pub trait Ownership: Send + Sync + Debug {
    /// Fires when this node must stop acting for the room, before anyone else may take over.
    fn fenced(&self) -> CancellationToken;
    /// Whether this node may still act for the room right now (reads the clock itself).
    fn check(&self) -> bool;
    /// Gives the room up (called once, when its actor ends).
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// This node's right to run a room's actor. A room actor never outlives its guard: it stops
/// committing and broadcasting once [`OwnerGuard::check`] fails or [`OwnerGuard::fenced`]
/// fires, and releases the guard when it ends.
#[derive(Debug)]
pub struct OwnerGuard {
    /// `None`: single node, never fenced.
    inner: Option<Box<dyn Ownership>>,
    fenced: CancellationToken,
}

impl OwnerGuard {
    /// A guard that never fences (single node). Allocates nothing: every such guard shares
    /// one token.
    pub fn unfenced() -> Self {
        OwnerGuard {
            inner: None,
            fenced: NEVER_FENCED.clone(),
        }
    }

    /// A guard over an engine's ownership (a lease).
    pub fn new(ownership: Box<dyn Ownership>) -> Self {
        OwnerGuard {
            fenced: ownership.fenced(),
            inner: Some(ownership),
        }
    }

    /// Whether the guard can fire at all (false on a single node).
    pub fn can_fence(&self) -> bool {
        self.inner.is_some()
    }

    /// Fires when the room must stop at once (never, for a single node).
    pub fn fenced(&self) -> &CancellationToken {
        &self.fenced
    }

    /// True while this node may still commit and broadcast for the room.
    pub fn check(&self) -> bool {
        match &self.inner {
            None => true,
            Some(o) => !self.fenced.is_cancelled() && o.check(),
        }
    }

    /// Gives the room up.
    pub async fn release(self) {
        if let Some(o) = self.inner {
            o.release().await;
        }
    }
}

/// Where a room runs.
#[derive(Debug)]
pub enum Placement {
    /// Here; the actor holds the guard for its whole life.
    Local(OwnerGuard),
    /// On another node; forward to it.
    Remote(RemoteOwner),
}

/// Decides which node runs a room's actor. `Arc<dyn RoomPlacement>` in [`crate::RelayConfig`].
pub trait RoomPlacement: Send + Sync + Debug {
    /// Places `room` before its actor starts here: takes ownership if nobody has it.
    fn place<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Placement, PlacementError>>;

    /// The room's owner if it is another node, without taking ownership (for requests that
    /// must not load a room, and to forward HTTP requests before reading their body).
    fn owner<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RemoteOwner>, PlacementError>>;

    /// Resolves once `owner` is no longer the room's live owner (its lease expired or moved,
    /// or the node stopped heartbeating). A connection forwarded to `owner` then closes, so its
    /// client is placed again: a paused or partitioned owner keeps its TCP connections open
    /// and would otherwise hold its forwarded clients forever. Never resolves by default.
    fn owner_gone<'a>(&'a self, room: &'a str, owner: &'a RemoteOwner) -> BoxFuture<'a, ()> {
        let _ = (room, owner);
        Box::pin(std::future::pending())
    }

    /// The other live nodes of the cluster (their advertised URLs), which cross-room reads
    /// ask for what only they know (`GET /api/rooms`: the rooms open there and their
    /// connections). None by default.
    fn peers(&self) -> BoxFuture<'_, Result<Vec<RemoteOwner>, PlacementError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Whether a room may run on another node later (cluster mode): then what follows a room
    /// on this node (a change feed) ends once the room stops running here. True by default.
    fn rooms_can_move(&self) -> bool {
        true
    }
}

/// Every room on this node, never fenced: the embedded single-node mode.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

impl RoomPlacement for SingleNode {
    fn place<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<Placement, PlacementError>> {
        Box::pin(std::future::ready(Ok(Placement::Local(
            OwnerGuard::unfenced(),
        ))))
    }

    fn owner<'a>(
        &'a self,
        _room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RemoteOwner>, PlacementError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn rooms_can_move(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::OwnerGuard;

    #[test]
    fn single_node_guards_share_one_token_that_never_fences_a_room() {
        let a = OwnerGuard::unfenced();
        let b = OwnerGuard::unfenced();
        assert!(!a.can_fence() && !b.can_fence());
        assert!(a.check() && b.check());
        assert!(!a.fenced().is_cancelled());
        drop(a);
        // Dropping a guard releases only its handle; the others go on.
        assert!(b.check());
    }
}
