//! `GET /api/rooms/{room}/changes`: a room's durably committed updates as Server-Sent Events,
//! for systems that mirror documents (a search index, a warehouse, notifications) without
//! speaking the WebSocket protocol or holding a connection in the room (what y-sweet users ask
//! for in jamsocket/y-sweet#387).
//!
//! The feed first sends what the consumer lacks (`sync`: the diff against `?sv=`, or the whole
//! document), then one `update` event per committed update. It subscribes before it reads the
//! state, so nothing falls between the two; an update may arrive in both, which is harmless
//! because applying a Yjs update twice changes nothing. It never sends an update before its
//! durable commit, and it does not keep the room loaded. It ends with one `closed` event naming
//! why: the room was deleted, the consumer fell behind (`lagged`: reconnect with `?sv=` of what
//! it has), its token expired, or the server is stopping. A consumer that cannot keep up is
//! cut off and resyncs, never silently skipped, like a WebSocket slow consumer.
//!
//! Resumable: each `update` carries its seq as the SSE `id` (the `sync` event the seq it
//! covers), and a reconnect presenting `Last-Event-ID` (header, or `?last_event_id=` for clients
//! that cannot set headers) gets only the updates committed after it, read from the room's log,
//! when the log still holds all of them; otherwise (compacted past it, or an id above the room's
//! seq: the room was deleted and started again at seq 1) a full `sync`, as without the id.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::Access;
use crate::error::RelayError;
use crate::events::{EventReceiver, RecvError, RelayEvent};
use crate::metrics as m;
use crate::query::decode_sv;
use crate::room::Registry;
use crate::room_name::validate_room_name;

/// What change feeds need from the relay: the rooms (state reads, the event bus, ids, the
/// shutdown token) and the feed limit.
#[derive(Debug, Clone)]
pub(crate) struct FeedDeps {
    pub rooms: Arc<Registry>,
    /// One permit per open change feed (moved into the feed's stream).
    pub permits: Arc<Semaphore>,
}

/// A comment line this often keeps proxies (nginx's 60 s `proxy_read_timeout`) from closing a
/// quiet feed, and finds consumers that are gone.
pub const FEED_KEEPALIVE: Duration = Duration::from_secs(15);

/// The largest event a feed can send: a `sync` of a whole document (up to `--max-doc-bytes`)
/// or an update (up to `--max-message-bytes`), base64, with its `event:`/`id:` lines. A node
/// proxying another node's feed holds at most this much of one event (forward/http.rs).
pub(crate) fn max_event_bytes(config: &crate::RelayConfig) -> usize {
    let doc = usize::try_from(config.max_doc_bytes).unwrap_or(usize::MAX);
    let payload = config.max_message_bytes.max(doc);
    (payload / 3 + 1).saturating_mul(4).saturating_add(256)
}

/// Why a feed ended (the `reason` of its `closed` event and of the metric).
#[derive(Debug, Clone, Copy)]
enum End {
    Deleted,
    Lagged,
    TokenExpired,
    Shutdown,
    /// Cluster mode: the room stopped running on this node (idle unload, lease lost, owner
    /// gone); it runs, or will, on another node, whose commits this node does not see.
    Moved,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Deleted => "deleted",
            End::Lagged => "lagged",
            End::TokenExpired => "token_expired",
            End::Shutdown => "shutdown",
            End::Moved => "moved",
        }
    }

    fn message(self) -> &'static str {
        match self {
            End::Deleted => "the room was deleted",
            End::Lagged => {
                "the feed fell behind and updates were dropped; reconnect with ?sv= of your state"
            }
            End::TokenExpired => "the token expired; reconnect with a fresh one",
            End::Shutdown => "the server is shutting down; reconnect later",
            End::Moved => {
                "the room no longer runs on this node; reconnect (with Last-Event-ID) to any node"
            }
        }
    }
}

enum Phase {
    /// The document (or its diff against `?sv=`) and the seq it covers.
    Sync(Vec<u8>, u64),
    /// Resuming: the logged updates after the consumer's `Last-Event-ID`, with their seqs.
    Replay(Missed),
    Live,
    Done,
}

struct Feed {
    id: u64,
    room: Arc<str>,
    phase: Phase,
    /// This room's events only.
    events: EventReceiver,
    /// Live updates up to this seq were already sent from the log (a resumed feed subscribed
    /// before reading it); 0 when nothing was replayed.
    replayed_upto: u64,
    cancel: CancellationToken,
    expires: Option<tokio::time::Instant>,
    /// Cluster mode: the feed ends ([`End::Moved`]) once the room is no longer loaded here,
    /// checked on `Unloaded` and every [`MOVED_CHECK`] (a fenced or failed actor publishes
    /// nothing). `None` on a single node, where rooms never move.
    follow: Option<(Arc<Registry>, tokio::time::Interval)>,
    /// Set once the `closed` event went out; otherwise the consumer left.
    ended: Option<End>,
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    async fn next_sse(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::Sync(state, seq) => return Some(sse_update("sync", &state, seq)),
            Phase::Replay(mut queue) => {
                if let Some((seq, update)) = queue.pop_front() {
                    self.phase = Phase::Replay(queue);
                    return Some(sse_update("update", &update, seq));
                }
            }
            Phase::Done => {
                self.phase = Phase::Done;
                return None;
            }
            Phase::Live => {}
        }
        let end = loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break End::Shutdown,
                () = sleep_until(self.expires) => break End::TokenExpired,
                () = moved(self.follow.as_mut(), &self.room) => break End::Moved,
                event = self.events.recv() => match event {
                    Ok(RelayEvent::Committed(ev)) if ev.seq <= self.replayed_upto => {}
                    Ok(RelayEvent::Committed(ev)) => return Some(sse_update("update", &ev.update, ev.seq)),
                    Ok(RelayEvent::Deleted { .. }) => break End::Deleted,
                    Ok(RelayEvent::Unloaded { .. }) if self.follow.is_some() => break End::Moved,
                    Ok(RelayEvent::Unloaded { .. }) => {}
                    Err(RecvError::Lagged(missed)) => {
                        warn!(room = %self.room, feed = self.id, missed, "change feed fell behind; ending it");
                        break End::Lagged;
                    }
                    Err(RecvError::Closed) => break End::Shutdown,
                },
            }
        };
        self.phase = Phase::Done;
        self.ended = Some(end);
        let data = serde_json::json!({ "reason": end.reason(), "message": end.message() });
        Some(Event::default().event("closed").data(data.to_string()))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let reason = self.ended.map_or("client_gone", End::reason);
        info!(room = %self.room, feed = self.id, reason, "change feed ended");
        metrics::gauge!(m::CHANGE_FEEDS).decrement(1.0);
        metrics::counter!(m::CHANGE_FEED_ENDS_TOTAL, "reason" => reason).increment(1);
    }
}

/// How often a cluster-mode feed checks that its room still runs here: well under a lease
/// TTL (1 s at least), so a feed ends before another node can have committed much.
const MOVED_CHECK: Duration = Duration::from_millis(250);

/// Resolves once `room` is no longer loaded on this node; never without `follow`.
async fn moved(follow: Option<&mut (Arc<Registry>, tokio::time::Interval)>, room: &str) {
    let Some((rooms, every)) = follow else {
        return std::future::pending().await;
    };
    loop {
        every.tick().await;
        if matches!(rooms.loaded_inbox(room), Ok(None)) {
            return;
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn sse_update(name: &'static str, update: &[u8], seq: u64) -> Event {
    metrics::counter!(m::CHANGE_FEED_EVENTS_TOTAL).increment(1);
    Event::default()
        .event(name)
        .id(seq.to_string())
        .data(base64::engine::general_purpose::STANDARD.encode(update))
}

/// Logged updates to replay, `(seq, update)` in seq order.
type Missed = VecDeque<(u64, Vec<u8>)>;

/// `?sv=` and `?last_event_id=` of a change feed.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct FeedQuery {
    sv: Option<String>,
    last_event_id: Option<String>,
}

/// The seq a reconnecting consumer last saw: the `Last-Event-ID` header (what `EventSource`
/// sends), else `?last_event_id=`. Anything but a number is ignored (a full sync).
fn last_event_id(headers: &HeaderMap, query: Option<&str>) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query)
        .and_then(|id| id.trim().parse().ok())
}

/// The logged updates after `after`, and the room's last seq, when the log still holds every
/// one of them; `None` when only a full sync can bring the consumer up to date (compacted past
/// `after`, or `after` beyond the room's seq: another life of a deleted room).
fn resume_from(stored: crate::store::StoredRoom, after: u64) -> Option<(Missed, u64)> {
    let last = stored
        .tail
        .last()
        .map_or(stored.snapshot_seq, |(seq, _)| *seq);
    if after > last || after < stored.snapshot_seq {
        return None;
    }
    let missed = stored
        .tail
        .into_iter()
        .filter(|(seq, _)| *seq > after)
        .collect();
    Some((missed, last))
}

/// The handler. Errors before the stream starts are ordinary JSON errors (400, 503...).
pub(crate) async fn changes(
    State(deps): State<FeedDeps>,
    Path(room): Path<String>,
    Query(q): Query<FeedQuery>,
    headers: HeaderMap,
    access: Option<axum::Extension<Access>>,
) -> Result<Response, RelayError> {
    // Set by the auth route layer; its absence is a wiring bug, so fail closed.
    let Some(axum::Extension(access)) = access else {
        return Err(RelayError::Internal("access check missing".into()));
    };
    validate_room_name(&room)?;
    let rooms = &deps.rooms;
    if !rooms.is_ready() {
        return Err(RelayError::ShuttingDown);
    }
    let sv = decode_sv(q.sv)?;
    let Ok(permit) = deps.permits.clone().try_acquire_owned() else {
        warn!(room, "change feed limit reached; refusing");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "change_feed_limit").increment(1);
        return Err(RelayError::Overloaded("change feed limit reached"));
    };
    let name: Arc<str> = Arc::from(room.as_str());
    let room_deps = rooms.deps();
    let config = &room_deps.config;
    // Subscribed before the state is read: whatever commits in between is in both.
    let events = room_deps.events.subscribe_room(
        name.clone(),
        config.conn_queue_frames,
        config.max_message_bytes.saturating_mul(2),
    );
    // Cluster mode: the feed sees only this node's commits, so the room must run here (the
    // forward layer sent the request here because no other node owns it). A full sync loads
    // it anyway; a resumed feed loads it before it reads the log: what another node committed
    // until then is in the log (this node's load fenced it), what this node commits after is
    // in the subscription, and the seqs in both are sent once (`replayed_upto`).
    let follows = config.placement.rooms_can_move();
    let resumed = match last_event_id(&headers, q.last_event_id.as_deref()) {
        Some(after) => {
            if follows {
                rooms.wait_loaded(&room).await?;
            }
            resume_from(room_deps.store.read_room(name.clone()).await?, after)
        }
        None => None,
    };
    let (phase, replayed_upto) = match resumed {
        Some((missed, last)) => (Phase::Replay(missed), last),
        None => {
            // The seq first: the state read after it covers at least that much.
            let seq = stored_seq(&room_deps.store, &room).await?;
            (Phase::Sync(rooms.state_diff(&room, sv).await?, seq), 0)
        }
    };
    let id = rooms.next_id();
    metrics::gauge!(m::CHANGE_FEEDS).increment(1.0);
    match &phase {
        Phase::Replay(missed) => {
            info!(
                room,
                feed = id,
                updates = missed.len(),
                "change feed resumed"
            )
        }
        Phase::Sync(state, _) => info!(room, feed = id, bytes = state.len(), "change feed opened"),
        Phase::Live | Phase::Done => {}
    }
    let feed = Feed {
        id,
        room: name,
        phase,
        events,
        replayed_upto,
        cancel: room_deps.cancel.clone(),
        expires: crate::auth::expiry_deadline(&access),
        follow: follows.then(|| {
            let mut every = tokio::time::interval(MOVED_CHECK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (rooms.clone(), every)
        }),
        ended: None,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let sse = feed.next_sse().await?;
        Some((Ok::<_, Infallible>(sse), feed))
    });
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(FEED_KEEPALIVE));
    // nginx buffers proxied responses unless told not to; a buffered feed is no feed.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse).into_response())
}

/// The room's last stored seq (0: nothing stored).
async fn stored_seq(
    store: &Arc<dyn crate::store::RoomStore>,
    room: &str,
) -> Result<u64, RelayError> {
    let found = store
        .list(room.to_owned(), None, 1, crate::store::Detail::Seq)
        .await?;
    Ok(found
        .first()
        .filter(|r| r.name == room)
        .map_or(0, |r| r.last_seq))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::StoredRoom;

    fn room(snapshot_seq: u64, tail: &[u64]) -> StoredRoom {
        StoredRoom {
            snapshot: (snapshot_seq > 0).then(Vec::new),
            snapshot_seq,
            tail: tail.iter().map(|s| (*s, vec![*s as u8])).collect(),
        }
    }

    fn seqs(r: Option<(Missed, u64)>) -> Option<(Vec<u64>, u64)> {
        r.map(|(q, last)| (q.into_iter().map(|(s, _)| s).collect(), last))
    }

    #[test]
    fn resumes_from_the_log_or_asks_for_a_full_sync() {
        assert_eq!(
            seqs(resume_from(room(0, &[1, 2, 3]), 1)),
            Some((vec![2, 3], 3))
        );
        assert_eq!(seqs(resume_from(room(0, &[1, 2, 3]), 3)), Some((vec![], 3)));
        assert_eq!(
            seqs(resume_from(room(2, &[3, 4]), 2)),
            Some((vec![3, 4], 4))
        );
        // Compacted past the id: a full sync.
        assert_eq!(seqs(resume_from(room(2, &[3, 4]), 1)), None);
        // An id above the room's seq: the room was deleted and started again.
        assert_eq!(seqs(resume_from(room(0, &[1]), 7)), None);
        assert_eq!(seqs(resume_from(room(5, &[]), 5)), Some((vec![], 5)));
    }

    #[test]
    fn last_event_id_header_first_then_query() {
        let mut h = HeaderMap::new();
        assert_eq!(last_event_id(&h, Some("4")), Some(4));
        h.insert("last-event-id", "9".parse().unwrap());
        assert_eq!(last_event_id(&h, Some("4")), Some(9));
        assert_eq!(last_event_id(&HeaderMap::new(), Some("x")), None);
    }
}
