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
use bytes::Bytes;
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
                let max_event = crate::feed::max_event_bytes(relay.config());
                follow_feed(
                    resp,
                    async move { placement.owner_gone(&room, &owner).await },
                    max_event,
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

/// The last event of a proxied change feed whose owner sent an event larger than any feed
/// event can be: not a feed this node can pass on whole, so it ends rather than buffer more.
const TOO_LARGE_EVENT: &[u8] = b"event: closed\ndata: {\"reason\":\"too_large\",\"message\":\"the room's owner sent an event larger than a change feed event can be; reconnect (with Last-Event-ID)\"}\n\n";

/// A change feed proxied from the room's owner, passed on whole event by whole event until the
/// owner ends it. When the owner's connection breaks or `gone` resolves (the owner no longer
/// holds the room: a paused or partitioned owner keeps its TCP connection open), the feed ends
/// with a `closed` event of reason `owner_gone`, so mirrors reconnect instead of hanging.
/// Events are cut at their blank line before they go out: an owner killed in the middle of an
/// event leaves a partial one, which is dropped, since a client would read it glued to the
/// `closed` event as one broken event. More than `max_event` bytes without a blank line ends
/// the feed (`too_large`) instead of buffering without bound.
fn follow_feed(
    resp: Response,
    gone: impl std::future::Future<Output = ()> + Send + 'static,
    max_event: usize,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = resp.into_parts();
    struct Streaming<S> {
        body: S,
        gone: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        events: EventCutter,
    }
    let start = Some(Streaming {
        body: body.into_data_stream(),
        gone: Box::pin(gone),
        events: EventCutter::new(max_event),
    });
    let stream = futures_util::stream::unfold(start, |state| async move {
        let mut s = state?;
        loop {
            let next = tokio::select! {
                chunk = s.body.next() => chunk,
                () = &mut s.gone => {
                    debug!("the feed's room owner is gone; ending the proxied feed");
                    Some(Err(axum::Error::new("owner gone")))
                }
            };
            let chunk = match next {
                Some(Ok(chunk)) => chunk,
                // The owner ended the feed itself (its `closed` event went through).
                None if s.events.pending() == 0 => return None,
                None | Some(Err(_)) => {
                    if let Some(Err(e)) = &next {
                        debug!(error = %e, "proxied change feed broke");
                    }
                    if s.events.pending() > 0 {
                        debug!(
                            bytes = s.events.pending(),
                            "dropping a partial event of the owner's"
                        );
                    }
                    return Some((Ok(Bytes::from_static(OWNER_GONE_EVENT)), None));
                }
            };
            match s.events.push(&chunk) {
                Ok(None) => {}
                Ok(Some(whole)) => {
                    return Some((Ok::<_, std::convert::Infallible>(whole), Some(s)));
                }
                Err(TooLarge) => {
                    warn!(
                        max_event = s.events.max_event,
                        "the room's owner sent a feed event too large; ending the feed"
                    );
                    return Some((Ok(Bytes::from_static(TOO_LARGE_EVENT)), None));
                }
            }
        }
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// An event of more than the limit without its end.
#[derive(Debug, PartialEq, Eq)]
struct TooLarge;

/// Cuts a byte stream of Server-Sent Events at event ends (a blank line, `\n\n`: feed.rs
/// writes `\n` line ends), holding back the last, unfinished event.
#[derive(Debug)]
struct EventCutter {
    buf: bytes::BytesMut,
    /// Where the search for the next event end resumes: the bytes before it have none.
    scanned: usize,
    max_event: usize,
}

impl EventCutter {
    fn new(max_event: usize) -> Self {
        EventCutter {
            buf: bytes::BytesMut::new(),
            scanned: 0,
            max_event,
        }
    }

    /// Bytes held back: an event not ended yet.
    fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Takes `chunk`; returns every whole event held now (in one piece), if any.
    fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        // One byte back: an end may straddle the chunks.
        let from = self.scanned.saturating_sub(1);
        let last_end = self.buf[from..]
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .map(|at| from + at + 2);
        let Some(end) = last_end else {
            self.scanned = self.buf.len();
            return if self.buf.len() > self.max_event {
                Err(TooLarge)
            } else {
                Ok(None)
            };
        };
        let whole = self.buf.split_to(end).freeze();
        // What is left follows the last end: it holds none (a later push checks its size).
        self.scanned = self.buf.len();
        Ok(Some(whole))
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    #[test]
    fn events_are_passed_on_whole_and_a_partial_one_is_held_back() {
        let mut cut = EventCutter::new(64);
        assert_eq!(cut.push(b"event: sync\ndata: AA").unwrap(), None);
        assert_eq!(
            cut.push(b"AA\n").unwrap(),
            None,
            "one line end is not an event end"
        );
        assert_eq!(
            cut.push(b"\n:\n\nevent: up").unwrap().unwrap().as_ref(),
            b"event: sync\ndata: AAAA\n\n:\n\n"
        );
        assert_eq!(cut.pending(), b"event: up".len());
        assert_eq!(cut.push(&[b'x'; 55]).unwrap(), None);
        assert_eq!(
            cut.push(b"x"),
            Err(TooLarge),
            "over the limit without an end"
        );
    }

    /// A feed proxied from an owner that died in the middle of an event.
    async fn proxied(chunks: Vec<Result<&'static [u8], &'static str>>, max: usize) -> String {
        let body = Body::from_stream(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| c.map(Bytes::from_static).map_err(axum::Error::new)),
        ));
        let resp = follow_feed(Response::new(body), std::future::pending::<()>(), max);
        let out = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn an_owner_dying_mid_event_leaves_no_partial_event() {
        let out = proxied(
            vec![
                Ok(b"event: update\nid: 1\ndata: AAAA\n\nevent: upd"),
                Ok(b"ate\nid: 2\ndata: BB"),
                Err("connection reset"),
            ],
            1024,
        )
        .await;
        assert_eq!(
            out,
            format!(
                "event: update\nid: 1\ndata: AAAA\n\n{}",
                std::str::from_utf8(OWNER_GONE_EVENT).unwrap()
            )
        );
        // The owner's own end passes through as it is.
        let own = "event: closed\ndata: {\"reason\":\"deleted\"}\n\n";
        assert_eq!(proxied(vec![Ok(own.as_bytes())], 1024).await, own);
        // An event without an end beyond the limit ends the feed.
        let out = proxied(vec![Ok(b"event: update\ndata: AAAAAAAAAAAAAAAAAAAAAA")], 16).await;
        assert_eq!(out.as_bytes(), TOO_LARGE_EVENT);
    }
}
