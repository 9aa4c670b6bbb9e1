//! The crate's error types: one enum per operation family (room log, leases, node registry,
//! connecting; plus the room store's step-down), each carrying the NATS error that caused it as its source.

use std::time::Duration;

use async_nats::jetstream::{
    context::{CreateKeyValueError, CreateStreamError, PublishError},
    kv,
    stream::{ConsumerError, DirectGetError, InfoError, PurgeError},
};

use crate::record::{DecodeError, TooLarge};

/// Errors of the JetStream room log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Another writer appended to the room since this writer last read or wrote it (JetStream
    /// refused the expected last subject sequence). The room actor must step down; the room
    /// has to be loaded again before this log appends to it.
    #[error(
        "room {room:?}: another writer appended after subject sequence {expected}; this writer is fenced"
    )]
    Fenced { room: String, expected: u64 },
    /// Another node took the room over since this one did (a newer lease epoch in the log, or
    /// a takeover that is not this node's when it re-reads the room): this node is fenced.
    #[error("room {room:?}: another node took the room over since this one did; it is fenced")]
    Superseded { room: String },
    /// Loading the room to own it: its takeover record was refused every time (someone kept
    /// appending between the read and the record).
    #[error("room {room:?}: takeover refused {attempts} times; another writer keeps appending")]
    TakeoverRefused { room: String, attempts: u32 },
    /// The room was not loaded through this log, or an earlier failed write left its tip
    /// unknown: appending blindly could interleave with another writer's history.
    #[error("room {room:?} must be loaded (again) before it is written")]
    NotLoaded { room: String },
    /// A restore into a room whose subject already holds something (a room, a deleted room's
    /// tombstone, a takeover): nothing was written.
    #[error("room {room:?} already exists in the cluster (stored, deleted or loaded once)")]
    Occupied { room: String },
    /// A restore of a room whose log tail has gaps without a snapshot before it: the log's
    /// records number updates densely.
    #[error("room {room:?}: its log has gaps in its seqs; not restored")]
    NotDense { room: String },
    /// A compaction that would lose data (same refusals as the redb engine).
    #[error("compaction of room {room:?} refused: {reason}")]
    CompactionRefused {
        room: String,
        reason: &'static str,
        upto_seq: u64,
        seq: u64,
    },
    #[error("room {room:?}: stored message {seq} is unreadable")]
    Corrupt {
        room: String,
        seq: u64,
        #[source]
        source: DecodeError,
    },
    #[error("room {room:?}: chunked record at {seq} references a missing chunk")]
    MissingChunk { room: String, seq: u64 },
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    #[error("creating stream {stream}")]
    CreateStream {
        stream: String,
        #[source]
        source: CreateStreamError,
    },
    #[error("publishing to room {room:?}")]
    Publish {
        room: String,
        #[source]
        source: PublishError,
    },
    #[error("reading room {room:?}")]
    Read {
        room: String,
        #[source]
        source: DirectGetError,
    },
    #[error("reading room {room:?} with an ordered consumer")]
    Consumer {
        room: String,
        #[source]
        source: ConsumerError,
    },
    #[error("reading room {room:?} with an ordered consumer")]
    Consume {
        room: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("purging chunks of room {room:?}")]
    Purge {
        room: String,
        #[source]
        source: PurgeError,
    },
    #[error("listing the subjects of stream {stream}")]
    List {
        stream: String,
        #[source]
        source: InfoError,
    },
    #[error("room {room:?}: JetStream did not answer within {after:?}")]
    Timeout { room: String, after: Duration },
    #[error("the room log is stopped")]
    Stopped,
    /// Opening the store of room versions failed (`JetStreamRoomStore::open`).
    #[error("opening the version store")]
    Versions(#[source] Box<VersionError>),
}

impl LogError {
    /// True when another writer owns the room now (see [`LogError::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            LogError::Fenced { .. }
                | LogError::Superseded { .. }
                | LogError::TakeoverRefused { .. }
        )
    }
}

/// The room store re-read a room whose tip the log had lost and found seqs its actor does not
/// know: another writer appended, so this one steps down (`StoreError::Fenced`).
#[derive(Debug, thiserror::Error)]
#[error("room {room:?} holds seq {found} but this node knew {known}: another writer appended")]
pub struct TakenOver {
    pub room: String,
    pub known: u64,
    pub found: u64,
}

/// Errors of room leases.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another node holds the room's lease (until it releases it or it expires).
    #[error("room {room:?} is leased by node {holder:?}")]
    Held { room: String, holder: String },
    /// This holder can no longer act for the room: its renewal failed or its deadline passed.
    #[error("the lease on room {room:?} (epoch {epoch}) is lost; this holder is fenced")]
    Fenced { room: String, epoch: u64 },
    #[error("creating lease bucket {bucket}")]
    Bucket {
        bucket: String,
        #[source]
        source: CreateKeyValueError,
    },
    #[error("creating the lease of room {room:?}")]
    Create {
        room: String,
        #[source]
        source: kv::CreateError,
    },
    #[error("reading the lease of room {room:?}")]
    Entry {
        room: String,
        #[source]
        source: kv::EntryError,
    },
    #[error("releasing the lease of room {room:?}")]
    Release {
        room: String,
        #[source]
        source: kv::DeleteError,
    },
}

/// Errors of the node registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("creating node bucket {bucket}")]
    Bucket {
        bucket: String,
        #[source]
        source: CreateKeyValueError,
    },
    #[error("opening node bucket {bucket}")]
    Open {
        bucket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("announcing node {node_id:?}")]
    Put {
        node_id: String,
        #[source]
        source: kv::PutError,
    },
    #[error("listing nodes")]
    Keys {
        #[source]
        source: kv::HistoryError,
    },
    #[error("listing nodes")]
    Watch {
        #[source]
        source: kv::WatchError,
    },
    #[error("reading node {node_id:?}")]
    Entry {
        node_id: String,
        #[source]
        source: kv::EntryError,
    },
    #[error("node {node_id:?} has an unreadable registry entry")]
    Decode {
        node_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding the registry entry")]
    Encode(#[source] serde_json::Error),
}

/// Errors of connecting to NATS.
#[derive(Debug, thiserror::Error)]
#[error("connecting to NATS at {url}")]
pub struct ConnectError {
    pub url: String,
    #[source]
    pub source: async_nats::ConnectError,
}

/// Errors of the versions of rooms (`versions.rs`).
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("creating version bucket {bucket}")]
    Bucket {
        bucket: String,
        #[source]
        source: CreateKeyValueError,
    },
    #[error("creating version object store {bucket}")]
    Objects {
        bucket: String,
        #[source]
        source: async_nats::jetstream::context::CreateObjectStoreError,
    },
    #[error("reading the version index of room {room:?}")]
    Index {
        room: String,
        #[source]
        source: kv::EntryError,
    },
    #[error("room {room:?} has an unreadable version index")]
    Corrupt { room: String },
    /// Another writer changed the room's versions since this one read them.
    #[error("room {room:?}: another writer changed its versions")]
    Conflict { room: String },
    #[error("writing the version index of room {room:?}")]
    Write {
        room: String,
        #[source]
        source: kv::UpdateError,
    },
    #[error("writing the version index of room {room:?}")]
    Create {
        room: String,
        #[source]
        source: kv::CreateError,
    },
    /// A listed version's data is gone from the object store (retention removed it while a
    /// backup read the index, more than once in a row).
    #[error("room {room:?}: the data of version {id} is missing")]
    Missing { room: String, id: u64 },
    #[error("removing the versions of room {room:?}")]
    Purge {
        room: String,
        #[source]
        source: kv::PurgeError,
    },
    #[error("encoding a version index")]
    Encode(#[source] serde_json::Error),
    #[error("storing a version of room {room:?}")]
    PutData {
        room: String,
        #[source]
        source: async_nats::jetstream::object_store::PutError,
    },
    #[error("reading a version of room {room:?}")]
    GetData {
        room: String,
        #[source]
        source: async_nats::jetstream::object_store::GetError,
    },
    #[error("reading a version of room {room:?}")]
    ReadData {
        room: String,
        #[source]
        source: std::io::Error,
    },
}
