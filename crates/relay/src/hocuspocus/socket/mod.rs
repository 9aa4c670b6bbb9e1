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
//!
//! This file: the task, its state and its loop (timers included); `read.rs` what it reads,
//! `documents.rs` its documents' handshake, join, forwarding and detach, `write.rs` what it
//! sends.

mod documents;
mod read;
mod write;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use super::HocusDeps;
use super::document::Document;
use crate::connection::CLOSE_LINGER;
use crate::error::{RelayError, close_code};
use crate::metrics as m;
use crate::room::{InboxSender, RoomCmd, RoomHandle, RoomMsg, TrySendError};
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
    outbox: VecDeque<(InboxSender<RoomMsg>, RoomMsg)>,
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
}
