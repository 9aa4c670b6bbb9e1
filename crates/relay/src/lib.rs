//! weaver-relay: a y-websocket relay whose every update is durable in redb before anyone sees it.
//!
//! Module map:
//! - `relay`      — [`Relay`] (start/shutdown) and [`RelayHandle`] (API for the binary, the bridge
//!   adapter and the notifier); wires the parts, handing each only what it needs.
//! - `room/`      — the room actors (one task per loaded room: yrs `Doc`, awareness, its
//!   connections' queues; batches updates → one durable persist → echo to all) and the registry
//!   (name → actor, lazy load, unload handshake). Actors see only `RoomDeps`.
//! - `admit`      — `admit_update`: size, walker validation, subdocument refusal, for every path.
//! - `events`     — the relay event stream ([`RelayEvent`]: committed, deleted, unloaded), one
//!   bounded queue per subscriber.
//! - `connection` — WebSocket upgrade and the connection task: reads (decode + admit),
//!   writes (bounded queue, ping, close codes) and timers in one loop.
//! - `send_queue` — what a room and a connection share: the outbound queue and the close request.
//! - `hocuspocus` — `@hocuspocus/provider` clients: the upgrade at `/`, one socket carrying many
//!   documents, each a subscription to its room like a y-websocket connection.
//! - `store`      — [`RoomStore`], the seam to room storage (load, append, compact, delete,
//!   listing); `store/redb/`: the redb engine (`relay_*` tables, group-commit persister).
//! - `server`     — [`serve`]: the HTTP/1.1 accept loop (header-read deadline, upgrades,
//!   `TCP_NODELAY`, graceful shutdown).
//! - `routes`     — inbound HTTP routes: `/{room}`, `/healthz`, `/readyz`, `/api/rooms/{room}/…`.
//! - `feed`       — `GET /api/rooms/{room}/changes`: committed updates as Server-Sent Events.
//! - `query`      — query strings: the one parser of token checks and handlers, `?sv=`.
//! - `blocks`     — the JSON blocks view for the HTTP API.
//! - `history`    — document versions as the API shows them: listing, reading a version back
//!   from its stored chain, the restore update (the actor's part is `room/versions.rs`).
//! - `auth`       — token checks for every route (401/403 before any room loads), the admin
//!   layer for other parts' cross-room routes, the 4401 expiry timer.
//! - `placement`  — [`RoomPlacement`]: which node runs a room's actor ([`SingleNode`] by
//!   default); `forward`: a room owned elsewhere has its WebSockets and HTTP requests proxied
//!   to its owner.
//! - `limits`     — connections per room, SyncStep1/awareness rates, read-only enforcement.
//! - `room_name`, `maps` — the room name alphabet; maps that shrink after a storm.
//! - `config`, `error`, `metrics` — limits, the error enum + close codes, metric names.
//!
//! Deliberately not here: argument parsing, tracing/metrics installation and signals (the
//! `weaver` binary), integrations (the bridge subscribes through [`RelayHandle::subscribe`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weaver_relay::{CommitMode, RedbRoomStore, Relay, RelayConfig, open_database, serve};
//! let db = open_database(std::path::Path::new("./weaver-data"))?;
//! let store = RedbRoomStore::start(db, CommitMode::default())?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let config = RelayConfig::default();
//! let http_limits = config.http_limits();
//! let relay = Relay::start(store, config, shutdown.clone())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:1234").await?;
//! serve(listener, relay.router(), http_limits, shutdown.clone().cancelled_owned()).await?;
//! relay.shutdown().await;
//! # Ok(()) }
//! ```

mod admit;
pub mod auth;
mod blocks;
mod config;
mod connection;
mod error;
mod events;
mod feed;
mod forward;
pub mod history;
mod hocuspocus;
pub mod limits;
mod listing;
mod maps;
pub mod metrics;
mod origin;
pub mod placement;
mod query;
mod relay;
mod room;
mod room_name;
mod routes;
mod send_queue;
mod server;
pub mod store;

pub use auth::{Access, AuthConfig, Authenticator, ReadOnlyAwareness, parse_auth_key};
pub use blocks::blocks_json;
pub use config::*;
pub use error::{RelayError, close_code};
pub use events::{
    CommittedUpdate, EVENTS_MAX_QUEUED, EVENTS_MAX_QUEUED_BYTES, EventReceiver, RecvError,
    RelayEvent, TryRecvError, UpdateOrigin,
};
pub use feed::FEED_KEEPALIVE;
pub use forward::http::forward_request;
pub use hocuspocus::DEFAULT_MAX_DOCUMENTS_PER_SOCKET;
pub use limits::AbuseLimits;
pub use placement::{
    OwnerGuard, Ownership, Placement, PlacementError, RemoteOwner, RoomPlacement, SingleNode,
};
pub use relay::{MAX_ROOM_PAGE, Relay, RelayHandle, RoomInfo, RoomPage};
pub use room::{RESTORE_ORIGIN, Restored};
pub use room_name::validate_room_name;
pub use server::{HttpLimits, SHUTDOWN_DRAIN, serve};
pub use store::redb::{
    CommitMode, CopyError, DB_FILE_NAME, JOURNAL_FILE_NAME, OpenError, RedbRoomStore, copy_tables,
    journal, open_database, open_database_with_cache,
};
pub use store::{Detail, EngineError, RoomStore, StoreError, StoredRoom, StoredRoomInfo};
