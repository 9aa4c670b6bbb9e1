//! Relay limits and timings: named defaults first, then the validated `RelayConfig` struct the
//! binary fills from its flags. Nothing here parses arguments (the binary owns clap).

use std::time::Duration;

/// Largest WebSocket message (and HTTP update body) accepted. A bigger message closes the
/// connection with 1009 before more than this is buffered. 16 MiB holds very large documents
/// as one step2 while bounding memory per connection.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// How long a room stays loaded after its last connection leaves. Reconnects within the grace
/// period (page reloads, flaky networks) skip the reload from storage.
pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(30);
/// Frames queued to one connection before it is declared a slow consumer and closed with 1013.
/// Clients resync losslessly on reconnect, so closing is always safe; silently skipping is not.
pub const DEFAULT_CONN_QUEUE_FRAMES: usize = 4096;
/// WebSocket ping period. A connection that sends nothing (not even a pong) for two periods is
/// closed with 4408.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Compact a room's log into a snapshot once it holds this many updates...
pub const DEFAULT_COMPACT_AFTER_UPDATES: u64 = 1000;
/// ...or this many bytes, whichever comes first.
pub const DEFAULT_COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;
/// Awareness client ids one connection may publish (a browser tab uses one). More → 1008.
pub const DEFAULT_MAX_AWARENESS_CLIENTS_PER_CONN: usize = 16;
/// Largest awareness state JSON per client. Bigger → 1008.
pub const DEFAULT_MAX_AWARENESS_STATE_BYTES: usize = 64 * 1024;
/// Open WebSocket connections accepted at once; further upgrades get HTTP 503.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Change feeds (`GET /api/rooms/{room}/changes`) open at once; more get HTTP 503. Each is a
/// long-lived HTTP response, so it also counts against the HTTP connection limits until it ends.
pub const DEFAULT_MAX_CHANGE_FEEDS: usize = 1024;
/// Approximate stored size (snapshot + log) a room may reach; writes beyond it are refused
/// (close 1008 / HTTP 413). Compaction keeps the estimate close to the real document size.
pub const DEFAULT_MAX_DOC_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes of updates parked as "pending" (missing causal dependencies) a room holds. An update
/// that pushes past it is refused (close 1008) so gaps cannot grow memory without bound.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 4 * 1024 * 1024;
/// Rooms loading from storage at once; more wait (a reconnect storm cannot load everything at once).
pub const LOAD_CONCURRENCY: usize = 16;
/// Commands queued to one room before senders wait (backpressure onto the sockets).
pub const ROOM_INBOX: usize = 1024;
/// Time a client has to send a complete HTTP request head (request line + headers), counted
/// from the accept and again after each response on a kept-alive connection; otherwise the
/// socket is closed. Bounds what a peer that connects and sends nothing, or dribbles headers
/// (slowloris), can hold. A browser's upgrade request arrives in one packet.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP connections not (yet) upgraded, open at once: in total, and per peer IP address.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 2_048;
pub const DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP: usize = 256;
/// Longest a room holds a batch of updates to gather more into the same commit and broadcast,
/// while it receives updates faster than [`DEFAULT_HOLD_ABOVE_RATE`]. Like PostgreSQL's
/// `commit_delay` (which only applies when other transactions are active): a room under a
/// write storm commits and broadcasts every few milliseconds instead of after every update,
/// which costs fewer fsyncs and, above all, fewer messages every replica must decode and apply.
/// Below the rate nothing is held.
pub const DEFAULT_HOLD_WINDOW: Duration = Duration::from_millis(5);
/// Updates per second (smoothed over ~20 ms) above which a room holds its batches. Far above
/// human typing (tens per second per room) and above a steady 500/s stream, so ordinary
/// editing, and one writer at a steady rate, is committed and broadcast at once.
pub const DEFAULT_HOLD_ABOVE_RATE: u32 = 2_000;
/// redb's page cache (pages read and written stay in it). redb's own default, 1 GiB, would let
/// a long-running server's memory grow with its database; loaded rooms live in their yrs
/// documents anyway, so the cache only speeds up room loads and the B-tree's upper pages.
pub const DEFAULT_STORE_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// At most one automatic version per room per this much time while it is edited
/// (`--version-every-secs`; zero: no automatic versions).
pub const DEFAULT_VERSION_EVERY: Duration = Duration::from_secs(300);
/// Automatic and pre-restore versions kept per room, newest first (`--keep-versions`).
pub const DEFAULT_KEEP_VERSIONS: usize = 100;
/// Automatic and pre-restore versions older than this many days are dropped
/// (`--keep-versions-days`; zero: no age limit). Explicit versions and a room's newest version
/// are never dropped.
pub const DEFAULT_KEEP_VERSIONS_DAYS: u64 = 30;

/// How long shutdown waits for rooms to flush and close before giving up.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Validated relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub max_message_bytes: usize,
    pub idle_unload: Duration,
    pub conn_queue_frames: usize,
    pub ping_interval: Duration,
    pub compact_after_updates: u64,
    pub compact_after_bytes: u64,
    pub max_awareness_clients_per_conn: usize,
    pub max_awareness_state_bytes: usize,
    pub shutdown_timeout: Duration,
    /// HTTP request-head deadline, used by [`crate::serve`].
    pub handshake_timeout: Duration,
    /// HTTP connections not (yet) upgraded, in total and per peer IP, used by [`crate::serve`].
    pub max_http_connections: usize,
    pub max_http_connections_per_ip: usize,
    pub max_connections: usize,
    pub max_change_feeds: usize,
    pub max_doc_bytes: u64,
    pub max_pending_bytes: usize,
    /// Batch hold window under a write storm; zero never holds ([`DEFAULT_HOLD_WINDOW`]).
    pub hold_window: Duration,
    /// Update rate per room from which batches are held ([`DEFAULT_HOLD_ABOVE_RATE`]).
    pub hold_above_rate: u32,
    /// Tokens (`--auth-key`) and read-only awareness policy (auth.rs).
    pub auth: crate::auth::AuthConfig,
    /// Connections per room, message rates, room loads (limits.rs).
    pub limits: crate::limits::AbuseLimits,
    /// Origins allowed to open WebSockets (`--ws-allowed-origin`; origin.rs); empty: any.
    pub ws_allowed_origins: Vec<String>,
    /// Which node runs each room's actor ([`crate::SingleNode`]: this one, never fenced).
    pub placement: std::sync::Arc<dyn crate::RoomPlacement>,
    /// Document versions: how often rooms take one and which ones they keep.
    pub versions: VersionConfig,
}

/// When rooms take automatic versions and which versions they keep (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionConfig {
    /// At most one automatic version per room per this much time (zero: none).
    pub every: Duration,
    /// Automatic and pre-restore versions kept per room (0: no count limit).
    pub keep: usize,
    /// Automatic and pre-restore versions kept at most this many days (0: no age limit).
    pub keep_days: u64,
}

impl Default for VersionConfig {
    fn default() -> Self {
        VersionConfig {
            every: DEFAULT_VERSION_EVERY,
            keep: DEFAULT_KEEP_VERSIONS,
            keep_days: DEFAULT_KEEP_VERSIONS_DAYS,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            idle_unload: DEFAULT_IDLE_UNLOAD,
            conn_queue_frames: DEFAULT_CONN_QUEUE_FRAMES,
            ping_interval: DEFAULT_PING_INTERVAL,
            compact_after_updates: DEFAULT_COMPACT_AFTER_UPDATES,
            compact_after_bytes: DEFAULT_COMPACT_AFTER_BYTES,
            max_awareness_clients_per_conn: DEFAULT_MAX_AWARENESS_CLIENTS_PER_CONN,
            max_awareness_state_bytes: DEFAULT_MAX_AWARENESS_STATE_BYTES,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_http_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_change_feeds: DEFAULT_MAX_CHANGE_FEEDS,
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            hold_window: DEFAULT_HOLD_WINDOW,
            hold_above_rate: DEFAULT_HOLD_ABOVE_RATE,
            auth: crate::auth::AuthConfig::default(),
            limits: crate::limits::AbuseLimits::default(),
            ws_allowed_origins: Vec::new(),
            placement: std::sync::Arc::new(crate::SingleNode),
            versions: VersionConfig::default(),
        }
    }
}

impl RelayConfig {
    /// What [`crate::serve`] needs of this configuration.
    pub fn http_limits(&self) -> crate::HttpLimits {
        crate::HttpLimits {
            handshake_timeout: self.handshake_timeout,
            max_http_connections: self.max_http_connections,
            max_http_connections_per_ip: self.max_http_connections_per_ip,
        }
    }

    /// Rejects settings that would make the relay misbehave (zero queues, zero sizes).
    pub fn validate(self) -> Result<Self, String> {
        if self.max_message_bytes < 1024 {
            return Err("max message bytes must be at least 1024".into());
        }
        if self.conn_queue_frames == 0 {
            return Err("connection queue must hold at least one frame".into());
        }
        if self.ping_interval.is_zero() {
            return Err("ping interval must be positive".into());
        }
        if self.handshake_timeout.is_zero() {
            return Err("handshake timeout must be positive".into());
        }
        if self.max_http_connections == 0 || self.max_http_connections_per_ip == 0 {
            return Err("HTTP connection limits must be positive".into());
        }
        if self.max_connections == 0 {
            return Err("max connections must be positive".into());
        }
        if self.max_change_feeds == 0 {
            return Err("max change feeds must be positive".into());
        }
        if self.hold_window > Duration::from_millis(100) {
            return Err("the batch hold window must be at most 100 ms".into());
        }
        if self.hold_above_rate == 0 {
            return Err("the rate above which batches are held must be positive".into());
        }
        if self.compact_after_updates == 0 || self.compact_after_bytes == 0 {
            return Err("compaction thresholds must be positive".into());
        }
        self.limits.validate()?;
        Ok(self)
    }
}
