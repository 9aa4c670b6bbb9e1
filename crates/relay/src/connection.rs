//! One WebSocket connection: the upgrade handler and the connection task, which reads (decode,
//! validate, forward to the room), writes (the outbound queue, pings, close frames) and keeps
//! the timers (ping, token expiry) in one loop.
//!
//! Every refusal closes only this connection, with a code from `error::close_code`, a log line
//! (room, conn, reason) and a `weaver_rejected_messages_total{reason}` increment. Deliberately
//! not here: document state (room/). It sees the relay only through [`ConnDeps`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};
use weaver_protocol::{Message as Wire, ProtocolError};

use crate::admit::admit_update;
use crate::error::{RelayError, close_code};
use crate::limits::RoomGates;
use crate::metrics as m;
use crate::room::{ConnLink, InboxSender, Registry, RoomCmd, RoomHandle, RoomMsg, TrySendError};
use crate::room_name::validate_room_name;
use crate::send_queue::SendQueue;

/// What connections need from the relay: the rooms to join (and the relay's configuration and
/// task tracker through them), the connection limit and the per-room gates.
#[derive(Debug, Clone)]
pub(crate) struct ConnDeps {
    pub rooms: Arc<Registry>,
    /// One permit per open WebSocket connection (moved into the connection task).
    pub permits: Arc<tokio::sync::Semaphore>,
    /// Connections per room and room awareness budgets (limits.rs).
    pub gates: Arc<RoomGates>,
}

/// How long a close frame may take to send, and how long we keep reading for the peer's close
/// reply afterwards (so the close code is not lost in a TCP reset).
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// After sending a close frame, keeps reading (and dropping) until the peer's close frame, the
/// end of the stream or [`CLOSE_LINGER`], so the peer reads our close before the socket goes.
/// After an oversized message the stream's end does not count: the peer may still be sending
/// the rest of it, and closing at once would reset the connection before our close arrives.
pub(crate) async fn linger_after_close(socket: &mut WebSocket, oversized: bool) {
    let _ = Box::pin(tokio::time::timeout(CLOSE_LINGER, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
                None | Some(Err(_)) if oversized => std::future::pending::<()>().await,
                None | Some(Err(_)) => break,
            }
        }
    }))
    .await;
}

/// Read buffer of each WebSocket, allocated up front and kept for the connection's life; also
/// what one socket read asks for while no frame is in progress. Yjs updates and awareness
/// messages are tens to hundreds of bytes, so 512 bytes still take several per read; once a
/// larger message's header is in, tungstenite reserves its whole length and reads the rest
/// with as few reads as the socket allows. 4 KiB held 8 KB of every two-client room, 1 KiB
/// 2 KB (docs/benchmarks.md).
pub(crate) const READ_BUFFER_BYTES: usize = 512;

/// `GET /{room}` with a WebSocket upgrade.
pub(crate) async fn ws_handler(
    State(deps): State<ConnDeps>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
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
    if !deps.rooms.is_ready() {
        return RelayError::ShuttingDown.into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(permit) = deps.permits.clone().try_acquire_owned() else {
        warn!(room, "connection limit reached; refusing upgrade");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "connection_limit").increment(1);
        return RelayError::Overloaded("connection limit reached").into_response();
    };
    let config = &deps.rooms.deps().config;
    let Some(room_slot) = deps.gates.try_join(&room, &config.limits) else {
        warn!(room, "room connection limit reached; refusing upgrade");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "room_connection_limit")
            .increment(1);
        return RelayError::Overloaded("room connection limit reached").into_response();
    };
    let max = config.max_message_bytes;
    let conn_id = deps.rooms.next_id();
    let handoff = crate::forward::ws::Handoff::new(
        query,
        headers.get(axum::http::header::AUTHORIZATION).cloned(),
    );
    let span = info_span!("conn", room = %room, conn = conn_id);
    // tungstenite reserves 128 KiB of read buffer per socket by default; sync frames are small
    // (see READ_BUFFER_BYTES). Larger messages still arrive: the buffer grows on demand up to
    // the message limit.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            {
                let _entered = span.enter();
                start(
                    deps,
                    &room,
                    conn_id,
                    socket,
                    (access, handoff),
                    (permit, room_slot),
                    &span,
                );
            }
            // The upgrade task ends here; the connection lives in its own, leaner task.
            std::future::ready(())
        })
}

struct Reader {
    conn_id: u64,
    queue: Arc<SendQueue>,
    /// `--max-message-bytes` (the socket enforces it too; `admit_update` checks every path).
    max_update_bytes: usize,
    /// Read-only enforcement and message rates (limits.rs).
    policy: crate::limits::ConnPolicy,
}

/// What the read side makes of one message.
enum Step {
    Continue,
    Forward(RoomCmd),
    /// Stop reading; the connection closes (with the code already set, or 1000).
    Stop,
}

impl Reader {
    fn reject(&self, code: u16, reason: &'static str, detail: &dyn std::fmt::Display) {
        warn!(code, reason, detail = %detail, "closing connection");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
        self.queue.close(code, reason);
    }

    fn message(&self, next: Option<Result<Message, axum::Error>>) -> Step {
        match next {
            None | Some(Ok(Message::Close(_))) => Step::Stop,
            Some(Err(e)) => {
                let text = e.to_string();
                if is_too_long(&text) {
                    self.reject(close_code::TOO_BIG, "message_too_big", &text);
                } else {
                    debug!(error = %text, "read error");
                }
                Step::Stop
            }
            Some(Ok(Message::Binary(b))) => self.frame(b),
            Some(Ok(Message::Text(_))) => {
                self.reject(
                    close_code::UNSUPPORTED_DATA,
                    "text_frame",
                    &"text frames are not supported",
                );
                Step::Stop
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Continue,
        }
    }

    /// Decodes and checks one binary frame.
    fn frame(&self, frame: Bytes) -> Step {
        let msg = match weaver_protocol::decode_message(&frame) {
            Ok(m) => m,
            Err(e) => {
                self.reject(close_code::PROTOCOL_ERROR, malformed_reason(&e), &e);
                return Step::Stop;
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
            crate::limits::Verdict::Drop => return Step::Continue,
            crate::limits::Verdict::Close(code, reason) => {
                self.reject(code, reason, &"rate limit");
                return Step::Stop;
            }
        }
        let cmd = match msg {
            Wire::SyncStep1(sv) => {
                if let Err(e) = weaver_protocol::validate_state_vector(sv) {
                    self.reject(close_code::INVALID_PAYLOAD, "invalid_state_vector", &e);
                    return Step::Stop;
                }
                RoomCmd::SyncStep1 {
                    conn_id,
                    sv: frame.slice_ref(sv),
                }
            }
            Wire::SyncStep2(u) | Wire::Update(u) => {
                let handshake = matches!(msg, Wire::SyncStep2(_));
                let stats = match admit_update(u, self.max_update_bytes) {
                    Ok(stats) => stats,
                    Err(refused) => {
                        let (code, reason) = refused.close();
                        self.reject(code, reason, &refused);
                        return Step::Stop;
                    }
                };
                // Read-only connections: refused here, never reaching the room.
                if self.policy.on_write(&stats, handshake, &self.queue)
                    != crate::limits::Verdict::Forward
                {
                    return Step::Continue;
                }
                RoomCmd::ClientUpdate {
                    conn_id,
                    update: frame.slice_ref(u),
                    ack: false,
                }
            }
            Wire::Awareness(a) => match weaver_protocol::decode_awareness(a) {
                Ok(entries) => RoomCmd::Awareness { conn_id, entries },
                Err(e) => {
                    let (code, reason) = awareness_refusal(&e);
                    self.reject(code, reason, &e);
                    return Step::Stop;
                }
            },
            Wire::QueryAwareness => RoomCmd::QueryAwareness { conn_id },
            // Clients never send auth; y-protocols defines no client→server auth message, so
            // it is ignored rather than treated as hostile.
            Wire::Auth { .. } => {
                debug!("ignoring auth message from client");
                return Step::Continue;
            }
        };
        Step::Forward(cmd)
    }
}

/// However the connection task ends (even by a panic), the room stops queueing to it.
impl Drop for Reader {
    fn drop(&mut self) {
        self.queue.finish();
    }
}

/// A connection's state for its whole life, owned by its one task.
struct Conn {
    socket: WebSocket,
    reader: Reader,
    rooms: Arc<Registry>,
    started: Instant,
    /// When the token expires (4401).
    expires: Option<Instant>,
    /// The upgrade's query and token, passed on when the room is owned by another node.
    handoff: Option<Box<crate::forward::ws::Handoff>>,
    /// Held for the connection's lifetime: one connection permit, one slot in the room.
    _slots: (tokio::sync::OwnedSemaphorePermit, crate::limits::RoomSlot),
}

/// Sets up a connection synchronously (outbound queue, policy) and spawns its one task.
///
/// Why like this: that task's future is most of what an idle connection costs
/// (docs/benchmarks.md, memory per room). It is spawned on its own rather than run inside
/// axum's upgrade task, which would keep the upgrade's configuration and callback beside it;
/// everything is moved into `Conn` first, because an async fn or block keeps its arguments
/// next to the locals they are moved into; and the phases that wait on large futures (join,
/// close frame, leave, linger) box them, so only the serving loop's state stays resident.
fn start(
    deps: ConnDeps,
    room: &str,
    conn_id: u64,
    socket: WebSocket,
    // The token's access, and what is passed on if the room is owned elsewhere.
    (access, handoff): (
        crate::auth::Access,
        Option<Box<crate::forward::ws::Handoff>>,
    ),
    slots: (tokio::sync::OwnedSemaphorePermit, crate::limits::RoomSlot),
    span: &tracing::Span,
) {
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    let ConnDeps { rooms, gates, .. } = deps;
    let config = &rooms.deps().config;
    let queue = Arc::new(SendQueue::new(config.conn_queue_frames));
    let expires = crate::auth::expiry_deadline(&access);
    let policy = crate::limits::ConnPolicy::new(
        gates,
        &config.limits,
        config.auth.read_only_awareness,
        room,
        access,
    );
    let reader = Reader {
        conn_id,
        queue,
        max_update_bytes: config.max_message_bytes,
        policy,
    };
    // Shutdown waits (bounded) for connections too: they hold the store until they end.
    let tracker = rooms.tracker().clone();
    let mut conn = Conn {
        socket,
        reader,
        rooms,
        started: Instant::now(),
        expires,
        handoff,
        _slots: slots,
    };
    tracker.spawn(async move { conn.run().await }.instrument(span.clone()));
}

impl Conn {
    async fn run(&mut self) {
        let queue = self.reader.queue.clone();
        let link = ConnLink {
            id: self.reader.conn_id,
            queue: queue.clone(),
        };
        let joining = Box::pin(self.rooms.join(self.reader.policy.room(), link));
        let joined = match joining.await {
            Ok(room_handle) => {
                info!("connected");
                Some(room_handle)
            }
            Err(RelayError::Remote(owner)) => {
                let limits = crate::forward::ws::ClientLimits {
                    ping_interval: self.rooms.deps().config.ping_interval,
                    shutdown: self.rooms.deps().cancel.clone(),
                    placement: self.rooms.deps().config.placement.clone(),
                };
                let room = self.reader.policy.room().to_owned();
                let handoff = self.handoff.take();
                Box::pin(crate::forward::ws::pipe(
                    &mut self.socket,
                    &owner,
                    &room,
                    handoff.as_deref(),
                    limits,
                ))
                .await;
                queue.finish();
                metrics::gauge!(m::CONNECTIONS).decrement(1.0);
                return;
            }
            Err(e) => {
                warn!(error = %e, "could not join room");
                let code = match e {
                    RelayError::ShuttingDown => close_code::SHUTDOWN,
                    RelayError::Unavailable(_)
                    | RelayError::Overloaded(_)
                    | RelayError::Placement(_) => close_code::SLOW_CONSUMER,
                    _ => close_code::INTERNAL,
                };
                queue.close(code, "room unavailable");
                None
            }
        };
        if let Some(room_handle) = &joined {
            self.serve(room_handle).await;
        }
        queue.close(1000, "");
        queue.finish();
        // The room forgets us (and our awareness states); when its inbox is full that waits
        // until our close frame is out.
        let leave = joined.and_then(|h| {
            let cmd = RoomCmd::Leave {
                conn_id: self.reader.conn_id,
            };
            match h.tx.try_send(Box::new(cmd)) {
                Err(TrySendError::Full(cmd)) => Some((h, cmd)),
                Ok(()) | Err(TrySendError::Closed(_)) => None,
            }
        });
        let (code, reason) = queue.reason();
        let frame = CloseFrame {
            code,
            reason: reason.as_ref().into(),
        };
        let _ = Box::pin(tokio::time::timeout(
            CLOSE_LINGER,
            self.socket.send(Message::Close(Some(frame))),
        ))
        .await;
        if let Some((h, cmd)) = leave {
            let _ = Box::pin(h.tx.send(cmd)).await;
        }
        // Our close frame went out first; now keep the socket briefly so the peer reads it
        // before the socket goes away. Dropping a socket with unread input (the rest of an
        // oversized message, say) makes the kernel send a reset, and the peer would see 1006
        // instead of our code. The stream cannot be drained past an oversized message (the
        // read error ends it: it yields nothing more), so then we just hold the socket open for
        // the linger; otherwise the end of the stream or a read error means the peer is gone.
        // (Until the connection was one task, the end of the stream after an oversized message
        // broke the linger at once too, and only the hand-over between the reader and writer
        // tasks gave the close frame time to arrive.)
        linger_after_close(&mut self.socket, code == close_code::TOO_BIG).await;
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
        info!(code, reason = %reason, "disconnected");
    }

    /// The connection's life in the room, until something asks it to close (the peer, the
    /// room, a refusal, a timer). One loop polls everything, so no direction waits for the
    /// other: writes go on while a read waits for room in the room's inbox (a peer that sends
    /// without reading fills its outbound queue and is closed as a slow consumer instead of
    /// deadlocking), and reads go on while a write waits for the peer to read; a close request
    /// ends a blocked write at once. Shutdown reaches a joined connection through its room,
    /// which closes all of its connections (1012) once it has committed what it received, so
    /// the loop does not watch the relay-wide token itself (polling it on every wakeup took a
    /// relay-wide lock).
    async fn serve(&mut self, room: &RoomHandle) {
        let Conn {
            socket,
            reader,
            rooms,
            started,
            expires,
            ..
        } = self;
        let queue = &*reader.queue;
        let ping_interval = rooms.deps().config.ping_interval;
        let mut next_ping = *started + ping_interval;
        let mut last_seen = *started;
        let timer = tokio::time::sleep_until(earliest(next_ping, *expires));
        tokio::pin!(timer);
        // A command the room's inbox had no room for; reading waits until the room takes it.
        let mut forwarding: Option<Forward> = None;
        let mut write = WriteState::default();
        // Reads go through the queue as their waker, so the socket is read only when it said
        // it may be readable: a read attempt costs a pass through tungstenite (which zeroes its
        // read buffer each time), too much to repeat on every wakeup for outbound frames.
        let read_waker = Waker::from(reader.queue.clone());
        std::future::poll_fn(|cx| {
            // Registering once per wakeup is enough: whoever takes the waker wakes the task.
            queue.register(cx.waker());
            let mut poll_timers = true;
            loop {
                if queue.is_closing() {
                    return Poll::Ready(());
                }
                let mut progress = false;
                if poll_timers {
                    poll_timers = false;
                    if timer.as_mut().poll(cx).is_ready() {
                        let now = Instant::now();
                        if expires.is_some_and(|e| now >= e) {
                            crate::auth::token_expired(queue);
                            continue;
                        }
                        if now >= next_ping {
                            if now.duration_since(last_seen) > 2 * ping_interval {
                                warn!("no pong within two ping intervals");
                                metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "timeout")
                                    .increment(1);
                                queue.close(close_code::TIMEOUT, "ping timeout");
                                continue;
                            }
                            write.ping_due = true;
                            next_ping = now + ping_interval;
                        }
                        timer.as_mut().reset(earliest(next_ping, *expires));
                        // Poll the new deadline so it can wake us.
                        poll_timers = true;
                        progress = true;
                    }
                }
                if let Some(f) = &mut forwarding
                    && let Poll::Ready(delivered) = f.as_mut().poll(cx)
                {
                    forwarding = None;
                    if !delivered {
                        queue.close(close_code::INTERNAL, "room closed");
                        continue;
                    }
                    // Reading paused meanwhile; what arrived since has already signalled.
                    queue.read_again();
                    progress = true;
                }
                if forwarding.is_none()
                    && queue.take_read_woken()
                    && let Poll::Ready(next) =
                        socket.poll_next_unpin(&mut Context::from_waker(&read_waker))
                {
                    // More may be buffered: read until the socket says it has nothing.
                    queue.read_again();
                    progress = true;
                    last_seen = Instant::now();
                    match reader.message(next) {
                        Step::Continue => {}
                        Step::Stop => queue.close(1000, ""),
                        Step::Forward(cmd) => match room.tx.try_send(Box::new(cmd)) {
                            Ok(()) => {}
                            Err(TrySendError::Full(cmd)) => {
                                forwarding = Some(forward_later(room.tx.clone(), cmd));
                            }
                            Err(TrySendError::Closed(_)) => {
                                queue.close(close_code::INTERNAL, "room closed");
                            }
                        },
                    }
                }
                match write.poll(socket, queue, cx) {
                    Ok(fed) => progress |= fed,
                    Err(e) => {
                        debug!(error = %e, "write error");
                        queue.close(close_code::INTERNAL, "send failed");
                    }
                }
                if !progress {
                    return Poll::Pending;
                }
            }
        })
        .await;
    }
}

fn earliest(ping: Instant, expires: Option<Instant>) -> Instant {
    expires.map_or(ping, |e| e.min(ping))
}

/// Hands a command to a full room inbox, waiting for space. Boxed: only needed when the room is
/// behind, so an idle connection does not carry its size.
type Forward = Pin<Box<dyn Future<Output = bool> + Send>>;

fn forward_later(tx: InboxSender<RoomMsg>, cmd: RoomMsg) -> Forward {
    Box::pin(async move { tx.send(cmd).await.is_ok() })
}

/// At most this many frames, or about this many bytes, go out per socket flush.
pub(crate) const WRITE_BATCH_FRAMES: usize = 64;
pub(crate) const WRITE_BATCH_BYTES: usize = 256 * 1024;

#[derive(Default)]
struct WriteState {
    /// A ping goes out before the next queued frame.
    ping_due: bool,
    /// Frames were fed since the last completed flush.
    unflushed: bool,
}

impl WriteState {
    /// Feeds the frames already queued (at most `WRITE_BATCH_FRAMES` / `WRITE_BATCH_BYTES`),
    /// then flushes once: one `sendto` per wakeup instead of one per frame, which was half the
    /// server's CPU in bursts (docs/benchmarks.md). Frames are never skipped; the queue only
    /// drains faster. Returns whether anything was fed (more may be queued); a socket that
    /// cannot take more registers the task's waker.
    fn poll(
        &mut self,
        socket: &mut WebSocket,
        queue: &SendQueue,
        cx: &mut Context<'_>,
    ) -> Result<bool, axum::Error> {
        let (mut frames, mut bytes) = (0, 0);
        while frames < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
            match socket.poll_ready_unpin(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => break,
            }
            let msg = if self.ping_due {
                self.ping_due = false;
                frames += 1;
                Message::Ping(Bytes::new())
            } else if let Some(first) = queue.pop() {
                let (frame, taken, taken_bytes) = merge_queued_updates(first, queue);
                frames += taken;
                bytes += taken_bytes;
                Message::Binary(frame)
            } else {
                break;
            };
            socket.start_send_unpin(msg)?;
            self.unflushed = true;
        }
        if self.unflushed
            && let Poll::Ready(r) = socket.poll_flush_unpin(cx)
        {
            r?;
            self.unflushed = false;
        }
        Ok(frames > 0)
    }
}

fn is_update_frame(frame: &[u8]) -> bool {
    matches!(weaver_protocol::decode_message(frame), Ok(Wire::Update(_)))
}

/// When `first` is an update frame and more update frames queued behind it (the socket was
/// busy), takes them too and returns one merged update frame in their place, with the number
/// of frames and bytes taken. They would leave in this same write anyway, so merging adds no
/// latency; it spares a client that fell behind one decode and one Yjs transaction per frame
/// (a replica applying 3,750 single-insert updates one per frame spends ~3× the time it spends
/// on them in groups of 7, ~10× in groups of 50: docs/benchmarks.md §8). Other frames (step 2,
/// awareness) are never taken, so the order of different kinds is unchanged.
pub(crate) fn merge_queued_updates(first: Bytes, queue: &SendQueue) -> (Bytes, usize, usize) {
    let first_len = first.len();
    if queue.is_empty() || first_len >= crate::room::MERGE_MAX_BYTES || !is_update_frame(&first) {
        return (first, 1, first_len);
    }
    let mut rest = Vec::new();
    let mut bytes = first_len;
    while rest.len() + 1 < WRITE_BATCH_FRAMES {
        let Some(next) =
            queue.pop_if(|f| bytes + f.len() <= crate::room::MERGE_MAX_BYTES && is_update_frame(f))
        else {
            break;
        };
        bytes += next.len();
        rest.push(next);
    }
    if rest.is_empty() {
        return (first, 1, first_len);
    }
    let updates: Vec<&[u8]> = std::iter::once(&first)
        .chain(&rest)
        .filter_map(|f| match weaver_protocol::decode_message(f) {
            Ok(Wire::Update(u)) => Some(u),
            _ => None,
        })
        .collect();
    if let Some(merged) = crate::room::merged_frame(&updates) {
        return (merged, rest.len() + 1, bytes);
    }
    // yrs refused to merge them (merged_frame logged why): send them one by one, in order.
    for f in rest.into_iter().rev() {
        queue.push_front(f);
    }
    (first, 1, first_len)
}
/// The reason (log, metric, close) of a frame that does not decode (here and on Hocuspocus
/// sockets; the close is 1002).
pub(crate) fn malformed_reason(e: &ProtocolError) -> &'static str {
    match e {
        ProtocolError::Empty => "empty_frame",
        ProtocolError::UnknownMessageType(_) => "unknown_message_type",
        ProtocolError::UnknownSyncType(_) => "unknown_sync_type",
        _ => "malformed_frame",
    }
}

/// The close for an awareness message that does not decode (here and on Hocuspocus sockets):
/// past a limit (1008) or not awareness at all (1007).
pub(crate) fn awareness_refusal(e: &ProtocolError) -> (u16, &'static str) {
    match e {
        ProtocolError::TooDeep { .. } | ProtocolError::LimitExceeded(_) => {
            (close_code::POLICY, "awareness_limit")
        }
        _ => (close_code::INVALID_PAYLOAD, "invalid_awareness"),
    }
}

/// Whether a WebSocket read error is an over-long message: tungstenite reports one as a
/// capacity error ("Space limit exceeded: Message too long"); the integration tests pin this
/// mapping (close 1009 `message_too_big`).
pub(crate) fn is_too_long(read_error: &str) -> bool {
    read_error.contains("too long") || read_error.contains("Space limit")
}
