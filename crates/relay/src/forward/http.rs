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
    let Some(room) = room_of(req.uri().path()) else {
        return next.run(req).await;
    };
    match relay.remote_owner(room).await {
        Ok(None) => next.run(req).await,
        Ok(Some(owner)) => match proxy(req, &owner).await {
            Ok(resp) => resp,
            Err(e) => {
                warn!(owner = %owner.node_id, error = %e, "forwarding to the room's owner failed");
                RelayError::Unavailable(e.to_string()).into_response()
            }
        },
        Err(e) => e.into_response(),
    }
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
}
