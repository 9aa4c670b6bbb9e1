//! The connection task: one tokio task per client that connects, runs the y-websocket sync
//! both ways, keeps the link alive, and reconnects with exponential backoff and full jitter.
//!
//! Ends: shutdown (the handle closed or was dropped) → leaves politely and exits. A refused
//! token (HTTP 401, close 4401) or a refusal (HTTP 403) → waits for a new token, no retry loop
//! against an answer that will not change. Anything else (unreachable, lost, timed out, a
//! close code, a frame we refuse) → `Offline`, backoff, retry; the backoff restarts once a
//! handshake succeeded.
//!
//! Bounded: frames above `max_frame_bytes` are refused by tungstenite before they are
//! buffered; the outbox is a bounded channel (overflow becomes one diff); every connect,
//! handshake, write and silence has a deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};
use weaver_protocol::{encode_sync_step1, encode_update};
use weaver_retry::Backoff;

use crate::awareness::RENEW;
use crate::error::FrameError;
use crate::events::{ClientEvent, ConnectionState};
use crate::options::ClientOptions;
use crate::session::Session;
use crate::shared::{Shared, lock};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The relay's close code for an expired token (docs/protocol.md).
const CLOSE_TOKEN_EXPIRED: u16 = 4401;

/// A session online at least this long was healthy: the next retry starts the backoff
/// again. A server that accepts the handshake and then closes at once (a policy refusal,
/// a crash loop) keeps growing it instead.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// How a connection attempt or a session ended.
#[derive(Debug)]
enum End {
    Shutdown,
    /// `healthy`: the session stayed online for [`STABLE_SESSION`] (or ended on our request).
    Retry {
        healthy: bool,
    },
    TokenExpired,
    Refused(String),
}

pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) options: ClientOptions,
    pub(crate) outbox: mpsc::Receiver<Vec<u8>>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Connection {
    pub(crate) async fn run(mut self) {
        let backoff = Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        let mut tries: u32 = 0;
        loop {
            if self.stopping() {
                break;
            }
            self.shared.set_state(ConnectionState::Connecting);
            let end = match self.connect().await {
                Ok(ws) => self.session(ws).await,
                Err(end) => end,
            };
            self.shared.pulled.send_replace(false);
            let gone = lock(&self.shared.awareness).clear_peers();
            for client_id in gone {
                let _ = self
                    .shared
                    .events
                    .send(ClientEvent::Awareness { client_id });
            }
            match end {
                End::Shutdown => break,
                End::Retry { healthy } => {
                    tries = if healthy { 1 } else { tries.saturating_add(1) };
                    self.shared.set_state(ConnectionState::Offline);
                    let delay = backoff.delay(tries, &mut rand::rng());
                    debug!(?delay, tries, "weaver-client: reconnecting after backoff");
                    self.wait(Some(delay)).await;
                }
                End::TokenExpired => {
                    tries = 0;
                    self.shared.set_state(ConnectionState::TokenExpired);
                    self.wait(None).await;
                }
                End::Refused(reason) => {
                    tries = 0;
                    self.shared.set_state(ConnectionState::Refused { reason });
                    self.wait(None).await;
                }
            }
        }
        self.shared.set_state(ConnectionState::Closed);
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps `delay` (forever with `None`), cut short by shutdown or a new token.
    async fn wait(&mut self, delay: Option<Duration>) {
        let sleep = async {
            match delay {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return,
                r = self.shutdown.changed() => { let _ = r; return; }
                () = self.shared.wake.notified() => {
                    if self.shared.token_changed.swap(false, Ordering::SeqCst) {
                        return;
                    }
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<Ws, End> {
        let token = lock(&self.shared.token).clone();
        let url = self.options.url(token.as_deref());
        let config = WebSocketConfig::default()
            .max_message_size(Some(self.options.max_frame_bytes))
            .max_frame_size(Some(self.options.max_frame_bytes));
        let attempt = tokio::time::timeout(
            self.options.connect_timeout,
            tokio_tungstenite::connect_async_with_config(url, Some(config), true),
        );
        let result = tokio::select! {
            r = attempt => r,
            _ = self.shutdown.changed() => return Err(End::Shutdown),
        };
        match result {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                match resp.status().as_u16() {
                    401 => Err(End::TokenExpired),
                    403 => Err(End::Refused(
                        "HTTP 403: the token does not grant this room".into(),
                    )),
                    status => {
                        debug!(status, "weaver-client: upgrade refused");
                        Err(End::Retry { healthy: false })
                    }
                }
            }
            Ok(Err(e)) => {
                debug!(error = %e, "weaver-client: connect failed");
                Err(End::Retry { healthy: false })
            }
            Err(_) => Err(End::Retry { healthy: false }),
        }
    }

    /// Writes one message within the write deadline (two ping intervals).
    async fn send(&self, ws: &mut Ws, msg: WsMessage) -> Result<(), ()> {
        match tokio::time::timeout(self.options.ping_interval.saturating_mul(2), ws.send(msg)).await
        {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    async fn send_frames(&self, ws: &mut Ws, frames: Vec<Vec<u8>>) -> Result<(), ()> {
        for f in frames {
            self.send(ws, WsMessage::Binary(f.into())).await?;
        }
        Ok(())
    }

    /// Closes with `code` and does not wait for the answer longer than a second.
    async fn close(&self, ws: &mut Ws, code: CloseCode) {
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
    }

    async fn session(&mut self, mut ws: Ws) -> End {
        // The handshake diff carries everything queued so far.
        while self.outbox.try_recv().is_ok() {}
        self.shared.overflow.store(false, Ordering::SeqCst);
        let mut session = Session::new();
        let (sv, aw) = {
            let sv = lock(&self.shared.replica).workspace().state_vector_v1();
            let aw = lock(&self.shared.awareness);
            self.shared.awareness_dirty.store(false, Ordering::SeqCst);
            (sv, aw.has_local().then(|| aw.local_frame()))
        };
        let Ok(sv) = sv else {
            return End::Retry { healthy: false };
        };
        let mut first = vec![encode_sync_step1(&sv)];
        first.extend(aw);
        if self.send_frames(&mut ws, first).await.is_err() {
            return End::Retry { healthy: false };
        }
        let started = Instant::now();
        let mut online_at: Option<Instant> = None;
        let mut last_rx = Instant::now();
        let mut last_ping = Instant::now();
        let mut last_renew = Instant::now();
        let mut tick = tokio::time::interval(
            Duration::from_millis(250)
                .min(self.options.ping_interval)
                .max(Duration::from_millis(10)),
        );
        loop {
            if online_at.is_none() && session.online() {
                online_at = Some(Instant::now());
            }
            let retry = End::Retry {
                healthy: online_at.is_some_and(|t| t.elapsed() >= STABLE_SESSION),
            };
            tokio::select! {
                r = self.shutdown.changed() => {
                    let _ = r;
                    let leave = {
                        let aw = lock(&self.shared.awareness);
                        aw.has_local().then(|| aw.leave_frame())
                    };
                    if let Some(f) = leave {
                        let _ = self.send_frames(&mut ws, vec![f]).await;
                    }
                    self.close(&mut ws, CloseCode::Normal).await;
                    return End::Shutdown;
                }
                msg = ws.next() => {
                    last_rx = Instant::now();
                    match msg {
                        Some(Ok(WsMessage::Binary(b))) => match session.handle(&self.shared, &b) {
                            Ok(replies) => {
                                if self.send_frames(&mut ws, replies).await.is_err() {
                                    return retry;
                                }
                            }
                            Err(e) => {
                                warn!(error = %e, "weaver-client: refusing a server frame");
                                let code = match e {
                                    FrameError::Protocol(_) => CloseCode::Protocol,
                                    _ => CloseCode::Invalid,
                                };
                                self.close(&mut ws, code).await;
                                return retry;
                            }
                        },
                        Some(Ok(WsMessage::Text(_))) => {
                            warn!(error = %FrameError::Text, "weaver-client: refusing a server frame");
                            self.close(&mut ws, CloseCode::Unsupported).await;
                            return retry;
                        }
                        Some(Ok(WsMessage::Close(frame))) => {
                            let code = frame.map(|f| u16::from(f.code));
                            debug!(?code, "weaver-client: the server closed the connection");
                            return match code {
                                Some(CLOSE_TOKEN_EXPIRED) => End::TokenExpired,
                                _ => retry,
                            };
                        }
                        Some(Ok(_)) => {} // ping (answered by tungstenite), pong, raw frame
                        Some(Err(e)) => {
                            debug!(error = %e, "weaver-client: connection lost");
                            return retry;
                        }
                        None => return retry,
                    }
                }
                update = self.outbox.recv() => {
                    let Some(update) = update else {
                        self.close(&mut ws, CloseCode::Normal).await;
                        return End::Shutdown;
                    };
                    if self.send_frames(&mut ws, vec![encode_update(&update)]).await.is_err() {
                        return retry;
                    }
                }
                () = self.shared.wake.notified() => {
                    if self.shared.token_changed.swap(false, Ordering::SeqCst) {
                        self.close(&mut ws, CloseCode::Normal).await;
                        return End::Retry { healthy: true };
                    }
                    let mut frames = Vec::new();
                    if self.shared.overflow.swap(false, Ordering::SeqCst)
                        && let Some(diff) = session.diff_for_server(&self.shared)
                    {
                        frames.push(encode_update(&diff));
                    }
                    if self.shared.awareness_dirty.swap(false, Ordering::SeqCst) {
                        frames.push(lock(&self.shared.awareness).local_frame());
                        last_renew = Instant::now();
                    }
                    if self.send_frames(&mut ws, frames).await.is_err() {
                        return retry;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if !session.online() && now.duration_since(started) > self.options.handshake_timeout {
                        debug!("weaver-client: no handshake from the server in time");
                        self.close(&mut ws, CloseCode::Away).await;
                        return retry;
                    }
                    if now.duration_since(last_rx) > self.options.ping_interval.saturating_mul(2) {
                        debug!("weaver-client: the server went silent");
                        return retry;
                    }
                    let mut msgs = Vec::new();
                    if now.duration_since(last_ping) >= self.options.ping_interval {
                        last_ping = now;
                        msgs.push(WsMessage::Ping(Vec::new().into()));
                    }
                    let (renew, gone) = {
                        let mut aw = lock(&self.shared.awareness);
                        let renew = (aw.has_local() && now.duration_since(last_renew) >= RENEW)
                            .then(|| aw.local_frame());
                        (renew, aw.expire(now))
                    };
                    if let Some(f) = renew {
                        last_renew = now;
                        msgs.push(WsMessage::Binary(f.into()));
                    }
                    for client_id in gone {
                        let _ = self.shared.events.send(ClientEvent::Awareness { client_id });
                    }
                    for m in msgs {
                        if self.send(&mut ws, m).await.is_err() {
                            return retry;
                        }
                    }
                }
            }
        }
    }
}
