//! The HTTP room API (`/api/rooms/{room}/…`, `DELETE /api/rooms/{room}`) of a room owned by
//! another node: a route layer that asks the placement for the owner before any handler reads
//! the request, and streams request and response through one HTTP/1.1 connection to the owner
//! (the change feed's events go on flowing until either side ends). Runs after the token
//! check; the owner checks the token again.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::{OWNER_CONNECT_TIMEOUT, authority};
use crate::error::RelayError;
use crate::placement::RemoteOwner;
use crate::relay::RelayHandle;

/// The room a room-API path names (`/api/rooms/{room}` or `/api/rooms/{room}/…`).
fn room_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/rooms/")?;
    let room = rest.split('/').next().unwrap_or(rest);
    (!room.is_empty()).then_some(room)
}

/// Route layer: forwards a room-API request to the room's owner when that is another node.
pub(crate) async fn forward_room_api(
    State(relay): State<RelayHandle>,
    req: Request,
    next: Next,
) -> Response {
    let Some(room) = room_of(req.uri().path()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let feed = req.method() == axum::http::Method::GET && is_feed(req.uri().path());
    match relay.remote_owner(&room).await {
        Ok(None) => next.run(req).await,
        Ok(Some(owner)) => match proxy(req, &owner).await {
            Ok(resp) if feed && resp.status().is_success() => {
                let placement = relay.config().placement.clone();
                follow_feed(
                    resp,
                    async move { placement.owner_gone(&room, &owner).await },
                )
            }
            Ok(resp) => resp,
            Err(e) => {
                warn!(owner = %owner.node_id, error = %e, "forwarding to the room's owner failed");
                RelayError::Unavailable(e.to_string()).into_response()
            }
        },
        Err(e) => e.into_response(),
    }
}

/// Whether a room-API path is a change feed (`/api/rooms/{room}/changes`).
fn is_feed(path: &str) -> bool {
    path.strip_prefix("/api/rooms/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(_, tail)| tail == "changes")
}

/// The last event of a proxied change feed whose owner went away: the owner's own `closed`
/// event never comes, so this node says why the feed ends (feed.rs's reasons, plus this one).
const OWNER_GONE_EVENT: &[u8] = b"event: closed\ndata: {\"reason\":\"owner_gone\",\"message\":\"the node serving this room is gone or no longer owns it; reconnect (with Last-Event-ID) to any node\"}\n\n";

/// A change feed proxied from the room's owner, streamed as is until the owner ends it;
/// when the owner's connection breaks or `gone` resolves (the owner no longer holds the
/// room: a paused or partitioned owner keeps its TCP connection open), it ends with a
/// `closed` event of reason `owner_gone`, so mirrors reconnect instead of hanging.
fn follow_feed(
    resp: Response,
    gone: impl std::future::Future<Output = ()> + Send + 'static,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    enum State<S> {
        Streaming(
            S,
            std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        ),
        Done,
    }
    let start = State::Streaming(body.into_data_stream(), Box::pin(gone));
    let stream = futures_util::stream::unfold(start, |state| async move {
        let State::Streaming(mut body, mut gone) = state else {
            return None;
        };
        let next = tokio::select! {
            chunk = body.next() => chunk,
            () = &mut gone => {
                debug!("the feed's room owner is gone; ending the proxied feed");
                Some(Err(axum::Error::new("owner gone")))
            }
        };
        match next {
            Some(Ok(chunk)) => Some((
                Ok::<_, std::convert::Infallible>(chunk),
                State::Streaming(body, gone),
            )),
            // The owner ended the feed itself (its `closed` event went through).
            None => None,
            Some(Err(e)) => {
                debug!(error = %e, "proxied change feed broke");
                Some((Ok(bytes::Bytes::from_static(OWNER_GONE_EVENT)), State::Done))
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Streams `req` to another node (`node.url`) and returns its response, body streamed; 503
/// when that node cannot be reached. For the binary's cluster-wide routes that one node serves
/// (the bridge's, on its leader), so they share this proxy.
pub async fn forward_request(req: Request, node: &RemoteOwner) -> Response {
    match proxy(req, node).await {
        Ok(resp) => resp,
        Err(e) => {
            warn!(node = %node.node_id, error = %e, "forwarding to another node failed");
            RelayError::Unavailable(e.to_string()).into_response()
        }
    }
}

/// Largest answer [`get_json`] reads from another node.
const MAX_PEER_ANSWER: usize = 16 << 20;

/// `GET path_and_query` on another node with `headers`, its JSON answer parsed; an error
/// (unreachable, not 200, not that JSON, more than `deadline` in all) as text for the log.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    node: &RemoteOwner,
    path_and_query: &str,
    headers: axum::http::HeaderMap,
    deadline: std::time::Duration,
) -> Result<T, String> {
    let exchange = async {
        let mut req = Request::get(path_and_query)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = headers;
        let resp = proxy(req, node).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), MAX_PEER_ANSWER)
            .await
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    match tokio::time::timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("connecting to the room's owner at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the room's owner at {addr} did not answer in time")]
    Timeout { addr: String },
    #[error("HTTP to the room's owner")]
    Http(#[from] hyper::Error),
}

/// Sends `req` to the owner and returns its response, body streamed.
async fn proxy(mut req: Request, owner: &RemoteOwner) -> Result<Response, ProxyError> {
    let addr = authority(&owner.url).to_owned();
    let stream =
        match tokio::time::timeout(OWNER_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ProxyError::Connect { addr, source }),
            Err(_) => return Err(ProxyError::Timeout { addr }),
        };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Ends with the exchange: when the response body is read to its end, or dropped because
    // our client went away (which closes the connection to the owner).
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "connection to the room's owner ended");
        }
    });
    let origin_form = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<Uri>()
        .unwrap_or_else(|_| Uri::from_static("/"));
    *req.uri_mut() = origin_form;
    if let Ok(host) = HeaderValue::from_str(&addr) {
        req.headers_mut().insert(header::HOST, host);
    }
    let resp = sender.send_request(req).await?;
    let (mut parts, body) = resp.into_parts();
    // Framing is this connection's business, not the owner's.
    for h in [header::CONNECTION, header::TRANSFER_ENCODING] {
        parts.headers.remove(h);
    }
    parts.headers.remove("keep-alive");
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use super::room_of;

    #[test]
    fn room_api_paths_name_their_room() {
        assert_eq!(room_of("/api/rooms/a/update"), Some("a"));
        assert_eq!(room_of("/api/rooms/a"), Some("a"));
        assert_eq!(room_of("/api/rooms"), None);
        assert_eq!(room_of("/api/rooms/"), None);
        assert_eq!(room_of("/a"), None);
    }

    #[test]
    fn feeds_are_told_apart_from_other_room_routes() {
        assert!(super::is_feed("/api/rooms/a/changes"));
        assert!(!super::is_feed("/api/rooms/a/update"));
        assert!(!super::is_feed("/api/rooms/changes"));
        assert!(!super::is_feed("/api/rooms/a/versions/changes"));
    }
}
