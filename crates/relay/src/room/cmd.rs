//! What the rest of the relay says to a room actor: `RoomCmd` (boxed as `RoomMsg` in the
//! room's inbox), what a room keeps of a connection (`ConnLink`) and what it answers to a
//! presence read (`RoomPresence`).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use weaver_protocol::AwarenessEntry;

use crate::error::RelayError;
use crate::events::UpdateOrigin;
use crate::send_queue::SendQueue;
use crate::store::VersionMeta;

use super::versions::Restored;

/// What a room keeps of a connection: its id and the queue/close request they share.
#[derive(Debug, Clone)]
pub(crate) struct ConnLink {
    pub id: u64,
    pub queue: Arc<SendQueue>,
}

#[derive(Debug)]
pub(crate) enum RoomCmd {
    Join {
        link: ConnLink,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    Leave {
        conn_id: u64,
    },
    /// A validated state vector from a connection's step1.
    SyncStep1 {
        conn_id: u64,
        sv: Bytes,
    },
    /// A step2 or update payload (admitted by `admit_update`). With `ack`, the connection also
    /// gets [`ACK_FRAME`] once the update is durable (or found to change nothing).
    ClientUpdate {
        conn_id: u64,
        update: Bytes,
        ack: bool,
    },
    Awareness {
        conn_id: u64,
        entries: Vec<AwarenessEntry>,
    },
    QueryAwareness {
        conn_id: u64,
    },
    /// Boxed: rare (HTTP and the bridge), and the largest variant; every command is as large
    /// as the largest variant.
    Apply {
        req: Box<(Bytes, UpdateOrigin)>,
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    State {
        sv: Option<Bytes>,
        reply: oneshot::Sender<Result<Vec<u8>, RelayError>>,
    },
    Delete {
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    /// Store the document as an explicit version (`POST …/versions`).
    TakeVersion {
        label: Option<String>,
        reply: oneshot::Sender<Result<VersionMeta, RelayError>>,
    },
    /// Restore a version as a forward update (`POST …/versions/{id}/restore`).
    Restore {
        id: String,
        reply: oneshot::Sender<Result<Restored, RelayError>>,
    },
    /// Answered once the room is loaded (placed here, in cluster mode): from then on its
    /// commits reach this node's event subscribers (a resumed change feed reads the log after).
    Loaded {
        reply: oneshot::Sender<Result<(), RelayError>>,
    },
    /// Who is here: connections and live awareness states (`GET …/awareness`).
    Presence {
        reply: oneshot::Sender<RoomPresence>,
    },
}

/// What a connection that asked for acks gets after each of its updates is durable: the
/// Hocuspocus `syncStatus(applied)` message without its document address, which the
/// connection's framing adds (hocuspocus/). y-websocket connections never ask for it.
pub(crate) const ACK_FRAME: &[u8] = &[8, 1];

/// A room's connections and its live awareness states `(client id, clock, JSON text)`.
#[derive(Debug, Default)]
pub(crate) struct RoomPresence {
    pub connections: usize,
    pub states: Vec<(u64, u64, String)>,
}

// Commands travel boxed (`RoomMsg`): each one is its own small allocation.
const _: () = assert!(std::mem::size_of::<RoomCmd>() <= 48);

/// What a room's inbox carries. Boxed so a slot of the inbox's queue (inbox.rs) is one pointer:
/// a burst of queued commands costs 8 bytes a slot in the buffer, not the largest variant's
/// size (it was introduced when the inbox was a tokio channel, which allocates 32 slots per room
/// up front; docs/benchmarks.md, memory per room). One small allocation per command is nothing
/// next to what the room does with it.
pub(crate) type RoomMsg = Box<RoomCmd>;

impl RoomCmd {
    /// Commands that reveal document state must not run while a batch is unpersisted.
    pub(super) fn needs_flush(&self) -> bool {
        matches!(
            self,
            RoomCmd::Join { .. }
                | RoomCmd::SyncStep1 { .. }
                | RoomCmd::State { .. }
                | RoomCmd::Delete { .. }
                | RoomCmd::TakeVersion { .. }
                | RoomCmd::Restore { .. }
        )
    }

    /// Answers a command that reached a room which is going away; callers retry elsewhere.
    pub(super) fn bounce(self, err: impl Fn() -> RelayError) {
        match self {
            RoomCmd::Join { reply, .. }
            | RoomCmd::Apply { reply, .. }
            | RoomCmd::Delete { reply }
            | RoomCmd::Loaded { reply } => {
                let _ = reply.send(Err(err()));
            }
            RoomCmd::State { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            RoomCmd::TakeVersion { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            RoomCmd::Restore { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            // Dropping the reply: the caller reads a room going away as an empty one.
            RoomCmd::Presence { .. }
            | RoomCmd::Leave { .. }
            | RoomCmd::SyncStep1 { .. }
            | RoomCmd::ClientUpdate { .. }
            | RoomCmd::Awareness { .. }
            | RoomCmd::QueryAwareness { .. } => {}
        }
    }
}
