//! The client's errors: [`ClientError`] for what a caller of [`crate::Client`] sees,
//! [`ReplicaError`] for the local store, [`FrameError`] for a server frame the client refuses.

use std::path::PathBuf;

/// Errors of the local replica (the redb file in the client's directory).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    #[error("cannot create the replica directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the replica database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("replica transaction failed")]
    Transaction(#[from] redb::TransactionError),
    #[error("replica table failed")]
    Table(#[from] redb::TableError),
    #[error("replica storage failed")]
    Storage(#[from] redb::StorageError),
    #[error("replica commit failed")]
    Commit(#[from] redb::CommitError),
    #[error("the replica's stored document is unreadable")]
    Corrupt(#[source] weaver_doc::DocError),
    #[error("the server's updates would take the replica past {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the replica's document refused the operation")]
    Doc(#[from] weaver_doc::DocError),
}

/// Why the client refused a frame from the server (the connection is then dropped and
/// re-established with backoff; nothing from the frame reaches the local replica).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("not a y-websocket message")]
    Protocol(#[from] weaver_protocol::ProtocolError),
    #[error("the server sent a text frame")]
    Text,
    #[error("the update carries {0} subdocument(s), which this client does not accept")]
    Subdocument(u64),
    #[error("the server's update does not apply")]
    Apply(#[source] ReplicaError),
    #[error("the server sent awareness for more than {0} clients")]
    TooManyPeers(usize),
    #[error("the server sent an awareness state larger than {0} bytes")]
    AwarenessTooLarge(usize),
}

/// Errors a caller of [`crate::Client`] sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("local replica")]
    Replica(#[from] ReplicaError),
    #[error("document")]
    Doc(#[from] weaver_doc::DocError),
    #[error("invalid server URL {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("invalid awareness state")]
    Awareness(#[source] serde_json::Error),
    #[error("Client::open must be called inside a tokio runtime")]
    NoRuntime,
}
