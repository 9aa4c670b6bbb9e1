//! Abuse limits that sit in front of the room actors: connections per room (refused before the
//! upgrade), SyncStep1 and awareness rates per connection, the awareness broadcast rate per room,
//! and the per-connection policy object the read loop consults for every frame (read-only
//! enforcement included, see `auth.rs` for where the access comes from).
//!
//! Deliberately not here: limits the room actor enforces on document state (document size,
//! pending bytes, awareness client ids and state size: room/) and limits on the socket itself
//! (message size, outbound queue, ping timeout: connection.rs). Token checks live in auth.rs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use crate::auth::{Access, ReadOnlyAwareness};
use crate::error::close_code;
use crate::metrics as m;

/// Open WebSocket connections one room accepts; further upgrades to it get HTTP 503.
pub const DEFAULT_MAX_CONNECTIONS_PER_ROOM: usize = 1000;
/// SyncStep1 messages a connection may send in a burst (a stock client sends one per connect).
pub const DEFAULT_SYNC_STEP1_BURST: u32 = 5;
/// Sustained SyncStep1 rate per connection after the burst: each one costs a state encode.
pub const DEFAULT_SYNC_STEP1_PER_MINUTE: u32 = 30;
/// Awareness messages one connection may send per second (sustained); excess ones are dropped.
pub const DEFAULT_AWARENESS_PER_SEC: u32 = 30;
/// Awareness messages all connections of one room may have broadcast per second (sustained);
/// excess ones are dropped. Bounds the N² fan-out of awareness traffic.
pub const DEFAULT_ROOM_AWARENESS_PER_SEC: u32 = 300;
/// Rooms loading from storage at once.
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 16;
/// How long a request waits for a load slot before it is refused (close 1013 / HTTP 503).
pub const DEFAULT_LOAD_WAIT: Duration = Duration::from_secs(10);

/// The limits of this module, as part of `RelayConfig`.
#[derive(Debug, Clone)]
pub struct AbuseLimits {
    pub max_connections_per_room: usize,
    pub sync_step1_burst: u32,
    pub sync_step1_per_minute: u32,
    pub awareness_per_sec: u32,
    pub room_awareness_per_sec: u32,
    pub max_concurrent_loads: usize,
    pub load_wait: Duration,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            max_connections_per_room: DEFAULT_MAX_CONNECTIONS_PER_ROOM,
            sync_step1_burst: DEFAULT_SYNC_STEP1_BURST,
            sync_step1_per_minute: DEFAULT_SYNC_STEP1_PER_MINUTE,
            awareness_per_sec: DEFAULT_AWARENESS_PER_SEC,
            room_awareness_per_sec: DEFAULT_ROOM_AWARENESS_PER_SEC,
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
            load_wait: DEFAULT_LOAD_WAIT,
        }
    }
}

impl AbuseLimits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections_per_room == 0 {
            return Err("max connections per room must be positive".into());
        }
        if self.sync_step1_burst == 0 || self.sync_step1_per_minute == 0 {
            return Err("the SyncStep1 burst and rate must be positive".into());
        }
        if self.awareness_per_sec == 0 || self.room_awareness_per_sec == 0 {
            return Err("awareness rates must be positive".into());
        }
        if self.max_concurrent_loads == 0 {
            return Err("concurrent room loads must be positive".into());
        }
        Ok(())
    }
}

/// A classic token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(capacity: f64, per_sec: f64) -> Self {
        Self {
            capacity,
            tokens: capacity,
            per_sec,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-room state shared by the room's connections before the room actor is involved.
#[derive(Debug)]
pub(crate) struct RoomGate {
    conns: usize,
    awareness: TokenBucket,
}

/// Connection counts and awareness budgets per room name.
#[derive(Debug, Default)]
pub(crate) struct RoomGates {
    rooms: Mutex<HashMap<Arc<str>, RoomGate>>,
}

/// Held by a connection for its lifetime; frees its slot in the room when dropped.
#[derive(Debug)]
pub(crate) struct RoomSlot {
    gates: Arc<RoomGates>,
    room: Arc<str>,
}

impl Drop for RoomSlot {
    fn drop(&mut self) {
        let Ok(mut rooms) = self.gates.rooms.lock() else {
            return;
        };
        if let Some(g) = rooms.get_mut(&self.room) {
            g.conns = g.conns.saturating_sub(1);
            if g.conns == 0 {
                rooms.remove(&self.room);
                crate::maps::shrink_if_sparse(&mut rooms);
            }
        }
    }
}

impl RoomGates {
    /// Open connections per room, for rooms in `filter` (names with at least one connection).
    pub fn connections(&self, filter: impl Fn(&str) -> bool) -> HashMap<Arc<str>, usize> {
        let Ok(rooms) = self.rooms.lock() else {
            return HashMap::new();
        };
        rooms
            .iter()
            .filter(|(name, g)| g.conns > 0 && filter(name))
            .map(|(name, g)| (name.clone(), g.conns))
            .collect()
    }

    /// Reserves a connection slot in `room`, or `None` when the room is full.
    pub fn try_join(self: &Arc<Self>, room: &str, limits: &AbuseLimits) -> Option<RoomSlot> {
        let mut rooms = self.rooms.lock().ok()?;
        let name: Arc<str> = Arc::from(room);
        let gate = rooms.entry(name.clone()).or_insert_with(|| RoomGate {
            conns: 0,
            awareness: TokenBucket::new(
                2.0 * f64::from(limits.room_awareness_per_sec),
                f64::from(limits.room_awareness_per_sec),
            ),
        });
        if gate.conns >= limits.max_connections_per_room {
            return None;
        }
        gate.conns += 1;
        Some(RoomSlot {
            gates: self.clone(),
            room: name,
        })
    }

    fn take_awareness(&self, room: &str) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        rooms
            .get_mut(room)
            .is_some_and(|g| g.awareness.take(Instant::now()))
    }
}

/// What the read loop does with a frame after the policy looked at it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward to the room.
    Forward,
    /// Drop silently (already counted and logged).
    Drop,
    /// Close the connection with this code and reason label.
    Close(u16, &'static str),
}

/// What [`ConnPolicy::write_verdict`] makes of a step2 or update.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteVerdict {
    /// Forward to the room.
    Forward,
    /// From a read-only connection, but it writes nothing (see [`ConnPolicy::on_write`]).
    NotAWrite,
    /// A write from a read-only connection: not forwarded.
    Refused,
}

#[derive(Debug)]
struct Rates {
    step1: TokenBucket,
    awareness: TokenBucket,
}

/// The per-connection policy: access (read-only or not), rates, and the once-only
/// permission-denied notice.
#[derive(Debug)]
pub(crate) struct ConnPolicy {
    gates: Arc<RoomGates>,
    read_only_awareness: ReadOnlyAwareness,
    room: Arc<str>,
    access: Access,
    rates: Mutex<Rates>,
    denied_sent: AtomicBool,
}

impl ConnPolicy {
    pub fn new(
        gates: Arc<RoomGates>,
        l: &AbuseLimits,
        read_only_awareness: ReadOnlyAwareness,
        room: &str,
        access: Access,
    ) -> Self {
        Self {
            gates,
            read_only_awareness,
            room: Arc::from(room),
            access,
            rates: Mutex::new(Rates {
                step1: TokenBucket::new(
                    f64::from(l.sync_step1_burst),
                    f64::from(l.sync_step1_per_minute) / 60.0,
                ),
                awareness: TokenBucket::new(
                    2.0 * f64::from(l.awareness_per_sec),
                    f64::from(l.awareness_per_sec),
                ),
            }),
            denied_sent: AtomicBool::new(false),
        }
    }

    /// The room this connection is in.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// A SyncStep1: allowed within the rate, else the connection is closed (1008). Dropping it
    /// instead would leave a client waiting for a step2 forever.
    pub fn on_step1(&self) -> Verdict {
        let ok = self
            .rates
            .lock()
            .map(|mut r| r.step1.take(Instant::now()))
            .unwrap_or(false);
        if ok {
            Verdict::Forward
        } else {
            Verdict::Close(close_code::POLICY, "sync_step1_rate")
        }
    }

    /// A step2 (`handshake`) or update that was admitted (`stats` from `admit_update`).
    /// Writers forward. From a read-only connection nothing is forwarded; what carries no write
    /// is dropped quietly, a write is refused and the client told once (y-protocols auth
    /// message). A step2 without structs is not a write: Yjs puts the document's whole delete
    /// set into every step2, so a reader that reconnects with content sends deletions it merely
    /// received. A live update with only deletions is a write.
    /// The notice goes to `queue`, the connection's own queue.
    pub fn on_write(
        &self,
        stats: &weaver_protocol::UpdateStats,
        handshake: bool,
        queue: &crate::send_queue::SendQueue,
    ) -> Verdict {
        match self.write_verdict(stats, handshake) {
            WriteVerdict::Forward => return Verdict::Forward,
            WriteVerdict::NotAWrite => return Verdict::Drop,
            WriteVerdict::Refused => {}
        }
        if !self.denied_sent.swap(true, Ordering::Relaxed) {
            warn!(
                reason = "read_only",
                "write from a read-only connection refused; permission denied sent"
            );
            let frame = weaver_protocol::encode_permission_denied("read-only access");
            // A full queue means the room is about to close this slow consumer anyway.
            let _ = queue.push(Bytes::from(frame));
        } else {
            debug!("further write from a read-only connection dropped");
        }
        Verdict::Drop
    }

    /// The rule of [`Self::on_write`] without its notice, for a framing that answers every write
    /// itself (Hocuspocus: `syncStatus`). A refusal is counted here.
    pub fn write_verdict(
        &self,
        stats: &weaver_protocol::UpdateStats,
        handshake: bool,
    ) -> WriteVerdict {
        if self.access.can_write() {
            return WriteVerdict::Forward;
        }
        if stats.structs == 0 && (handshake || stats.delete_ranges == 0) {
            return WriteVerdict::NotAWrite;
        }
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "read_only").increment(1);
        WriteVerdict::Refused
    }

    /// An awareness message: read-only connections per `--read-only-awareness`, then the
    /// per-connection and per-room rates. Excess awareness is dropped, not closed: the next
    /// renewal supersedes it and a stock client must not be disconnected for moving a cursor.
    pub fn on_awareness(&self) -> Verdict {
        if !self.access.can_write() && self.read_only_awareness == ReadOnlyAwareness::Deny {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "read_only_awareness")
                .increment(1);
            return Verdict::Drop;
        }
        let ok = self
            .rates
            .lock()
            .map(|mut r| r.awareness.take(Instant::now()))
            .unwrap_or(false);
        if !ok {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "awareness_rate")
                .increment(1);
            return Verdict::Drop;
        }
        if !self.gates.take_awareness(&self.room) {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "room_awareness_rate")
                .increment(1);
            return Verdict::Drop;
        }
        Verdict::Forward
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_refills() {
        let start = Instant::now();
        let mut b = TokenBucket::new(3.0, 2.0);
        b.last = start;
        assert!(b.take(start) && b.take(start) && b.take(start));
        assert!(!b.take(start));
        // Half a second at 2/s refills exactly one.
        let later = start + Duration::from_millis(500);
        assert!(b.take(later));
        assert!(!b.take(later));
        // Never more than the capacity, however long it waited.
        let much_later = later + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.take(much_later)));
        assert!(!b.take(much_later));
    }

    /// Room loads saturated (the only load slot held elsewhere, no wait allowed): an HTTP read
    /// gets `Overloaded` (503), a WebSocket join is closed with 1013; once the slot is free the
    /// same room loads normally.
    #[tokio::test]
    async fn saturated_room_loads_are_refused_with_1013() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_database(dir.path()).unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let config = crate::RelayConfig {
            limits: AbuseLimits {
                max_concurrent_loads: 1,
                load_wait: Duration::ZERO,
                ..AbuseLimits::default()
            },
            ..crate::RelayConfig::default()
        };
        let store = crate::RedbRoomStore::start(db, crate::CommitMode::default()).unwrap();
        let relay = crate::Relay::start(store, config, shutdown.clone()).unwrap();
        let handle = relay.handle();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(crate::serve(
            listener,
            relay.router(),
            crate::HttpLimits::default(),
            shutdown.clone().cancelled_owned(),
        ));

        let held = handle.load_permits().acquire().await.unwrap();
        let err = handle.room_state("busy").await.unwrap_err();
        assert!(matches!(err, crate::RelayError::Overloaded(_)), "{err:?}");
        assert_eq!(err.status().as_u16(), 503);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/busy"))
            .await
            .unwrap();
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))))) => {
                    break u16::from(f.code);
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(code, close_code::SLOW_CONSUMER);

        drop(held);
        assert!(handle.room_state("busy").await.is_ok());
        shutdown.cancel();
        relay.shutdown().await;
        let _ = server.await;
    }

    #[test]
    fn defaults_validate_and_zero_is_refused() {
        assert!(AbuseLimits::default().validate().is_ok());
        let bad = AbuseLimits {
            sync_step1_burst: 0,
            ..AbuseLimits::default()
        };
        assert!(bad.validate().is_err());
    }
}
