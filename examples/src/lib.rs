//! A minimal Rust y-websocket peer for the examples: a `weaver_doc::Workspace` synced with a
//! running relay over tokio-tungstenite, speaking the frames of `weaver-protocol` (sync step 1,
//! step 2, update). Plus [`two_peers`], the scenario of `examples/two_peers.rs`, kept here so a
//! test runs it against an in-process relay.
//!
//! Deliberately not a client library: no reconnect, no awareness, no offline queue — just
//! enough protocol to show the handshake and live updates end to end.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use weaver_doc::{BlockView, Workspace};
use weaver_protocol::{
    Message, decode_message, encode_sync_step1, encode_sync_step2, encode_update,
};

/// What can go wrong for an example peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("protocol: {0}")]
    Protocol(#[from] weaver_protocol::ProtocolError),
    #[error("document: {0}")]
    Doc(#[from] weaver_doc::DocError),
    #[error("the relay closed the connection ({0})")]
    Closed(String),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

/// One peer: a document replica and its connection to one room of the relay.
#[derive(Debug)]
pub struct Peer {
    pub name: String,
    pub ws: Workspace,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Peer {
    /// Connects to `<url>/<room>` (e.g. `ws://127.0.0.1:1234` and `demo`).
    pub async fn connect(url: &str, room: &str, name: &str) -> Result<Peer, PeerError> {
        let url = format!("{}/{}", url.trim_end_matches('/'), room);
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        Ok(Peer {
            name: name.to_owned(),
            ws: Workspace::new(),
            socket,
        })
    }

    async fn send(&mut self, frame: Vec<u8>) -> Result<(), PeerError> {
        self.socket.send(WsMessage::Binary(frame.into())).await?;
        Ok(())
    }

    /// Handles one frame from the relay. Returns true for a sync step 2 (the relay's answer to
    /// our step 1: we are now up to date).
    async fn handle(&mut self, frame: &[u8]) -> Result<bool, PeerError> {
        match decode_message(frame)? {
            Message::SyncStep1(sv) => {
                // The relay asks what we have that it lacks.
                let diff = self.ws.encode_diff_v1(sv)?;
                self.send(encode_sync_step2(&diff)).await?;
                Ok(false)
            }
            Message::SyncStep2(update) => {
                self.ws.apply_update_v1(update, "relay")?;
                Ok(true)
            }
            Message::Update(update) => {
                self.ws.apply_update_v1(update, "relay")?;
                Ok(false)
            }
            // Awareness and auth frames are not part of this example.
            _ => Ok(false),
        }
    }

    /// Reads and handles frames until `done` holds (checked after each frame) or `timeout`.
    async fn pump(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Peer, bool) -> bool,
    ) -> Result<(), PeerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .map_err(|_| PeerError::Timeout(timeout, what.to_owned()))?;
            let frame = match next {
                Some(Ok(WsMessage::Binary(b))) => b,
                Some(Ok(WsMessage::Close(c))) => {
                    return Err(PeerError::Closed(
                        c.map_or_else(|| "no code".to_owned(), |c| c.to_string()),
                    ));
                }
                Some(Ok(_)) => continue, // ping/pong/text
                Some(Err(e)) => return Err(e.into()),
                None => return Err(PeerError::Closed("stream ended".into())),
            };
            let step2 = self.handle(&frame).await?;
            if done(self, step2) {
                return Ok(());
            }
        }
    }

    /// The y-websocket handshake: send our state vector (step 1), answer the relay's step 1,
    /// and wait for its step 2.
    pub async fn handshake(&mut self, timeout: Duration) -> Result<(), PeerError> {
        let sv = self.ws.state_vector_v1()?;
        self.send(encode_sync_step1(&sv)).await?;
        self.pump("sync step 2", timeout, |_, step2| step2).await
    }

    /// Adds a text block locally and sends the resulting update to the relay.
    pub async fn add_block(&mut self, id: &str, content: &str) -> Result<(), PeerError> {
        let (r, update) = self
            .ws
            .transact(&self.name, |t| t.add_block(id, "text", content))?;
        r?;
        if !update.is_empty() {
            self.send(encode_update(&update)).await?;
        }
        Ok(())
    }

    /// Receives updates until block `id` exists in this replica.
    pub async fn wait_for_block(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<BlockView, PeerError> {
        if let Some(b) = self.ws.block(id)? {
            return Ok(b);
        }
        let what = format!("block {id}");
        self.pump(&what, timeout, |p, _| {
            p.ws.block(id).ok().flatten().is_some()
        })
        .await?;
        self.ws
            .block(id)?
            .ok_or_else(|| PeerError::Timeout(timeout, what))
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The two_peers scenario: peers A and B join `room` at `url`, A adds a block, B sees it, B
/// answers with a block of its own, A sees that. `log` receives a line per step. Returns the
/// two blocks as each peer finally sees them.
pub async fn two_peers(
    url: &str,
    room: &str,
    timeout: Duration,
    log: &mut dyn FnMut(&str),
) -> Result<(BlockView, BlockView), PeerError> {
    let mut a = Peer::connect(url, room, "peer-a").await?;
    let mut b = Peer::connect(url, room, "peer-b").await?;
    log(&format!("connected two peers to {url}/{room}"));
    a.handshake(timeout).await?;
    b.handshake(timeout).await?;
    log(&format!(
        "handshake done: A sees {} block(s), B sees {}",
        a.ws.blocks()?.len(),
        b.ws.blocks()?.len()
    ));
    // Unique ids so the example can run repeatedly against the same room.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id_a = format!("from-a-{stamp}");
    a.add_block(&id_a, "hello from peer A").await?;
    log(&format!("A added block {id_a}"));
    let seen_by_b = b.wait_for_block(&id_a, timeout).await?;
    log(&format!("B sees {id_a}: {:?}", seen_by_b.content));
    let id_b = format!("from-b-{stamp}");
    b.add_block(&id_b, "hello back from peer B").await?;
    log(&format!("B added block {id_b}"));
    let seen_by_a = a.wait_for_block(&id_b, timeout).await?;
    log(&format!("A sees {id_b}: {:?}", seen_by_a.content));
    a.close().await;
    b.close().await;
    Ok((seen_by_b, seen_by_a))
}
