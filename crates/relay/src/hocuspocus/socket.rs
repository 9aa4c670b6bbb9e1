//! The Hocuspocus connection task: one socket, many documents. Reads demultiplex frames by
//! address: a document's first frame must be its token (frames before it wait, bounded), which
//! is answered `authenticated` (scope `readonly` or `read-write`) or `permissionDenied`; an
//! authenticated document joins its room like a y-websocket connection and its frames go through
//! the same checks (`admit_update`, state vector validation, `ConnPolicy`) to the room. Writes
//! drain the socket's own queue (auth answers, syncStatus of refused writes), then every
//! document's queue round-robin, each frame prefixed with its address. Timers: WebSocket ping
//! plus the provider's application ping (its 30 s message timeout), the pong timeout, token
//! expiry per document, the deadline to authenticate a first document.
//!
//! A document whose room another node owns (cluster mode) is forwarded instead of joined: its
//! token frame and every later frame go verbatim to the owner (forward/hocuspocus.rs), and
//! the owner's frames come back through the document's queue like a room's.
//!
//! A document closed by its room (slow consumer, deletion, shutdown, a refused update, storage
//! failure) closes the whole socket with the same code: the provider reconnects every document
//! of the socket and resyncs losslessly, which a per-document close message would not make it do.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};
use weaver_protocol::{
    HocusFrame, HocusMessage, Message as Wire, ProtocolError, decode_hocus_frame,
    encode_hocus_authenticated, encode_hocus_document, encode_hocus_permission_denied,
    encode_hocus_ping, encode_hocus_sync_status, split_address,
};

use super::document::{Document, Phase};
use super::{DEFAULT_MAX_DOCUMENTS_PER_SOCKET, HocusDeps};
use crate::admit::admit_update;
use crate::auth::Need;
use crate::connection::{CLOSE_LINGER, WRITE_BATCH_BYTES, WRITE_BATCH_FRAMES};
use crate::error::{RelayError, close_code};
use crate::limits::{Verdict, WriteVerdict};
use crate::metrics as m;
use crate::room::{ConnLink, RoomCmd, RoomHandle, RoomMsg};
use crate::room_name::validate_room_name;
use crate::send_queue::SendQueue;

/// Frames that may wait for their document's token or room at once, over all documents of a
/// socket (bytes: `--max-message-bytes`). Beyond: close 1008. The provider sends its token
/// first, so only a few frames ever wait.
const MAX_WAITING_FRAMES: usize = 256;

/// A room join in flight: the document's address and subscription id, and how it went.
type Join = Pin<Box<dyn Future<Output = (Arc<str>, u64, Result<RoomHandle, RelayError>)> + Send>>;

/// Hands a command to a full room inbox, waiting for space.
type Forward = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Sets the socket up and spawns its task (tracked: shutdown waits for it).
pub(super) fn start(
    deps: HocusDeps,
    socket: WebSocket,
    permit: OwnedSemaphorePermit,
    span: tracing::Span,
) {
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_TOTAL).increment(1);
    let rooms = deps.conns.rooms.clone();
    let config = &rooms.deps().config;
    let started = Instant::now();
    let mut conn = Socket {
        own: Arc::new(SendQueue::new(config.conn_queue_frames)),
        timer: Box::pin(tokio::time::sleep_until(started + config.ping_interval)),
        shutdown: Box::pin(rooms.deps().cancel.clone().cancelled_owned()),
        socket,
        deps,
        docs: HashMap::new(),
        unauthenticated: HashMap::new(),
        waiting: (0, 0),
        joins: FuturesUnordered::new(),
        outbox: VecDeque::new(),
        forwarding: None,
        authenticated_once: false,
        started,
        last_seen: started,
        next_ping: started + config.ping_interval,
        ping_due: false,
        unflushed: false,
        next_doc: 0,
        _permit: permit,
    };
    rooms
        .tracker()
        .spawn(async move { conn.run().await }.instrument(span));
}

struct Socket {
    socket: WebSocket,
    deps: HocusDeps,
    /// The socket's own frames (already addressed), its close request, and the read waker.
    own: Arc<SendQueue>,
    /// Authenticated documents by raw address.
    docs: HashMap<Arc<str>, Document>,
    /// Frames of documents whose token has not arrived yet, by raw address.
    unauthenticated: HashMap<Arc<str>, Vec<Bytes>>,
    /// Frames and bytes waiting (unauthenticated or joining), for the budget.
    waiting: (usize, usize),
    joins: FuturesUnordered<Join>,
    /// Commands for rooms, delivered in order; reading waits while any are undelivered.
    outbox: VecDeque<(tokio::sync::mpsc::Sender<RoomMsg>, RoomMsg)>,
    forwarding: Option<Forward>,
    /// Until a first document authenticates, the socket must do so within two ping intervals.
    authenticated_once: bool,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Watched only while no document is open (open ones are closed by their rooms).
    shutdown: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    started: Instant,
    last_seen: Instant,
    next_ping: Instant,
    ping_due: bool,
    unflushed: bool,
    /// Where the next write round starts among the documents (round-robin).
    next_doc: usize,
    _permit: OwnedSemaphorePermit,
}

impl Socket {
    async fn run(&mut self) {
        info!("Hocuspocus socket connected");
        let read_waker = Waker::from(self.own.clone());
        std::future::poll_fn(|cx| self.poll_serve(cx, &read_waker)).await;
        let (code, reason) = self.own.reason();
        // Rooms forget the documents; a full inbox is waited for after the close frame.
        let mut later = Vec::new();
        for (_, doc) in self.docs.drain() {
            metrics::gauge!(m::HOCUSPOCUS_DOCUMENTS).decrement(1.0);
            doc.queue.finish();
            if let Some(room) = doc.room() {
                let cmd = Box::new(RoomCmd::Leave {
                    conn_id: doc.conn_id,
                });
                if let Err(TrySendError::Full(cmd)) = room.tx.try_send(cmd) {
                    later.push((room.tx.clone(), cmd));
                }
            }
        }
        self.own.finish();
        self.joins = FuturesUnordered::new();
        let frame = CloseFrame {
            code,
            reason: reason.as_ref().into(),
        };
        let _ =
            tokio::time::timeout(CLOSE_LINGER, self.socket.send(Message::Close(Some(frame)))).await;
        for (tx, cmd) in later {
            let _ = tx.send(cmd).await;
        }
        // As connection.rs: keep the socket briefly so the peer reads the close frame.
        crate::connection::linger_after_close(&mut self.socket, code == close_code::TOO_BIG).await;
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
        info!(code, reason = %reason, "Hocuspocus socket disconnected");
    }

    fn reject(&self, code: u16, reason: &'static str, detail: &dyn std::fmt::Display) {
        warn!(code, reason, detail = %detail, "closing Hocuspocus socket");
        metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
        self.own.close(code, reason);
    }

    /// Queues one of the socket's own frames; a full queue is a slow consumer.
    fn send_own(&self, frame: Vec<u8>) {
        if self.own.push(Bytes::from(frame)).is_err() {
            warn!("outbound queue full; closing slow consumer");
            metrics::counter!(m::SLOW_CONSUMER_CLOSES_TOTAL).increment(1);
            self.own.close(close_code::SLOW_CONSUMER, "slow consumer");
        }
    }

    fn poll_serve(&mut self, cx: &mut Context<'_>, read_waker: &Waker) -> Poll<()> {
        loop {
            self.own.register(cx.waker());
            for doc in self.docs.values() {
                doc.queue.register(cx.waker());
            }
            if self.own.is_closing() {
                return Poll::Ready(());
            }
            // A room closed one of our documents: the socket goes with the same code.
            if let Some(doc) = self.docs.values().find(|d| d.queue.is_closing()) {
                let (code, reason) = doc.queue.reason();
                self.own.close(code, reason);
                return Poll::Ready(());
            }
            let mut progress = self.poll_timers(cx);
            if !self.docs.values().any(|d| d.room().is_some())
                && self.shutdown.as_mut().poll(cx).is_ready()
            {
                self.own.close(close_code::SHUTDOWN, "server shutting down");
                continue;
            }
            while let Poll::Ready(Some((address, conn_id, joined))) = self.joins.poll_next_unpin(cx)
            {
                self.joined(address, conn_id, joined);
                progress = true;
            }
            progress |= self.poll_outbox(cx);
            if self.outbox.is_empty()
                && self.forwarding.is_none()
                && self.own.take_read_woken()
                && let Poll::Ready(next) = self
                    .socket
                    .poll_next_unpin(&mut Context::from_waker(read_waker))
            {
                self.own.read_again();
                self.last_seen = Instant::now();
                progress = true;
                self.on_message(next);
            }
            match self.poll_write(cx) {
                Ok(fed) => progress |= fed,
                Err(e) => {
                    debug!(error = %e, "write error");
                    self.own.close(close_code::INTERNAL, "send failed");
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Ping, pong timeout, token expiry, first-authentication deadline. True if one fired.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let now = Instant::now();
        let interval = self.deps.conns.rooms.deps().config.ping_interval;
        if self
            .docs
            .values()
            .any(|d| d.expires.is_some_and(|e| now >= e))
        {
            crate::auth::token_expired(&self.own);
            return true;
        }
        if !self.authenticated_once && now >= self.started + 2 * interval {
            self.reject(
                close_code::TIMEOUT,
                "timeout",
                &"no document authenticated in time",
            );
            return true;
        }
        if now >= self.next_ping {
            if now.duration_since(self.last_seen) > 2 * interval {
                self.reject(
                    close_code::TIMEOUT,
                    "timeout",
                    &"no pong within two intervals",
                );
                return true;
            }
            self.ping_due = true;
            self.next_ping = now + interval;
        }
        let mut next = self.next_ping;
        if !self.authenticated_once {
            next = next.min(self.started + 2 * interval);
        }
        for e in self.docs.values().filter_map(|d| d.expires) {
            next = next.min(e);
        }
        self.timer.as_mut().reset(next);
        // Poll the new deadline so it can wake us.
        let _ = self.timer.as_mut().poll(cx);
        true
    }

    /// Delivers queued room commands in order. True if any was delivered.
    fn poll_outbox(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if let Some(f) = &mut self.forwarding {
            match f.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(delivered) => {
                    self.forwarding = None;
                    progress = true;
                    if !delivered {
                        self.own.close(close_code::INTERNAL, "room closed");
                        return true;
                    }
                }
            }
        }
        while let Some((tx, cmd)) = self.outbox.pop_front() {
            progress = true;
            match tx.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    let mut f: Forward = Box::pin(async move { tx.send(cmd).await.is_ok() });
                    match f.as_mut().poll(cx) {
                        Poll::Ready(true) => {}
                        Poll::Ready(false) => self.own.close(close_code::INTERNAL, "room closed"),
                        Poll::Pending => {
                            self.forwarding = Some(f);
                            break;
                        }
                    }
                }
                Err(TrySendError::Closed(cmd)) => {
                    // A Leave for a room that is gone needs no delivery.
                    if !matches!(*cmd, RoomCmd::Leave { .. }) {
                        self.own.close(close_code::INTERNAL, "room closed");
                    }
                }
            }
        }
        progress
    }

    fn on_message(&mut self, next: Option<Result<Message, axum::Error>>) {
        match next {
            None | Some(Ok(Message::Close(_))) => self.own.close(1000, ""),
            Some(Err(e)) => {
                let text = e.to_string();
                if text.contains("too long") || text.contains("Space limit") {
                    self.reject(close_code::TOO_BIG, "message_too_big", &text);
                } else {
                    debug!(error = %text, "read error");
                    self.own.close(1000, "");
                }
            }
            Some(Ok(Message::Text(_))) => self.reject(
                close_code::UNSUPPORTED_DATA,
                "text_frame",
                &"text frames are not supported",
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Binary(frame))) => self.on_frame(frame),
        }
    }

    /// One binary frame: decoded, then routed by address.
    fn on_frame(&mut self, frame: Bytes) {
        let decoded = match decode_hocus_frame(&frame) {
            Ok(f) => f,
            Err(e) => {
                let reason = match e {
                    ProtocolError::Empty => "empty_frame",
                    ProtocolError::UnknownMessageType(_) => "unknown_message_type",
                    ProtocolError::UnknownSyncType(_) => "unknown_sync_type",
                    _ => "malformed_frame",
                };
                self.reject(close_code::PROTOCOL_ERROR, reason, &e);
                return;
            }
        };
        let HocusFrame::Document { address, message } = decoded else {
            // Pong (the answer to our ping: `last_seen` is updated) or a client's ping.
            return;
        };
        if let Some(Document {
            phase: Phase::Forwarded { upstream },
            ..
        }) = self.docs.get(address)
        {
            // Verbatim to the owner, which checks and answers everything itself.
            if let Err(full) = upstream.try_send(frame.clone()) {
                let (room, _) = split_address(address);
                warn!(room, reason = "owner_queue_full", detail = %full, "the room's owner does not read fast enough");
                self.reject(close_code::SLOW_CONSUMER, "owner_queue_full", &full);
            } else if matches!(message, HocusMessage::Close(_)) {
                self.detach(address);
            }
            return;
        }
        match self.docs.get(address).map(|d| d.room().is_some()) {
            Some(true) => self.on_document(address, message, &frame),
            Some(false) => match message {
                HocusMessage::Close(_) => self.detach(address),
                HocusMessage::Token { .. } => debug!("token repeated while joining; ignored"),
                _ => {
                    let key = self.docs.get_key_value(address).map(|(k, _)| k.clone());
                    if let Some(key) = key
                        && self.budget(frame.len())
                        && let Some(Document {
                            phase: Phase::Joining { waiting, .. },
                            ..
                        }) = self.docs.get_mut(&key)
                    {
                        waiting.push(frame.clone());
                    }
                }
            },
            None => match message {
                HocusMessage::Token { token, .. } => self.authenticate(address, token, &frame),
                HocusMessage::Close(_) => {
                    if let Some(w) = self.unauthenticated.remove(address) {
                        self.release(&w);
                    }
                }
                _ => {
                    if !self.unauthenticated.contains_key(address)
                        && !self.room_for_another(address)
                    {
                        return;
                    }
                    if self.budget(frame.len()) {
                        self.unauthenticated
                            .entry(Arc::from(address))
                            .or_default()
                            .push(frame.clone());
                    }
                }
            },
        }
    }

    /// Whether the socket may address one more document; closes it (1008) if not.
    fn room_for_another(&self, address: &str) -> bool {
        let max = DEFAULT_MAX_DOCUMENTS_PER_SOCKET;
        if self.docs.len() + self.unauthenticated.len() < max {
            return true;
        }
        self.reject(
            close_code::POLICY,
            "too_many_documents",
            &format!("more than {max} documents on one socket (at {address:?})"),
        );
        false
    }

    /// Counts a frame that has to wait; closes the socket (1008) past the budget.
    fn budget(&mut self, len: usize) -> bool {
        let max_bytes = self.deps.conns.rooms.deps().config.max_message_bytes;
        if self.waiting.0 + 1 > MAX_WAITING_FRAMES || self.waiting.1 + len > max_bytes {
            self.reject(
                close_code::POLICY,
                "waiting_limit",
                &"too many frames before their document's token or room",
            );
            return false;
        }
        self.waiting.0 += 1;
        self.waiting.1 += len;
        true
    }

    fn release(&mut self, frames: &[Bytes]) {
        self.waiting.0 = self.waiting.0.saturating_sub(frames.len());
        self.waiting.1 = self
            .waiting
            .1
            .saturating_sub(frames.iter().map(Bytes::len).sum());
    }

    /// A document's token: checked for its room (401/403 reasons of the HTTP routes become
    /// `permissionDenied`, on which the provider fires `onAuthenticationFailed`), then the
    /// document joins its room.
    fn authenticate(&mut self, address: &str, token: &str, token_frame: &Bytes) {
        let waiting_frames = self.unauthenticated.remove(address);
        let known = waiting_frames.is_some();
        let waiting_frames = waiting_frames.unwrap_or_default();
        if !known && !self.room_for_another(address) {
            return;
        }
        let (name, _session) = split_address(address);
        let auth = &self.deps.auth;
        let checked = match validate_room_name(name) {
            Err(e) => Err((String::from("invalid_room"), e.to_string())),
            Ok(()) => auth
                .check_token(Some(token), Some(name), Need::Read, crate::auth::now_unix())
                .map_err(|r| (r.reason.to_owned(), r.message)),
        };
        let access = match checked {
            Ok(access) => access,
            Err((reason, message)) => {
                self.release(&waiting_frames);
                metrics::counter!(crate::auth::AUTH_REJECTIONS_TOTAL, "reason" => reason.clone())
                    .increment(1);
                warn!(
                    room = name,
                    reason, "Hocuspocus document refused: permission denied"
                );
                self.send_own(encode_hocus_permission_denied(address, &message));
                return;
            }
        };
        let rooms = self.deps.conns.rooms.clone();
        let config = &rooms.deps().config;
        let Some(slot) = self.deps.conns.gates.try_join(name, &config.limits) else {
            self.release(&waiting_frames);
            self.reject(
                close_code::SLOW_CONSUMER,
                "room_connection_limit",
                &"room connection limit reached",
            );
            return;
        };
        self.send_own(encode_hocus_authenticated(address, !access.can_write()));
        self.authenticated_once = true;
        let address: Arc<str> = Arc::from(address);
        let conn_id = rooms.next_id();
        let queue = Arc::new(SendQueue::new(config.conn_queue_frames));
        let expires = crate::auth::expiry_deadline(&access);
        let policy = crate::limits::ConnPolicy::new(
            self.deps.conns.gates.clone(),
            &config.limits,
            config.auth.read_only_awareness,
            name,
            access,
        );
        let link = ConnLink {
            id: conn_id,
            queue: queue.clone(),
        };
        let room_name = name.to_owned();
        let key = address.clone();
        self.joins.push(Box::pin(async move {
            let joined = rooms.join(&room_name, link).await;
            (key, conn_id, joined)
        }));
        metrics::gauge!(m::HOCUSPOCUS_DOCUMENTS).increment(1.0);
        info!(
            room = name,
            conn = conn_id,
            "Hocuspocus document authenticated"
        );
        // A token that ends before the next timer would fire moves the timer forward.
        if let Some(e) = expires
            && e < self.timer.deadline()
        {
            self.timer.as_mut().reset(e);
        }
        self.docs.insert(
            address.clone(),
            Document {
                address,
                conn_id,
                queue,
                policy,
                expires,
                phase: Phase::Joining {
                    waiting: waiting_frames,
                    token_frame: token_frame.clone(),
                },
                _slot: slot,
            },
        );
    }

    /// A join finished: the document opens and the frames that waited go to the room in order.
    fn joined(&mut self, address: Arc<str>, conn_id: u64, joined: Result<RoomHandle, RelayError>) {
        let ours = self
            .docs
            .get(&address)
            .is_some_and(|d| d.conn_id == conn_id);
        if !ours {
            // Detached while joining: the room forgets the subscription.
            if let Ok(room) = joined {
                self.outbox
                    .push_back((room.tx, Box::new(RoomCmd::Leave { conn_id })));
            }
            return;
        }
        let room = match joined {
            Ok(room) => room,
            Err(RelayError::Remote(owner)) => {
                self.forward(address, owner);
                return;
            }
            Err(e) => {
                let (code, reason) = match &e {
                    RelayError::ShuttingDown => (close_code::SHUTDOWN, "server shutting down"),
                    RelayError::Unavailable(_)
                    | RelayError::Overloaded(_)
                    | RelayError::Placement(_) => (close_code::SLOW_CONSUMER, "room unavailable"),
                    _ => (close_code::INTERNAL, "room unavailable"),
                };
                warn!(room = %address, error = %e, "Hocuspocus document could not join its room");
                self.own.close(code, reason);
                return;
            }
        };
        let Some(doc) = self.docs.get_mut(&address) else {
            return;
        };
        let waiting = match std::mem::replace(&mut doc.phase, Phase::Open { room }) {
            Phase::Joining { waiting, .. } => waiting,
            Phase::Open { .. } | Phase::Forwarded { .. } => Vec::new(),
        };
        self.release(&waiting);
        for frame in waiting {
            self.on_frame(frame);
        }
    }

    /// The document's room is owned by another node: its frames go there from now on (its
    /// token first, then those that waited), through a socket of its own to the owner.
    fn forward(&mut self, address: Arc<str>, owner: crate::placement::RemoteOwner) {
        let rooms = self.deps.conns.rooms.clone();
        let Some(doc) = self.docs.get_mut(&address) else {
            return;
        };
        let Phase::Joining {
            waiting,
            token_frame,
        } = std::mem::replace(
            &mut doc.phase,
            Phase::Joining {
                waiting: Vec::new(),
                token_frame: Bytes::new(),
            },
        )
        else {
            return;
        };
        let deps = crate::forward::hocuspocus::ForwardDeps {
            placement: rooms.deps().config.placement.clone(),
            shutdown: rooms.deps().cancel.clone(),
            tracker: rooms.tracker().clone(),
            upstream_bytes: crate::forward::hocuspocus::upstream_budget(
                rooms.deps().config.max_message_bytes,
            ),
        };
        let (name, _) = split_address(&address);
        info!(room = name, owner = %owner.node_id, "Hocuspocus document forwarded to the room's owner");
        let upstream = crate::forward::hocuspocus::start(
            deps,
            owner,
            name.to_owned(),
            token_frame,
            doc.queue.clone(),
        );
        doc.phase = Phase::Forwarded { upstream };
        self.release(&waiting);
        for frame in waiting {
            self.on_frame(frame);
        }
    }

    /// The provider detached a document (or it is being dropped): the room forgets it.
    fn detach(&mut self, address: &str) {
        let Some(doc) = self.docs.remove(address) else {
            return;
        };
        metrics::gauge!(m::HOCUSPOCUS_DOCUMENTS).decrement(1.0);
        debug!(room = %doc.address, "Hocuspocus document detached");
        match &doc.phase {
            Phase::Open { room } => self.outbox.push_back((
                room.tx.clone(),
                Box::new(RoomCmd::Leave {
                    conn_id: doc.conn_id,
                }),
            )),
            Phase::Joining { waiting, .. } => {
                let waiting = waiting.clone();
                self.release(&waiting);
            }
            // Dropping the document closes its channel: the forwarding task ends.
            Phase::Forwarded { .. } => {}
        }
    }

    /// A frame of an open document: the same checks as a y-websocket connection's frame.
    fn on_document(&mut self, address: &str, message: HocusMessage<'_>, frame: &Bytes) {
        let Some(doc) = self.docs.get(address) else {
            return;
        };
        let Some(room) = doc.room() else {
            return;
        };
        let conn_id = doc.conn_id;
        let cmd = match message {
            HocusMessage::Yjs { message, .. } => {
                let verdict = match &message {
                    Wire::SyncStep1(_) => doc.policy.on_step1(),
                    Wire::Awareness(_) => doc.policy.on_awareness(),
                    _ => Verdict::Forward,
                };
                match verdict {
                    Verdict::Forward => {}
                    Verdict::Drop => return,
                    Verdict::Close(code, reason) => {
                        self.reject(code, reason, &"rate limit");
                        return;
                    }
                }
                match message {
                    Wire::SyncStep1(sv) => {
                        if let Err(e) = weaver_protocol::validate_state_vector(sv) {
                            self.reject(close_code::INVALID_PAYLOAD, "invalid_state_vector", &e);
                            return;
                        }
                        RoomCmd::SyncStep1 {
                            conn_id,
                            sv: frame.slice_ref(sv),
                        }
                    }
                    Wire::SyncStep2(u) | Wire::Update(u) => {
                        let handshake = matches!(message, Wire::SyncStep2(_));
                        let max = self.deps.conns.rooms.deps().config.max_message_bytes;
                        let stats = match admit_update(u, max) {
                            Ok(stats) => stats,
                            Err(refused) => {
                                let (code, reason) = refused.close();
                                self.reject(code, reason, &refused);
                                return;
                            }
                        };
                        match doc.policy.write_verdict(&stats, handshake) {
                            WriteVerdict::Forward => RoomCmd::ClientUpdate {
                                conn_id,
                                update: frame.slice_ref(u),
                                ack: true,
                            },
                            // Nothing to write: acknowledged as the reference server does.
                            WriteVerdict::NotAWrite => {
                                self.send_own(encode_hocus_sync_status(address, true));
                                return;
                            }
                            // A read-only document's write: never reaches the room.
                            WriteVerdict::Refused => {
                                debug!(room = %doc.address, "write on a read-only document refused");
                                self.send_own(encode_hocus_sync_status(address, false));
                                return;
                            }
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
                            return;
                        }
                    },
                    Wire::QueryAwareness => RoomCmd::QueryAwareness { conn_id },
                    // Type 2 is Hocuspocus's auth, decoded as such: never a y-websocket auth.
                    Wire::Auth { .. } => return,
                }
            }
            HocusMessage::Close(_) => {
                self.detach(address);
                return;
            }
            // A token again (the provider's token refresh), stateless payloads (Weaver runs no
            // server hooks, like a Hocuspocus server without extensions), and messages only a
            // server sends: nothing to do.
            HocusMessage::Token { .. }
            | HocusMessage::Stateless(_)
            | HocusMessage::PermissionDenied(_)
            | HocusMessage::Authenticated(_)
            | HocusMessage::SyncStatus(_) => {
                debug!(room = %doc.address, "Hocuspocus message ignored");
                return;
            }
        };
        self.outbox.push_back((room.tx.clone(), Box::new(cmd)));
    }

    /// Writes what is queued: pings, the socket's own frames, then each document's frames
    /// (round-robin, merged like connection.rs's, each with its address), flushing once.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, axum::Error> {
        let (mut frames, mut bytes) = (0, 0);
        while frames < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
            match self.socket.poll_ready_unpin(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => break,
            }
            let msg = if self.ping_due {
                self.ping_due = false;
                // Two pings: the WebSocket one for our pong timeout, the provider's own one
                // (a binary frame) because a browser never shows WebSocket pings to it and it
                // drops a socket after 30 s without a message.
                self.own.push_front(Bytes::from(encode_hocus_ping()));
                Message::Ping(Bytes::new())
            } else if let Some(frame) = self.own.pop() {
                Message::Binary(frame)
            } else if let Some(frame) = self.next_document_frame() {
                Message::Binary(frame)
            } else {
                break;
            };
            if let Message::Binary(b) = &msg {
                bytes += b.len();
            }
            frames += 1;
            self.socket.start_send_unpin(msg)?;
            self.unflushed = true;
        }
        if self.unflushed
            && let Poll::Ready(r) = self.socket.poll_flush_unpin(cx)
        {
            r?;
            self.unflushed = false;
        }
        Ok(frames > 0)
    }

    /// The next frame of some document, addressed; documents take turns.
    fn next_document_frame(&mut self) -> Option<Bytes> {
        let n = self.docs.len();
        if n == 0 {
            return None;
        }
        let start = self.next_doc % n;
        for (i, doc) in self.docs.values().enumerate().cycle().skip(start).take(n) {
            if let Some(first) = doc.queue.pop() {
                self.next_doc = i + 1;
                let (frame, _, _) = crate::connection::merge_queued_updates(first, &doc.queue);
                return Some(Bytes::from(encode_hocus_document(&doc.address, &frame)));
            }
        }
        None
    }
}
