//! `LeasePlacement`: the relay's [`RoomPlacement`] over room leases. A room runs on the node
//! holding its lease; any other node forwards to the holder's URL from the node registry.
//!
//! - `place`: take the lease (KV create). Held by another node that is alive → `Remote`. A lost
//!   race is just that: the winner holds it. Held by a node the registry lists as dead, or by
//!   this node itself (its previous actor is still releasing, or it was fenced and the key has
//!   not expired yet): wait for the lease to go and try again — never steal. Bounded by
//!   `place_timeout`; then the room is unavailable and clients retry.
//! - `owner_gone`: the holder a connection is forwarded to is re-read every TTL/3; once it is
//!   another node, this node, nobody, or a node that stopped heartbeating, the forwarded
//!   connection closes and its client is placed again.
//! - The guard is the [`Lease`]: its fencing token, its own deadline check, and a release that
//!   deletes the key only at our revision. While held, the lease's epoch is in [`Claims`] (if
//!   given), where the room store finds it for the room's takeover record.
//!
//! Depends on weaver-relay for the trait only. Must not know: room actors, sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use weaver_relay::placement::{BoxFuture, PlacementEngineError};
use weaver_relay::{OwnerGuard, Ownership, Placement, PlacementError, RemoteOwner, RoomPlacement};

use crate::claims::Claims;
use crate::error::LeaseError;
use crate::lease::{Lease, Leases};
use crate::registry::NodeDirectory;

/// How often a room whose lease cannot be taken yet is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// Room placement by lease (cluster mode).
#[derive(Debug, Clone)]
pub struct LeasePlacement {
    leases: Leases,
    nodes: NodeDirectory,
    node_id: Arc<str>,
    /// Longest `place` waits for a lease held by a dead node (or by this one) to go.
    place_timeout: Duration,
    /// Where held leases' epochs are published for the room store.
    claims: Option<Claims>,
}

impl LeasePlacement {
    /// Places rooms for `node_id`. `place_timeout` should exceed the lease TTL, so a room
    /// whose owner died is placed again within one `place`.
    pub fn new(
        leases: Leases,
        nodes: NodeDirectory,
        node_id: &str,
        place_timeout: Duration,
    ) -> Self {
        LeasePlacement {
            leases,
            nodes,
            node_id: Arc::from(node_id),
            place_timeout,
            claims: None,
        }
    }

    /// Publishes every lease this placement holds (room, epoch) in `claims`, from acquire to
    /// release: share them with the room store (`JetStreamRoomStore::with_claims`).
    pub fn with_claims(mut self, claims: Claims) -> Self {
        self.claims = Some(claims);
        self
    }

    async fn place_room(&self, room: &str) -> Result<Placement, PlacementError> {
        let give_up = tokio::time::Instant::now() + self.place_timeout;
        loop {
            match self.leases.acquire(room, &self.node_id).await {
                Ok(lease) => {
                    if let Some(claims) = &self.claims {
                        claims.hold(room, lease.epoch());
                    }
                    return Ok(Placement::Local(OwnerGuard::new(Box::new(
                        LeaseOwnership {
                            lease,
                            claims: self.claims.clone(),
                        },
                    ))));
                }
                Err(LeaseError::Held { holder, .. }) => {
                    if let Some(owner) = self.live_other(room, &holder).await? {
                        return Ok(Placement::Remote(owner));
                    }
                }
                Err(e) => return Err(engine(room, e)),
            }
            if tokio::time::Instant::now() + RETRY > give_up {
                return Err(PlacementError::NoOwner {
                    room: room.to_owned(),
                });
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// `holder` as a forwarding target: another node, alive in the registry.
    async fn live_other(
        &self,
        room: &str,
        holder: &str,
    ) -> Result<Option<RemoteOwner>, PlacementError> {
        // Empty: the lease went between the create and the read; try again.
        if holder.is_empty() || holder == &*self.node_id {
            return Ok(None);
        }
        let node = self.nodes.node(holder).await.map_err(|e| engine(room, e))?;
        match node {
            Some(n) if n.alive => Ok(Some(RemoteOwner {
                node_id: n.node_id,
                url: n.url,
            })),
            _ => {
                debug!(
                    room,
                    holder, "lease held by a node that is not alive; waiting"
                );
                Ok(None)
            }
        }
    }
}

fn engine(room: &str, e: impl Into<PlacementEngineError>) -> PlacementError {
    PlacementError::Engine {
        room: room.to_owned(),
        source: e.into(),
    }
}

impl RoomPlacement for LeasePlacement {
    fn place<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Placement, PlacementError>> {
        Box::pin(self.place_room(room))
    }

    fn owner<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<RemoteOwner>, PlacementError>> {
        Box::pin(async move {
            let holder = self
                .leases
                .holder(room)
                .await
                .map_err(|e| engine(room, e))?;
            match holder {
                Some((holder, _)) => self.live_other(room, &holder).await,
                None => Ok(None),
            }
        })
    }

    fn peers(&self) -> BoxFuture<'_, Result<Vec<RemoteOwner>, PlacementError>> {
        Box::pin(async move {
            let nodes = self.nodes.nodes().await.map_err(|e| engine("", e))?;
            Ok(nodes
                .into_iter()
                .filter(|n| n.alive && n.node_id != *self.node_id)
                .map(|n| RemoteOwner {
                    node_id: n.node_id,
                    url: n.url,
                })
                .collect())
        })
    }

    fn owner_gone<'a>(&'a self, room: &'a str, owner: &'a RemoteOwner) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // As often as the holder renews: a stalled owner is noticed within about a TTL
            // of its last renewal, when its lease and its heartbeat run out.
            let every = self.leases.ttl() / 3;
            loop {
                tokio::time::sleep(every).await;
                match self.owner(room).await {
                    Ok(Some(now)) if now.node_id == owner.node_id => {}
                    Ok(now) => {
                        debug!(room, from = %owner.node_id, to = ?now.map(|o| o.node_id), "room owner changed");
                        return;
                    }
                    // NATS unreachable: the owner fences itself if it cannot renew, and closes
                    // its sockets, which closes this connection; nothing to decide here.
                    Err(e) => debug!(room, error = %e, "checking the room's owner failed"),
                }
            }
        })
    }
}

/// A held lease as the relay's room ownership.
#[derive(Debug)]
struct LeaseOwnership {
    lease: Lease,
    claims: Option<Claims>,
}

impl Ownership for LeaseOwnership {
    fn fenced(&self) -> CancellationToken {
        self.lease.fenced()
    }

    fn check(&self) -> bool {
        self.lease.check().is_ok()
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let LeaseOwnership { lease, claims } = *self;
            let room = lease.room().to_owned();
            if let Some(claims) = &claims {
                claims.release(&room, lease.epoch());
            }
            if let Err(e) = lease.release().await {
                // The key expires on its own after the TTL.
                warn!(room, error = %e, "releasing the room's lease failed");
            }
        })
    }
}
