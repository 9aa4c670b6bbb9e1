//! Weaver's cluster mode foundation on NATS JetStream (issue 16): the durable room log that
//! replaces the relay's redb tables when several `weaver serve` nodes share rooms, the room
//! leases that give every room one owner, and the registry of live nodes.
//!
//! Owns: the layout of rooms on JetStream streams and subjects, the record and chunk encoding,
//! the mapping of room seqs, fenced appends, takeovers and compactions, lease acquisition,
//! renewal and self-fencing (with [`Claims`], the epochs the store's takeovers carry), node
//! heartbeats, copying whole rooms out and in for backup and restore ([`RoomTransfer`]). Must not know: sockets, HTTP, yrs (updates and snapshots are
//! opaque bytes), the bridge, the relay beyond its seams: `weaver_relay::RoomStore`, which
//! [`JetStreamRoomStore`] implements over [`RoomLog`], and `weaver_relay::RoomPlacement`, which
//! [`LeasePlacement`] implements over leases, and weaver-notify beyond its seams: `Feed`, which
//! [`RoomFeed`] implements with durable consumers, and `Ledger`, which [`NotifyLedger`]
//! implements in a KV bucket. README.md states the rules: seq mapping, chunking, fencing,
//! takeovers.

mod changes;
mod claims;
mod connect;
mod error;
pub mod fenced;
mod lane;
mod leader;
mod lease;
mod names;
mod notify_ledger;
mod placement;
mod record;
mod registry;
mod room_feed;
mod room_log;
mod room_store;
#[cfg(feature = "testing")]
pub mod testing;
mod transfer;
mod versions;

/// The NATS connection [`connect`] returns, for callers that hold one without naming async-nats.
pub use async_nats::Client as NatsClient;
pub use changes::{
    ChangesError, DEFAULT_CHANGES_CAPACITY, DEFAULT_MAX_TRACKED_ROOMS, RoomChange, RoomChanges,
};
pub use claims::Claims;
pub use connect::{connect, jetstream};
pub use error::{ConnectError, LeaseError, LogError, RegistryError, TakenOver, VersionError};
pub use leader::{LeaderTerm, Leadership};
pub use lease::{Lease, LeaseClock, LeaseConfig, Leases};
pub use names::{decode_room, encode_room, stream_index};
pub use notify_ledger::{NOTIFY_BUCKET, NotifyLedger, NotifyLedgerError};
pub use placement::LeasePlacement;
pub use record::{DecodeError, TooLarge};
pub use registry::{NodeDirectory, NodeInfo, NodeRegistry, RegistryConfig};
pub use room_feed::{FeedAck, RoomFeed, RoomFeedConfig, RoomFeedError};
pub use room_log::{RoomLog, RoomLogConfig, RoomSeq, StoredRoom, TakeoverId};
pub use room_store::JetStreamRoomStore;
pub use transfer::{RoomCopy, RoomTransfer, TransferError};
