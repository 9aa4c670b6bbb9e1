//! weaver-client: an offline-first Rust client of a Weaver server.
//!
//! Owns: a durable local replica of one room in redb (every local edit is on disk before the
//! call returns; the log is compacted), the y-websocket sync with a Weaver node over
//! tokio-tungstenite (state vectors both ways on every connect, live updates, awareness,
//! reconnect with exponential backoff and jitter, pings and deadlines), the "unsynced" rule
//! (which local updates the server holds: `ack.rs`), connection states and change events, and
//! defence against hostile servers (bounded frames, queues and awareness, validated updates,
//! contained yrs panics, never a panic).
//!
//! Must not know: the server's internals. It depends on `weaver-protocol` (the wire format and
//! validators) and `weaver-doc` (the schema) only, and speaks to the relay only through the
//! documented protocol (docs/protocol.md).
//!
//! Files: `client.rs` ([`Client`]), `options.rs` ([`ClientOptions`]), `connection.rs` (the
//! socket task), `session.rs` (one server frame in, replies out), `replica.rs` (the redb
//! store), `ack.rs` (unsynced tracking), `awareness.rs`, `events.rs`, `shared.rs` (what the
//! handle and the task share), `error.rs`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weaver_client::ClientError> {
//! use weaver_client::{Client, ClientOptions};
//! let client = Client::open(ClientOptions::new("ws://127.0.0.1:1234", "notes", "./replica"))?;
//! client.transact(|t| t.add_block("b1", "text", "written offline or online"))??;
//! // Durable locally now; pushed when the server is reachable.
//! tokio::time::timeout(std::time::Duration::from_secs(3), client.synced()).await.ok();
//! println!("{} update(s) not on the server yet", client.unsynced());
//! client.close().await;
//! # Ok(()) }
//! ```

mod ack;
mod awareness;
mod client;
mod connection;
mod error;
mod events;
mod options;
mod replica;
mod session;
mod shared;

pub use awareness::{MAX_PEERS, MAX_STATE_BYTES, OUTDATED, PeerState, RENEW};
pub use client::Client;
pub use error::{ClientError, FrameError, ReplicaError};
pub use events::{ClientEvent, ConnectionState};
pub use options::*;
pub use replica::{LOCAL_ORIGIN, REMOTE_ORIGIN, REPLICA_FILE};
pub use weaver_doc;
pub use weaver_doc::yrs;

#[doc(hidden)]
pub mod fuzzing;
