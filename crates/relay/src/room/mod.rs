//! Rooms: one actor task per loaded room (actor.rs) and the registry that finds, starts and
//! forgets them (registry.rs). A room actor sees the rest of the relay only through
//! [`RoomDeps`] (storage, configuration, the event bus, the load limit, the shutdown token) and
//! the registry it unregisters from: nothing of HTTP, connections' sockets or the relay's handle.
//!
//! Files: `cmd` (what the relay says to a room), `actor` (the loop, commands, flush), `apply`
//! (apply with panics contained, build from storage, rebuild), `hold` (storm detector and hold
//! window), `fanout` (connections, broadcast, `merged_frame`, `Committed` events), `awareness`,
//! `compaction`, `delete`, `versions` (taking and restoring versions), `inbox` (the actor's
//! bounded command queue), `conn_map` (a room's connections by id).

mod actor;
mod apply;
mod awareness;
mod cmd;
mod compaction;
mod conn_map;
mod delete;
mod fanout;
mod hold;
mod inbox;
mod registry;
mod versions;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub(crate) use apply::{Applied, apply_update, new_doc};
pub(crate) use cmd::{ConnLink, RoomCmd, RoomMsg};
pub(crate) use fanout::{MERGE_MAX_BYTES, merged_frame};
pub(crate) use inbox::{InboxSender, TrySendError};
pub(crate) use registry::{Registry, RoomHandle};
pub use versions::{RESTORE_ORIGIN, Restored};

use crate::config::RelayConfig;
use crate::events::EventBus;
use std::sync::Arc;

use crate::store::RoomStore;

/// What a room actor needs from the relay, and nothing more.
pub(crate) struct RoomDeps {
    pub store: Arc<dyn RoomStore>,
    pub config: RelayConfig,
    /// Where committed updates, deletions and unloads are published.
    pub events: EventBus,
    /// Bounds concurrent room loads.
    pub load_permits: Semaphore,
    /// Cancelled when the relay shuts down.
    pub cancel: CancellationToken,
}

/// Only the configuration: the rest is live state (queues, permits) of no use in a log line.
impl std::fmt::Debug for RoomDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomDeps")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
