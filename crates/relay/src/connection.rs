//! One WebSocket connection: the upgrade handler, the read loop (decode, validate, forward to
//! the room), and the writer (bounded outbound queue, pings, close frames).
//!
//! Every refusal closes only this connection, with a code from `error::close_code`, a log line
//! (room, conn, reason) and a `weaver_rejected_messages_total{reason}` increment. Deliberately
//! not here: document state (room.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};
use weaver_protocol::{Message as Wire, ProtocolError, UpdateLimits};

use crate::error::{RelayError, close_code};
use crate::metrics as m;
use crate::relay::{RelayHandle, RoomHandle, validate_room_name};
use crate::room::{Closer, ConnLink, RoomCmd};

/// How long a close frame may take to send, and how long we keep reading for the peer's close
/// reply afterwards (so the close code is not lost in a TCP reset).
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Read buffer of each WebSocket, allocated up front and kept for the connection's life; also
/// the most one socket read asks for. Yjs updates and awareness messages are tens to hundreds
/// of bytes, so 1 KiB still takes several per read; a larger message reserves its whole
/// length at once and is read in 1 KiB steps (a few hundred extra reads per MiB, only for
/// large syncs). 4 KiB held 8 KB of every two-client room (docs/benchmarks.md).
const READ_BUFFER_BYTES: usize = 1024;

/// Why updates carrying subdocuments are refused (see the leak note where it is checked).
pub(crate) const SUBDOCS_REFUSED: &str = "subdocuments are not supported";

/// `GET /{room}` with a WebSocket upgrade.
pub(crate) async fn ws_handler(
    State(relay): State<RelayHandle>,
    Path(room): Path<String>,
    access: Option<axum::Extension<crate::auth::Access>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Set by the auth route layer; its absence is a wiring bug, so fail closed.
    let Some(axum::Extension(access)) = access else {
        return RelayError::Internal("access check missing".into()).into_response();
    };
    if let Err(e) = validate_room_name(&room) {
        return e.into_response();
    }
    if !relay.is_ready() {
        return RelayError::ShuttingDown.into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(permit) = relay.shared.conn_permits.clone().try_acquire_owned() else {
        warn!(room, "connection limit reached; refusing upgrade");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "connection_limit").increment(1);
        return RelayError::Overloaded("connection limit reached").into_response();
    };
    let Some(room_slot) = crate::limits::RoomGates::try_join(&relay, &room) else {
        warn!(room, "room connection limit reached; refusing upgrade");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "room_connection_limit")
            .increment(1);
        return RelayError::Overloaded("room connection limit reached").into_response();
    };
    let max = relay.shared.config.max_message_bytes;
    let conn_id = relay.next_id();
    let span = info_span!("conn", room = %room, conn = conn_id);
    // tungstenite reserves 128 KiB of read buffer per socket by default; sync frames are small
    // (see READ_BUFFER_BYTES). Larger messages still arrive: the buffer grows on demand up to
    // the message limit.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let conn = {
                let _entered = span.enter();
                start(relay, room, conn_id, socket, access, (permit, room_slot))
            };
            conn.instrument(span)
        })
}

struct Reader {
    conn_id: u64,
    closer: Arc<Closer>,
    limits: UpdateLimits,
    /// Read-only enforcement and message rates (limits.rs).
    policy: crate::limits::ConnPolicy,
}

impl Reader {
    fn reject(&self, code: u16, reason: &'static str, detail: &dyn std::fmt::Display) {
        warn!(code, reason, detail = %detail, "closing connection");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
        self.closer.close(code, reason);
    }

    /// Handles one binary frame. Returns false when the connection must stop reading.
    async fn frame(&self, room: &RoomHandle, frame: Bytes) -> bool {
        let msg = match weaver_protocol::decode_message(&frame) {
            Ok(m) => m,
            Err(e) => {
                let reason = match e {
                    ProtocolError::Empty => "empty_frame",
                    ProtocolError::UnknownMessageType(_) => "unknown_message_type",
                    ProtocolError::UnknownSyncType(_) => "unknown_sync_type",
                    _ => "malformed_frame",
                };
                self.reject(close_code::PROTOCOL_ERROR, reason, &e);
                return false;
            }
        };
        let conn_id = self.conn_id;
        let verdict = match &msg {
            Wire::SyncStep1(_) => self.policy.on_step1(),
            Wire::Awareness(_) => self.policy.on_awareness(),
            _ => crate::limits::Verdict::Forward,
        };
        match verdict {
            crate::limits::Verdict::Forward => {}
            crate::limits::Verdict::Drop => return true,
            crate::limits::Verdict::Close(code, reason) => {
                self.reject(code, reason, &"rate limit");
                return false;
            }
        }
        let cmd = match msg {
            Wire::SyncStep1(sv) => {
                if let Err(e) = weaver_protocol::validate_state_vector(sv) {
                    self.reject(close_code::INVALID_PAYLOAD, "invalid_state_vector", &e);
                    return false;
                }
                RoomCmd::SyncStep1 {
                    conn_id,
                    sv: frame.slice_ref(sv),
                }
            }
            Wire::SyncStep2(u) | Wire::Update(u) => {
                let handshake = matches!(msg, Wire::SyncStep2(_));
                let stats = match weaver_protocol::validate_update_v1(u, &self.limits) {
                    Err(e) => {
                        let (code, reason) = match e {
                            ProtocolError::TooDeep { .. } | ProtocolError::LimitExceeded(_) => {
                                (close_code::POLICY, "update_limit")
                            }
                            _ => (close_code::INVALID_PAYLOAD, "invalid_update"),
                        };
                        self.reject(code, reason, &e);
                        return false;
                    }
                    // yrs 0.28.1 never frees a document that holds a subdocument, so every
                    // unload of such a room would leak it (crates/protocol/tests/yrs_subdoc_leak.rs).
                    Ok(stats) if stats.subdocs > 0 => {
                        self.reject(close_code::POLICY, "subdocument", &SUBDOCS_REFUSED);
                        return false;
                    }
                    Ok(stats) => stats,
                };
                // Read-only connections: refused here, never reaching the room.
                if self.policy.on_write(&stats, handshake) != crate::limits::Verdict::Forward {
                    return true;
                }
                RoomCmd::ClientUpdate {
                    conn_id,
                    update: frame.slice_ref(u),
                }
            }
            Wire::Awareness(a) => match weaver_protocol::decode_awareness(a) {
                Ok(entries) => RoomCmd::Awareness { conn_id, entries },
                Err(e) => {
                    let (code, reason) = match e {
                        ProtocolError::TooDeep { .. } | ProtocolError::LimitExceeded(_) => {
                            (close_code::POLICY, "awareness_limit")
                        }
                        _ => (close_code::INVALID_PAYLOAD, "invalid_awareness"),
                    };
                    self.reject(code, reason, &e);
                    return false;
                }
            },
            Wire::QueryAwareness => RoomCmd::QueryAwareness { conn_id },
            // Clients never send auth; y-protocols defines no client→server auth message, so
            // it is ignored rather than treated as hostile.
            Wire::Auth { .. } => {
                debug!("ignoring auth message from client");
                return true;
            }
        };
        if room.tx.send(cmd).await.is_err() {
            self.closer.close(close_code::INTERNAL, "room closed");
            return false;
        }
        true
    }
}

/// Sets up a connection synchronously (writer task, outbound queue, policy) and returns the
/// future that lives as long as the connection. Done outside that future on purpose: an async
/// fn keeps its arguments (the whole WebSocket, ~0.5 KB) and every local that lives across an
/// await in its state for the connection's life; this way the state holds only what the read
/// side needs (memory per connection, docs/benchmarks.md).
fn start(
    relay: RelayHandle,
    room: String,
    conn_id: u64,
    socket: WebSocket,
    access: crate::auth::Access,
    // Held for the connection's lifetime: one connection permit, one slot in the room.
    slots: (tokio::sync::OwnedSemaphorePermit, crate::limits::RoomSlot),
) -> impl Future<Output = ()> + Send + 'static {
    // Shutdown waits (bounded) for connections too: they hold the store until they end.
    let tracked = relay.shared.tracker.token();
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    let started = Instant::now();
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Bytes>(relay.shared.config.conn_queue_frames);
    let closer = Arc::new(Closer::default());
    crate::auth::watch_expiry(&access, closer.clone());
    let reader = Reader {
        conn_id,
        closer: closer.clone(),
        limits: UpdateLimits::default(),
        policy: crate::limits::ConnPolicy::new(&relay, &room, access, tx.clone()),
    };
    let last_seen = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(
        write_loop(
            sink,
            rx,
            closer.clone(),
            relay.shared.cancel.clone(),
            WriteTiming {
                started,
                last_seen: last_seen.clone(),
                ping_interval: relay.shared.config.ping_interval,
            },
        )
        .in_current_span(),
    );
    let link = ConnLink {
        id: conn_id,
        tx,
        closer,
    };
    async move {
        let _tracked = tracked;
        let _slots = slots;
        run(
            relay,
            room,
            reader,
            link,
            stream,
            writer,
            (last_seen, started),
        )
        .await;
    }
}

async fn run(
    relay: RelayHandle,
    room: String,
    reader: Reader,
    link: ConnLink,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    writer: tokio::task::JoinHandle<()>,
    (last_seen, started): (Arc<AtomicU64>, Instant),
) {
    match relay.join(&room, link).await {
        Ok(room_handle) => {
            info!("connected");
            read_loop(&reader, &room_handle, &mut stream, &last_seen, started).await;
            let _ = room_handle
                .tx
                .send(RoomCmd::Leave {
                    conn_id: reader.conn_id,
                })
                .await;
        }
        Err(e) => {
            warn!(error = %e, "could not join room");
            let code = match e {
                RelayError::ShuttingDown => close_code::SHUTDOWN,
                RelayError::Unavailable(_) | RelayError::Overloaded(_) => close_code::SLOW_CONSUMER,
                _ => close_code::INTERNAL,
            };
            reader.closer.close(code, "room unavailable");
        }
    }
    let closer = &reader.closer;
    closer.close(1000, "");
    // Our close frame goes out first; then keep the socket briefly so the peer reads it before
    // the socket goes away. Dropping a socket with unread input (the rest of an oversized
    // message, say) makes the kernel send a reset, and the peer would see 1006 instead of our
    // code. The stream cannot be drained past an oversized message (it reports the error again
    // or ends), so then we hold the socket for the whole linger; otherwise an error or the end
    // of the stream means the peer is gone.
    let _ = writer.await;
    let oversized = closer.reason().0 == close_code::TOO_BIG;
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
                None | Some(Err(_)) if oversized => std::future::pending::<()>().await,
                None | Some(Err(_)) => break,
            }
        }
    })
    .await;
    let (code, reason) = closer.reason();
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    info!(code, reason = %reason, "disconnected");
}

async fn read_loop(
    reader: &Reader,
    room: &RoomHandle,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    last_seen: &AtomicU64,
    started: Instant,
) {
    loop {
        let next = tokio::select! {
            biased;
            _ = reader.closer.token.cancelled() => return,
            m = stream.next() => m,
        };
        last_seen.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        match next {
            None => return,
            Some(Err(e)) => {
                let text = e.to_string();
                // tungstenite reports an over-long message as a capacity error ("Space limit
                // exceeded: Message too long"); the integration tests pin this mapping.
                if text.contains("too long") || text.contains("Space limit") {
                    reader.reject(close_code::TOO_BIG, "message_too_big", &text);
                } else {
                    debug!(error = %text, "read error");
                }
                return;
            }
            Some(Ok(Message::Binary(b))) => {
                if !reader.frame(room, b).await {
                    return;
                }
            }
            Some(Ok(Message::Text(_))) => {
                reader.reject(
                    close_code::UNSUPPORTED_DATA,
                    "text_frame",
                    &"text frames are not supported",
                );
                return;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_))) => return,
        }
    }
}

struct WriteTiming {
    started: Instant,
    last_seen: Arc<AtomicU64>,
    ping_interval: Duration,
}

/// At most this many frames, or about this many bytes, go out per socket flush.
const WRITE_BATCH_FRAMES: usize = 64;
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Writes `first` and the frames already queued behind it, then flushes once: one `sendto` per
/// wakeup instead of one per frame, which was half the server's CPU in bursts
/// (docs/benchmarks.md). Frames are never skipped; the queue only drains faster.
async fn send_queued(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    rx: &mut mpsc::Receiver<Bytes>,
    first: Bytes,
) -> Result<(), axum::Error> {
    let mut bytes = first.len();
    let mut batch = vec![first];
    while batch.len() < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
        let Ok(frame) = rx.try_recv() else { break };
        bytes += frame.len();
        batch.push(frame);
    }
    for frame in coalesce_updates(batch) {
        sink.feed(Message::Binary(frame)).await?;
    }
    sink.flush().await
}

/// Merges each run of consecutive update frames that queued up behind a busy socket into one
/// update frame. Those frames go out in this same write anyway, so merging adds no latency; it
/// spares a client that fell behind one decode and one Yjs transaction per frame (a replica
/// applying 3,750 single-insert updates one per frame spends ~3x the time it spends on them in
/// groups of 7, and ~10x in groups of 50: docs/benchmarks.md §8). Sync step 2 and awareness
/// frames are kept as they are and in place, so the order of different kinds is unchanged.
fn coalesce_updates(batch: Vec<Bytes>) -> Vec<Bytes> {
    if batch.len() < 2 {
        return batch;
    }
    let mut out = Vec::with_capacity(batch.len());
    let mut run: Vec<Bytes> = Vec::new();
    let mut run_bytes = 0;
    for frame in batch {
        let is_update = matches!(weaver_protocol::decode_message(&frame), Ok(Wire::Update(_)));
        if !is_update || run_bytes + frame.len() > crate::room::MERGE_MAX_BYTES {
            flush_run(&mut run, &mut out);
            run_bytes = 0;
        }
        if is_update {
            run_bytes += frame.len();
            run.push(frame);
        } else {
            out.push(frame);
        }
    }
    flush_run(&mut run, &mut out);
    out
}

fn flush_run(run: &mut Vec<Bytes>, out: &mut Vec<Bytes>) {
    if run.len() > 1 {
        let updates: Vec<&[u8]> = run
            .iter()
            .filter_map(|f| match weaver_protocol::decode_message(f) {
                Ok(Wire::Update(u)) => Some(u),
                _ => None,
            })
            .collect();
        if let Some(merged) = crate::room::merged_frame(&updates) {
            run.clear();
            out.push(merged);
            return;
        }
    }
    out.append(run);
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Bytes>,
    closer: Arc<Closer>,
    shutdown: tokio_util::sync::CancellationToken,
    timing: WriteTiming,
) {
    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = closer.token.cancelled() => break,
            _ = shutdown.cancelled() => {
                closer.close(close_code::SHUTDOWN, "server shutting down");
            }
            frame = rx.recv() => {
                let Some(frame) = frame else {
                    closer.close(close_code::INTERNAL, "room closed");
                    continue;
                };
                // A peer that stops reading blocks this send; the room then closes us as a slow
                // consumer, which must interrupt the blocked send.
                let sent = tokio::select! {
                    biased;
                    _ = closer.token.cancelled() => break,
                    r = send_queued(&mut sink, &mut rx, frame) => r,
                };
                if sent.is_err() {
                    closer.close(close_code::INTERNAL, "send failed");
                }
            }
            _ = ping.tick() => {
                let seen_ms = timing.last_seen.load(Ordering::Relaxed);
                let now_ms = timing.started.elapsed().as_millis() as u64;
                if now_ms.saturating_sub(seen_ms) > 2 * timing.ping_interval.as_millis() as u64 {
                    warn!("no pong within two ping intervals");
                    metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "timeout").increment(1);
                    closer.close(close_code::TIMEOUT, "ping timeout");
                    continue;
                }
                let sent = tokio::select! {
                    biased;
                    _ = closer.token.cancelled() => break,
                    r = sink.send(Message::Ping(Bytes::new())) => r,
                };
                if sent.is_err() {
                    closer.close(close_code::INTERNAL, "send failed");
                }
            }
        }
    }
    let (code, reason) = closer.reason();
    let frame = CloseFrame {
        code,
        reason: reason.as_ref().into(),
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, sink.send(Message::Close(Some(frame)))).await;
}
