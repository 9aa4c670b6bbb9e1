//! What a client tells its application: [`ClientEvent`] (document changes, awareness,
//! connection state, pending count) on a bounded broadcast channel, and [`ConnectionState`].

use weaver_doc::ChangeSet;

/// The state of the client's link to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a connection (first try, or a retry after backoff).
    Connecting,
    /// Connected and the handshake is done: edits flow both ways.
    Online,
    /// Connected, but the server refused a write: the token is read-only. Remote edits still
    /// arrive; local edits stay in the replica (unsynced) until a write token is set.
    ReadOnly,
    /// Not connected (server unreachable, connection lost, timeout); retrying with backoff.
    Offline,
    /// The server refused the token as missing, malformed or expired (HTTP 401) or closed the
    /// connection when it expired (4401). No retry until [`crate::Client::set_token`].
    TokenExpired,
    /// The server refused this client (HTTP 403: token for another room or read route). No
    /// retry until [`crate::Client::set_token`].
    Refused { reason: String },
    /// [`crate::Client::close`] was called.
    Closed,
}

/// One notification of a [`crate::Client`] (see [`crate::Client::subscribe`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The document changed: a local edit (origin [`crate::LOCAL_ORIGIN`]) or one that came
    /// from the server (origin [`crate::REMOTE_ORIGIN`]).
    Changed(ChangeSet),
    /// Another client's awareness state was set, changed or removed.
    Awareness { client_id: u64 },
    /// The connection state changed.
    Connection(ConnectionState),
    /// The number of local updates the server has not yet acknowledged changed.
    Unsynced(usize),
}
