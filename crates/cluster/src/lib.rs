//! Weaver's cluster mode foundation on NATS JetStream (issue 16): the durable room log that
//! replaces the relay's redb tables when several `weaver serve` nodes share rooms, the room
//! leases that give every room one owner, and the registry of live nodes.
//!
//! Owns: the layout of rooms on JetStream streams and subjects, the record and chunk encoding,
//! the mapping of room seqs, fenced appends and compactions, lease acquisition, renewal and
//! self-fencing, node heartbeats. Must not know: sockets, HTTP, yrs (updates and snapshots are
//! opaque bytes), the bridge, the relay's types (the relay adapts [`RoomLog`] to its store
//! trait) beyond its `RoomPlacement` seam, which [`LeasePlacement`] implements over leases. README.md states the rules: seq mapping, chunking, fencing.

mod connect;
mod error;
mod lane;
mod lease;
mod names;
mod placement;
mod record;
mod registry;
mod room_log;
#[cfg(feature = "testing")]
pub mod testing;

pub use connect::{connect, jetstream};
pub use error::{ConnectError, LeaseError, LogError, RegistryError};
pub use lease::{Lease, LeaseConfig, Leases};
pub use names::{decode_room, encode_room, stream_index};
pub use placement::LeasePlacement;
pub use record::{DecodeError, TooLarge};
pub use registry::{NodeDirectory, NodeInfo, NodeRegistry, RegistryConfig};
pub use room_log::{RoomLog, RoomLogConfig, RoomSeq, StoredRoom};
