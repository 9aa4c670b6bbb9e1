//! An in-process WebSocket client for the connection-count scenario: thousands of idle
//! clients in one tokio thread, far cheaper than as many Yjs providers in Node. Each speaks
//! just enough of the sync protocol to count as a real client of every server: it sends
//! SyncStep1 of an empty document and waits for the server's SyncStep2 (y-websocket framing
//! for weaver, the reference server and y-sweet; Hocuspocus framing, with its token message
//! first, for Hocuspocus), then stays open, answers pings and sends one of its own every
//! `ping_every`, until told to stop.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use tokio_util::sync::CancellationToken;

/// Which framing the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// y-websocket: one document per socket, addressed by the URL.
    YWebsocket,
    /// Hocuspocus: every message prefixed with the document name; a token message first.
    Hocuspocus,
}

/// Where one client connects and how it speaks.
#[derive(Debug, Clone)]
pub struct Target {
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The loopback address the client connects from (see [`source_addr`]).
    pub source: Ipv4Addr,
    /// Request path (`/room`, `/d/room/ws/room`, `/`).
    pub path: String,
    /// The document name (Hocuspocus framing only).
    pub doc: String,
    pub framing: Framing,
}

pub type Ws = WebSocketStream<TcpStream>;

const MSG_SYNC: u64 = 0;
const MSG_AUTH: u64 = 2;
const SYNC_STEP1: u64 = 0;
const SYNC_STEP2: u64 = 1;

fn var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn var_bytes(out: &mut Vec<u8>, b: &[u8]) {
    var_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads a lib0 varuint at `*at`, advancing it.
fn read_var_uint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
    }
    None
}

/// SyncStep1 of an empty document (its state vector: zero clients).
fn sync_step1(t: &Target) -> Vec<u8> {
    let mut m = prefix(t);
    var_uint(&mut m, MSG_SYNC);
    var_uint(&mut m, SYNC_STEP1);
    var_bytes(&mut m, &[0]);
    m
}

/// Hocuspocus' token message (`Auth` / `Token`, an empty token: the anchor has no auth).
fn auth_token(t: &Target) -> Vec<u8> {
    let mut m = prefix(t);
    var_uint(&mut m, MSG_AUTH);
    var_uint(&mut m, 0);
    var_bytes(&mut m, b"");
    m
}

fn prefix(t: &Target) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + t.doc.len());
    if t.framing == Framing::Hocuspocus {
        var_bytes(&mut m, t.doc.as_bytes());
    }
    m
}

/// Whether `frame` is the server's SyncStep2 (the client counts as synced then).
fn is_step2(t: &Target, frame: &[u8]) -> bool {
    let mut at = 0;
    if t.framing == Framing::Hocuspocus {
        let Some(len) = read_var_uint(frame, &mut at) else {
            return false;
        };
        at = at.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
    }
    read_var_uint(frame, &mut at) == Some(MSG_SYNC)
        && read_var_uint(frame, &mut at) == Some(SYNC_STEP2)
}

/// How many loopback source addresses the clients are spread over.
const SOURCES: u32 = 8;

/// The loopback address client `i` connects from: 127.0.0.2 … 127.0.0.9 in turn.
///
/// Why not the default: Linux picks the ephemeral port of a `connect()` from the even half of
/// `ip_local_port_range` first and only scans on into the odd half when every even port is
/// taken for that (source, destination) pair. With one source address that happens at half the
/// range (14,116 of 28,232 ports here) and from there every connect walks the whole even half:
/// measured with plain sockets on this machine, 40 ms per 1,000 connects up to 14k, then
/// 700–840 ms per 1,000, for any server. That was the "connect time not linear from 10k to
/// 19.5k" of every server in the first `conns` run. Spread over 8 source addresses, each pair
/// holds ≤ 2,500 connections and the cost stays flat (21–27 ms per 1,000 to 19.5k).
pub fn source_addr(i: usize) -> Ipv4Addr {
    let i = u32::try_from(i).unwrap_or(u32::MAX) % SOURCES;
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i)
}

/// Opens one connection and completes the sync handshake within `timeout`.
pub async fn connect(t: &Target, timeout: Duration) -> Result<Ws> {
    tokio::time::timeout(timeout, connect_inner(t))
        .await
        .map_err(|_| anyhow!("handshake with {}{} timed out", t.addr, t.path))?
}

async fn connect_inner(t: &Target) -> Result<Ws> {
    let server: SocketAddr = t
        .addr
        .parse()
        .with_context(|| format!("server address {}", t.addr))?;
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::from((t.source, 0)))
        .with_context(|| format!("binding to {}", t.source))?;
    let tcp = socket
        .connect(server)
        .await
        .with_context(|| format!("connecting to {} from {}", t.addr, t.source))?;
    tcp.set_nodelay(true)?;
    // Small buffers: the client's own memory is not measured, but 30k sockets' default
    // buffers would crowd the machine the servers are measured on.
    let cfg = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{}{}", t.addr, t.path);
    let (mut ws, _) = client_async_with_config(url, tcp, Some(cfg))
        .await
        .context("WebSocket upgrade")?;
    if t.framing == Framing::Hocuspocus {
        ws.send(Message::binary(auth_token(t))).await?;
    }
    ws.send(Message::binary(sync_step1(t))).await?;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Binary(b) if is_step2(t, &b) => return Ok(ws),
            Message::Close(c) => bail!("closed during the handshake: {c:?}"),
            _ => {}
        }
    }
    bail!("connection ended during the handshake")
}

/// Keeps a synced connection open until `stop`: reads (so pings are answered and the
/// server's frames drained) and pings the server every `ping_every`, first after `offset` so
/// the clients' pings spread over the period. Returns whether the server ended it first.
pub async fn hold(
    mut ws: Ws,
    stop: CancellationToken,
    ping_every: Duration,
    offset: Duration,
) -> bool {
    let start = tokio::time::Instant::now() + offset;
    let mut tick = tokio::time::interval_at(start, ping_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = ws.close(None).await;
                return false;
            }
            _ = tick.tick() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return true;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(framing: Framing) -> Target {
        Target {
            addr: String::new(),
            source: source_addr(0),
            path: "/".into(),
            doc: "doc".into(),
            framing,
        }
    }

    #[test]
    fn frames_match_the_protocols() {
        let yw = target(Framing::YWebsocket);
        assert_eq!(sync_step1(&yw), vec![0, 0, 1, 0]);
        assert!(is_step2(&yw, &[0, 1, 2, 0, 0]));
        assert!(!is_step2(&yw, &[0, 0, 1, 0]), "a step 1 is not a step 2");
        assert!(!is_step2(&yw, &[1, 1]), "awareness");
        let hp = target(Framing::Hocuspocus);
        assert_eq!(sync_step1(&hp), vec![3, b'd', b'o', b'c', 0, 0, 1, 0]);
        assert_eq!(auth_token(&hp), vec![3, b'd', b'o', b'c', 2, 0, 0]);
        assert!(is_step2(&hp, &[3, b'd', b'o', b'c', 0, 1, 2, 0, 0]));
        assert!(!is_step2(&hp, &[3, b'd', b'o', b'c', 2, 2]));
        let mut at = 0;
        let mut v = Vec::new();
        var_uint(&mut v, 300);
        assert_eq!(read_var_uint(&v, &mut at), Some(300));
        assert_eq!(at, 2);
        assert_eq!(read_var_uint(&[0x80], &mut 0), None, "truncated");
    }
}
