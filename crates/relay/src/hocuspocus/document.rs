//! One document on a Hocuspocus socket: the room it subscribes to, what its token granted
//! (`ConnPolicy`: read-only, rates), its own outbound queue (what the room sends it), its token
//! expiry and its phase (joining the room, or open). The socket task owns every `Document`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use crate::limits::{ConnPolicy, RoomSlot};
use crate::room::RoomHandle;
use crate::send_queue::SendQueue;

/// Where a document is in its life on the socket.
pub(super) enum Phase {
    /// Authenticated; the room is loading or the join is on its way. Frames that arrive
    /// meanwhile wait here, in order (bounded by the socket's pre-join budget). The token
    /// frame is kept for the owner, should the room be owned by another node.
    Joining {
        waiting: Vec<Bytes>,
        token_frame: Bytes,
    },
    /// Joined: frames go to the room.
    Open { room: RoomHandle },
    /// The room is owned by another node (cluster mode): frames go there verbatim
    /// (forward/hocuspocus.rs), and the owner's come back through the document's queue.
    Forwarded {
        upstream: crate::forward::hocuspocus::Upstream,
    },
}

pub(super) struct Document {
    /// The raw address (`name` or `name\0session`), written before every frame sent.
    pub address: Arc<str>,
    /// The id the room knows this subscription by.
    pub conn_id: u64,
    pub queue: Arc<SendQueue>,
    pub policy: ConnPolicy,
    pub expires: Option<Instant>,
    pub phase: Phase,
    /// One slot in the room's connection count, held while the document is open.
    pub _slot: RoomSlot,
}

impl Document {
    /// Whether frames for this document go to its room now.
    pub fn room(&self) -> Option<&RoomHandle> {
        match &self.phase {
            Phase::Open { room } => Some(room),
            Phase::Joining { .. } | Phase::Forwarded { .. } => None,
        }
    }
}

/// However a document ends (detached, socket closed, task panicked), its room stops queueing
/// to it.
impl Drop for Document {
    fn drop(&mut self) {
        self.queue.finish();
    }
}
