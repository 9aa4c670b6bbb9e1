//! [`ClientOptions`]: where the client connects, where its replica lives, and its limits and
//! timings (each with a named default).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClientError;

/// Largest frame accepted from the server (the relay's own default message limit).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Time to open the TCP connection and finish the WebSocket upgrade.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from the upgrade to the server's SyncStep1 (the relay sends it once the room loaded).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Interval of our pings; a connection silent for two intervals is dropped.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// First and largest reconnect backoff window (full jitter inside it).
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(250);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Local updates queued for the socket; past it the next handshake-style diff replaces them.
pub const DEFAULT_OUTBOX_UPDATES: usize = 1024;
/// Log rows after which the replica folds its log into one snapshot.
pub const DEFAULT_COMPACT_AFTER: u64 = 1000;
/// Size the replica's document may reach through the server's updates (a hostile server
/// cannot fill memory and disk past it; local edits are never refused).
pub const DEFAULT_MAX_DOC_BYTES: u64 = 256 * 1024 * 1024;
/// Events buffered per subscriber before it lags.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// How to open a [`crate::Client`]. Build with [`ClientOptions::new`] and the setters.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ws://host:port` (or `wss://`) of a Weaver node.
    pub server: String,
    pub room: String,
    /// The replica's directory (created if missing).
    pub dir: PathBuf,
    pub token: Option<String>,
    pub max_frame_bytes: usize,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub outbox_updates: usize,
    pub compact_after: u64,
    pub max_doc_bytes: u64,
    pub event_buffer: usize,
}

impl ClientOptions {
    pub fn new(
        server: impl Into<String>,
        room: impl Into<String>,
        dir: impl Into<PathBuf>,
    ) -> ClientOptions {
        ClientOptions {
            server: server.into(),
            room: room.into(),
            dir: dir.into(),
            token: None,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            outbox_updates: DEFAULT_OUTBOX_UPDATES,
            compact_after: DEFAULT_COMPACT_AFTER,
            max_doc_bytes: DEFAULT_MAX_DOC_BYTES,
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }

    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    #[must_use]
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }

    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    #[must_use]
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    #[must_use]
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.ping_interval = d;
        self
    }

    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    #[must_use]
    pub fn compact_after(mut self, updates: u64) -> Self {
        self.compact_after = updates;
        self
    }

    #[must_use]
    pub fn max_doc_bytes(mut self, bytes: u64) -> Self {
        self.max_doc_bytes = bytes;
        self
    }

    /// Checks the URL scheme and the room name's shape before anything is opened.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        let bad = |reason| ClientError::Url {
            url: self.server.clone(),
            reason,
        };
        if !(self.server.starts_with("ws://") || self.server.starts_with("wss://")) {
            return Err(bad("the server URL must start with ws:// or wss://"));
        }
        if self.room.is_empty() {
            return Err(bad("the room name is empty"));
        }
        Ok(())
    }

    /// `<server>/<room>` with the room as one path segment (a `/` in it is sent as `%2F`, as
    /// docs/protocol.md asks) and the token as `?token=`.
    pub(crate) fn url(&self, token: Option<&str>) -> String {
        let room: String = self
            .room
            .chars()
            .map(|c| match c {
                '/' => "%2F".to_owned(),
                c if c.is_ascii_alphanumeric() || "._~:@-".contains(c) => c.to_string(),
                c => {
                    let mut buf = [0u8; 4];
                    c.encode_utf8(&mut buf)
                        .bytes()
                        .map(|b| format!("%{b:02X}"))
                        .collect()
                }
            })
            .collect();
        let mut url = format!("{}/{room}", self.server.trim_end_matches('/'));
        if let Some(t) = token {
            url.push_str("?token=");
            url.extend(form_urlencoded::byte_serialize(t.as_bytes()));
        }
        url
    }
}
