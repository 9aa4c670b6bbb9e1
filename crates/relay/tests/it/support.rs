//! Test support: start the real relay on 127.0.0.1:0 over a temp redb, raw y-websocket clients
//! (tokio-tungstenite) and a minimal HTTP/1.1 client, plus yrs helpers to build updates.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use weaver_relay::{CommittedUpdate, Relay, RelayConfig, RelayEvent, RelayHandle};
use yrs::updates::decoder::Decode;
use yrs::{GetString, Text, Transact, Update};

pub const WAIT: Duration = Duration::from_secs(10);

/// The committed update an event carries (panics on any other event).
pub fn committed(event: RelayEvent) -> CommittedUpdate {
    match event {
        RelayEvent::Committed(u) => u,
        other => panic!("expected a committed update, got {other:?}"),
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub handle: RelayHandle,
    relay: Option<Relay>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub async fn start(dir: &Path, config: RelayConfig) -> Server {
    let db = weaver_relay::open_database(dir).unwrap();
    let shutdown = CancellationToken::new();
    let store =
        weaver_relay::RedbRoomStore::start(db, weaver_relay::CommitMode::default()).unwrap();
    let relay = Relay::start(store, config, shutdown.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(weaver_relay::serve(
        listener,
        relay.router(),
        weaver_relay::HttpLimits::default(),
        shutdown.clone().cancelled_owned(),
    ));
    Server {
        addr,
        handle: relay.handle(),
        relay: Some(relay),
        shutdown,
        server: Some(server),
    }
}

impl Server {
    /// Graceful stop; afterwards the database file can be opened again.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(WAIT, s).await;
        }
        drop(self.handle);
    }

    pub async fn client(&self, room: &str) -> Client {
        Client::connect(self.addr, room).await
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, room: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/{room}"))
            .await
            .unwrap();
        Client { ws }
    }

    pub async fn send(&mut self, frame: &[u8]) {
        self.ws
            .send(Message::Binary(frame.to_vec().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// Next binary frame (pings skipped). Panics on close or timeout.
    pub async fn recv(&mut self) -> Vec<u8> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("stream ended")
                .expect("read error");
            match msg {
                Message::Binary(b) => return b.to_vec(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }

    /// Receives frames until one satisfies `pred` (skipping e.g. awareness frames).
    pub async fn recv_until(&mut self, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        loop {
            let f = self.recv().await;
            if pred(&f) {
                return f;
            }
        }
    }

    /// Reads until the server's close frame; returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return 1005,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("error before close frame: {e}"),
                None => panic!("stream ended without close frame"),
            }
        }
    }

    /// Completes the handshake (server step1 first, answers our step1 with step2).
    pub async fn handshake(&mut self) -> Vec<u8> {
        let first = self.recv().await;
        assert_eq!(&first[..2], &[0, 0], "first frame is step1");
        self.send(&[0, 0, 1, 0]).await;
        let step2 = self.recv_until(|f| f.starts_with(&[0, 1])).await;
        sync_payload(&step2)
    }

    /// The next message of any kind; `None` once the connection ended (or failed).
    pub async fn next_message(&mut self) -> Option<Message> {
        match self.ws.next().await {
            Some(Ok(m)) => Some(m),
            _ => None,
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// The v1 payload of a sync frame `[0, type, varUint8Array]`.
pub fn sync_payload(frame: &[u8]) -> Vec<u8> {
    assert_eq!(frame[0], 0);
    let mut r = weaver_protocol::Reader::new(&frame[2..]);
    r.read_var_u8_array().unwrap().to_vec()
}

/// A one-client document used to produce updates.
pub struct Writer {
    pub doc: yrs::Doc,
}

impl Writer {
    pub fn new(client_id: u64) -> Writer {
        Writer {
            doc: yrs::Doc::with_client_id(client_id),
        }
    }

    /// Appends `s` to text `t`; returns the incremental v1 update.
    pub fn append(&self, s: &str) -> Vec<u8> {
        let text = self.doc.get_or_insert_text("t");
        let mut txn = self.doc.transact_mut();
        let len = text.len(&txn);
        text.insert(&mut txn, len, s);
        txn.encode_update_v1()
    }
}

/// Text `t` of the document described by a v1 update.
pub fn text_of(update: &[u8]) -> String {
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text("t");
    doc.transact_mut()
        .apply_update(Update::decode_v1(update).unwrap())
        .unwrap();
    text.get_string(&doc.transact())
}

/// Minimal HTTP/1.1 request over a fresh connection; returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = buf[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + n]);
            rest = &rest[line_end + 2 + n + 2..];
        }
        body = out;
    }
    (status, body)
}

/// One Server-Sent Event: its `event:` name and its `data:` (lines joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// A Server-Sent Events response read as it arrives. Asked for over HTTP/1.0 so the body is
/// the raw stream until the server closes it (no chunked framing to undo).
pub struct SseStream {
    stream: TcpStream,
    buf: Vec<u8>,
    /// `buf[..scanned]` holds no event end (large events arrive in many reads).
    scanned: usize,
    eof: bool,
}

/// Opens `path` as an event stream; returns the status and, on 200, the stream (otherwise the
/// body). `recv_buffer` shrinks the socket's receive buffer (to make a slow consumer).
pub async fn sse(
    addr: SocketAddr,
    path: &str,
    recv_buffer: Option<u32>,
) -> (u16, Result<SseStream, Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = recv_buffer {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let split = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let rest = buf[split + 4..].to_vec();
    if status != 200 {
        let mut body = rest;
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut body)).await;
        return (status, Err(body));
    }
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    (
        status,
        Ok(SseStream {
            stream,
            buf: rest,
            scanned: 0,
            eof: false,
        }),
    )
}

impl SseStream {
    /// The next event (comments and keep-alives skipped); `None` once the server closed the
    /// stream. Panics after [`WAIT`] without one.
    pub async fn next(&mut self) -> Option<SseEvent> {
        use tokio::io::AsyncReadExt;
        loop {
            let from = self.scanned.saturating_sub(1);
            if let Some(p) = self.buf[from..].windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..from + p + 2).collect();
                self.scanned = 0;
                let text = String::from_utf8(block).unwrap();
                let mut event = String::from("message");
                let mut data: Vec<&str> = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim_start().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                return Some(SseEvent {
                    event,
                    data: data.join("\n"),
                });
            }
            self.scanned = self.buf.len();
            if self.eof {
                assert!(self.buf.is_empty(), "stream ended mid-event");
                return None;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("no event within the wait")
                .unwrap();
            if n == 0 {
                self.eof = true;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event's data decoded as a base64 Yjs update, checking its name.
    pub async fn next_update(&mut self, name: &str) -> Vec<u8> {
        let ev = self.next().await.expect("stream ended");
        assert_eq!(ev.event, name, "{ev:?}");
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, ev.data).unwrap()
    }

    /// The `closed` event's reason, then the end of the stream.
    pub async fn expect_closed(&mut self) -> String {
        let ev = self
            .next()
            .await
            .expect("stream ended without a closed event");
        assert_eq!(ev.event, "closed", "{ev:?}");
        let json: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        assert!(self.next().await.is_none(), "events after closed");
        json["reason"].as_str().unwrap().to_string()
    }
}
