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
//! Deliberately not here: document state (room/), token format (weaver-auth), forwarding a
//! document whose room another node owns (forward/hocuspocus.rs; the socket hands it over).

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use weaver_protocol::{
        HocusFrame, HocusMessage, Message as Wire, decode_hocus_frame, encode_hocus_document,
        encode_hocus_token, encode_update,
    };
    use yrs::updates::decoder::Decode;
    use yrs::{GetString, Text, Transact};

    /// `GET /` over a raw socket (no upgrade): the whole response.
    async fn http_get(addr: std::net::SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn next_frame(
        ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    ) -> Vec<u8> {
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            match msg {
                Message::Binary(b) if b.as_ref() != [9] => return b.to_vec(),
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The handshake, one write and its acknowledgement through a real socket: `authenticated`
    /// first, the room's step1, then the echo of the write (after its commit) before the
    /// `syncStatus(applied)` that tells the provider it is saved; a plain GET of `/` still
    /// reaches the page.
    #[tokio::test]
    async fn a_document_authenticates_joins_writes_and_is_acknowledged_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_database(dir.path()).unwrap();
        let store = crate::RedbRoomStore::start(db, crate::CommitMode::default()).unwrap();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let relay =
            crate::Relay::start(store, crate::RelayConfig::default(), shutdown.clone()).unwrap();
        let page = axum::Router::new().route("/", axum::routing::get(|| async { "page" }));
        let app = relay.router().merge(relay.with_hocuspocus(page));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(crate::serve(
            listener,
            app,
            crate::HttpLimits::default(),
            shutdown.clone().cancelled_owned(),
        ));

        let body = http_get(addr).await;
        assert!(body.ends_with("page"), "{body}");

        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        ws.send(Message::Binary(
            encode_hocus_token("doc", "", Some("4.8.0")).into(),
        ))
        .await
        .unwrap();
        let authenticated = next_frame(&mut ws).await;
        assert_eq!(
            decode_hocus_frame(&authenticated).unwrap(),
            HocusFrame::Document {
                address: "doc",
                message: HocusMessage::Authenticated("read-write")
            }
        );
        let step1 = next_frame(&mut ws).await;
        assert!(matches!(
            decode_hocus_frame(&step1).unwrap(),
            HocusFrame::Document {
                address: "doc",
                message: HocusMessage::Yjs {
                    message: Wire::SyncStep1(_),
                    ..
                }
            }
        ));

        let doc = yrs::Doc::with_client_id(7);
        let text = doc.get_or_insert_text("t");
        let update = {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, "hi");
            txn.encode_update_v1()
        };
        ws.send(Message::Binary(
            encode_hocus_document("doc", &encode_update(&update)).into(),
        ))
        .await
        .unwrap();
        let echo = next_frame(&mut ws).await;
        assert!(
            matches!(
                decode_hocus_frame(&echo).unwrap(),
                HocusFrame::Document {
                    message: HocusMessage::Yjs {
                        message: Wire::Update(_),
                        ..
                    },
                    ..
                }
            ),
            "the echo comes first: {echo:?}"
        );
        let ack = next_frame(&mut ws).await;
        assert_eq!(
            decode_hocus_frame(&ack).unwrap(),
            HocusFrame::Document {
                address: "doc",
                message: HocusMessage::SyncStatus(true)
            }
        );
        // Durable and in the room, as any y-websocket client's write.
        let state = relay.handle().room_state("doc").await.unwrap();
        let stored = yrs::Doc::new();
        stored
            .transact_mut()
            .apply_update(yrs::Update::decode_v1(&state).unwrap())
            .unwrap();
        let t = stored.get_or_insert_text("t");
        assert_eq!(t.get_string(&stored.transact()), "hi");

        // Garbage after a valid document name: 1002, the socket only.
        ws.send(Message::Binary(
            vec![3, b'd', b'o', b'c', 0, 2, 0xff].into(),
        ))
        .await
        .unwrap();
        let code = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => break u16::from(f.code),
                Ok(Some(Ok(_))) => {}
                other => panic!("no close frame: {other:?}"),
            }
        };
        assert_eq!(code, crate::close_code::PROTOCOL_ERROR);
        shutdown.cancel();
        relay.shutdown().await;
        let _ = server.await;
    }
}
