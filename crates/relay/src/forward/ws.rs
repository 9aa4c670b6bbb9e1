//! A client's WebSocket for a room owned by another node: one WebSocket to the owner
//! (`ws://<owner>/<room>?<same query>`, same `Authorization`: the owner checks the token too),
//! frames piped both ways in order. Buffers are bounded by the sockets themselves: a direction
//! waits for its destination, so a slow client makes the owner close this connection as a slow
//! consumer, as it would close the client. Either side closing, or the owner connection
//! failing, closes the client's socket: the owner's close code is passed through, 1013 when the
//! owner cannot be reached, 1012 when its connection breaks or the owner stops being the room's
//! owner (`RoomPlacement::owner_gone`: a paused or partitioned owner keeps its TCP connections
//! open); y-websocket then reconnects and resyncs, and the room is placed again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::{HeaderValue, header};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::CloseCode};
use tracing::{info, warn};

use super::{OWNER_CONNECT_TIMEOUT, authority};
use crate::error::close_code;
use crate::metrics as m;
use crate::placement::RemoteOwner;

/// What the forwarding side enforces on the client, as a local connection would.
#[derive(Debug, Clone)]
pub(crate) struct ClientLimits {
    pub ping_interval: Duration,
    /// The relay's shutdown: a forwarded connection belongs to no room here that would close
    /// it, so it watches the token itself.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Tells when the owner is no longer the room's owner (`RoomPlacement::owner_gone`).
    pub placement: std::sync::Arc<dyn crate::RoomPlacement>,
}

/// What the owner must see of the client's upgrade request: its query (`?token=` and the
/// rest) and its `Authorization` header, so it checks the same token itself.
#[derive(Debug)]
pub(crate) struct Handoff {
    query: Option<String>,
    authorization: Option<HeaderValue>,
}

impl Handoff {
    /// `None` when there is nothing to pass on (no allocation for most connections).
    pub(crate) fn new(
        query: Option<String>,
        authorization: Option<HeaderValue>,
    ) -> Option<Box<Handoff>> {
        let query = query.filter(|q| !q.is_empty());
        (query.is_some() || authorization.is_some()).then(|| {
            Box::new(Handoff {
                query,
                authorization,
            })
        })
    }
}

/// How one forwarded connection ended: the close sent to the client.
type Close = (u16, String);

/// Pipes `client` to the room's owner until either side ends; closes the client's socket.
pub(crate) async fn pipe(
    client: &mut WebSocket,
    owner: &RemoteOwner,
    room: &str,
    handoff: Option<&Handoff>,
    limits: ClientLimits,
) {
    let url = match handoff.and_then(|h| h.query.as_deref()) {
        Some(q) => format!("ws://{}/{room}?{q}", authority(&owner.url)),
        None => format!("ws://{}/{room}", authority(&owner.url)),
    };
    let mut request = match url.into_client_request() {
        Ok(r) => r,
        Err(e) => {
            warn!(owner = %owner.node_id, error = %e, "bad owner URL; closing the client");
            return close(client, close_code::SLOW_CONSUMER, "room owner unreachable").await;
        }
    };
    if let Some(auth) = handoff.and_then(|h| h.authorization.clone()) {
        request.headers_mut().insert(header::AUTHORIZATION, auth);
    }
    // Owner frames are trusted (a node of the cluster): a whole document's step2 may exceed
    // the client's message limit, so the owner side has none.
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let upstream = match tokio::time::timeout(OWNER_CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            warn!(owner = %owner.node_id, error = %e, "owner unreachable; closing the client");
            return close(client, close_code::SLOW_CONSUMER, "room owner unreachable").await;
        }
        Err(_) => {
            warn!(owner = %owner.node_id, "owner did not answer in time; closing the client");
            return close(client, close_code::SLOW_CONSUMER, "room owner unreachable").await;
        }
    };
    metrics::gauge!(m::FORWARDED_CONNECTIONS).increment(1.0);
    info!(owner = %owner.node_id, "forwarding to the room's owner");
    let (mut up_tx, mut up_rx) = upstream.split();
    let (mut down_tx, mut down_rx) = (&mut *client).split();
    // Milliseconds since `opened` of the client's last frame (both directions read it).
    let opened = Instant::now();
    let last_seen = AtomicU64::new(0);
    let since_opened = || opened.elapsed().as_millis() as u64;
    let to_owner = async {
        loop {
            let msg = match down_rx.next().await {
                Some(Ok(m)) => m,
                None | Some(Err(_)) => return None,
            };
            last_seen.store(since_opened(), Ordering::Relaxed);
            let out = match msg {
                Message::Binary(b) => tungstenite::Message::Binary(b),
                Message::Text(t) => tungstenite::Message::Text(t.as_str().into()),
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(frame) => {
                    let frame = frame.map(|f| tungstenite::protocol::CloseFrame {
                        code: CloseCode::from(f.code),
                        reason: f.reason.as_str().into(),
                    });
                    let _ = up_tx.send(tungstenite::Message::Close(frame)).await;
                    return None;
                }
            };
            if up_tx.send(out).await.is_err() {
                return Some((
                    close_code::SHUTDOWN,
                    "room owner connection lost".to_owned(),
                ));
            }
        }
    };
    let from_owner = async {
        let mut next_ping = Instant::now() + limits.ping_interval;
        loop {
            let msg = tokio::select! {
                m = up_rx.next() => m,
                _ = tokio::time::sleep_until(next_ping) => {
                    let silent_ms = since_opened().saturating_sub(last_seen.load(Ordering::Relaxed));
                    if u128::from(silent_ms) > 2 * limits.ping_interval.as_millis() {
                        return Some((close_code::TIMEOUT, "ping timeout".to_owned()));
                    }
                    next_ping = Instant::now() + limits.ping_interval;
                    if down_tx.send(Message::Ping(bytes::Bytes::new())).await.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            let out = match msg {
                Some(Ok(tungstenite::Message::Binary(b))) => Message::Binary(b),
                Some(Ok(tungstenite::Message::Text(t))) => Message::Text(t.as_str().into()),
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    return Some(frame.map_or((1000, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    }));
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => {
                    return Some((
                        close_code::SHUTDOWN,
                        "room owner connection lost".to_owned(),
                    ));
                }
            };
            if down_tx.send(out).await.is_err() {
                return None;
            }
        }
    };
    let ended: Option<Close> = tokio::select! {
        r = to_owner => r,
        r = from_owner => r,
        () = limits.shutdown.cancelled() => {
            Some((close_code::SHUTDOWN, "server shutting down".to_owned()))
        }
        () = limits.placement.owner_gone(room, owner) => {
            info!(owner = %owner.node_id, "the room's owner changed; closing the forwarded connection");
            Some((close_code::SHUTDOWN, "room moved to another node".to_owned()))
        }
    };
    drop((down_tx, down_rx));
    metrics::gauge!(m::FORWARDED_CONNECTIONS).decrement(1.0);
    let (code, reason) = ended.unwrap_or((1000, String::new()));
    info!(code, reason = %reason, "forwarded connection ended");
    close(client, code, &reason).await;
}

/// Sends a close frame (bounded in time) and drops the socket.
async fn close(client: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        client.send(Message::Close(Some(frame))),
    )
    .await;
}
