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

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderName;
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
use crate::query::{SvQuery, decode_sv};
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

/// Why a feed ended (the `reason` of its `closed` event and of the metric).
#[derive(Debug, Clone, Copy)]
enum End {
    Deleted,
    Lagged,
    TokenExpired,
    Shutdown,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Deleted => "deleted",
            End::Lagged => "lagged",
            End::TokenExpired => "token_expired",
            End::Shutdown => "shutdown",
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
        }
    }
}

enum Phase {
    Sync(Vec<u8>),
    Live,
    Done,
}

struct Feed {
    id: u64,
    room: Arc<str>,
    phase: Phase,
    /// This room's events only.
    events: EventReceiver,
    cancel: CancellationToken,
    expires: Option<tokio::time::Instant>,
    /// Set once the `closed` event went out; otherwise the consumer left.
    ended: Option<End>,
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    async fn next_sse(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::Sync(state) => return Some(sse_update("sync", &state)),
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
                event = self.events.recv() => match event {
                    Ok(RelayEvent::Committed(ev)) => return Some(sse_update("update", &ev.update)),
                    Ok(RelayEvent::Deleted { .. }) => break End::Deleted,
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn sse_update(name: &'static str, update: &[u8]) -> Event {
    metrics::counter!(m::CHANGE_FEED_EVENTS_TOTAL).increment(1);
    Event::default()
        .event(name)
        .data(base64::engine::general_purpose::STANDARD.encode(update))
}

/// The handler. Errors before the stream starts are ordinary JSON errors (400, 503...).
pub(crate) async fn changes(
    State(deps): State<FeedDeps>,
    Path(room): Path<String>,
    Query(q): Query<SvQuery>,
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
    let state = rooms.state_diff(&room, sv).await?;
    let id = rooms.next_id();
    metrics::gauge!(m::CHANGE_FEEDS).increment(1.0);
    info!(room, feed = id, bytes = state.len(), "change feed opened");
    let feed = Feed {
        id,
        room: name,
        phase: Phase::Sync(state),
        events,
        cancel: room_deps.cancel.clone(),
        expires: crate::auth::expiry_deadline(&access),
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
