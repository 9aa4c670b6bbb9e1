//! Hocuspocus clients (`@hocuspocus/provider` 4.x): a second framing over the same rooms. A
//! WebSocket upgrade at `/` (no room in the path) carries any number of documents, each
//! addressed by name in every message (weaver-protocol's `hocuspocus` codec) and each
//! authenticated by its own token message. Every document becomes one subscription to its room,
//! exactly what a y-websocket connection is to the room actor (a `ConnLink` with its own
//! `SendQueue` and `ConnPolicy`), so admission (`admit_update`), validation before yrs,
//! durable-before-broadcast, limits, slow-consumer closes and metrics are the room machinery's,
//! unchanged; this module only translates the framing and multiplexes the subscriptions.
//!
//! - `mod.rs`   — the upgrade at `/` (a route layer: a plain GET of `/` keeps serving the page).
//! - `socket.rs` — the connection task: demultiplexes frames into per-document subscriptions,
//!   answers the auth handshake, writes every subscription's queue with its address, timers.
//! - `document.rs` — one document on a socket: its room, access, queue, phase.
//!
//! Deliberately not here: document state (room/), token format (weaver-auth), forwarding to
//! another node (a room owned elsewhere closes the socket with 1013; docs/protocol.md).

mod document;
mod socket;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info_span, warn};

use crate::connection::ConnDeps;
use crate::error::RelayError;
use crate::metrics as m;
use crate::origin::AllowedOrigins;

/// Documents one Hocuspocus socket may have open (authenticated or joining) at once; a socket
/// asking for more is closed with 1008. The provider opens one per `HocuspocusProvider` that
/// shares the socket.
pub const DEFAULT_MAX_DOCUMENTS_PER_SOCKET: usize = 64;

/// What the `/` layer needs: the connection machinery, the token checker, the origin list.
#[derive(Debug, Clone)]
pub(crate) struct HocusDeps {
    pub conns: ConnDeps,
    pub auth: crate::auth::Authenticator,
    pub origins: AllowedOrigins,
}

/// Route layer over the router that serves `/` (the web demo): a WebSocket upgrade of exactly
/// `/` becomes a Hocuspocus connection; every other request goes on to the route.
pub(crate) async fn root_upgrade(
    State(deps): State<HocusDeps>,
    req: Request,
    next: Next,
) -> Response {
    let is_upgrade = req.method() == Method::GET
        && req.uri().path() == "/"
        && req
            .headers()
            .get(axum::http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return next.run(req).await;
    }
    if let Some(refused) = deps.origins.refuse(req.headers(), req.uri().path()) {
        return refused;
    }
    let (mut parts, _body) = req.into_parts();
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let rooms = &deps.conns.rooms;
    if !rooms.is_ready() {
        return RelayError::ShuttingDown.into_response();
    }
    let Ok(permit) = deps.conns.permits.clone().try_acquire_owned() else {
        warn!("connection limit reached; refusing Hocuspocus upgrade");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "connection_limit").increment(1);
        return RelayError::Overloaded("connection limit reached").into_response();
    };
    let max = rooms.deps().config.max_message_bytes;
    let socket_id = rooms.next_id();
    let span = info_span!("hocuspocus", socket = socket_id);
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(crate::connection::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            socket::start(deps, socket, permit, span);
            std::future::ready(())
        })
}
