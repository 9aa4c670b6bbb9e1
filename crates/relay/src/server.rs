//! The HTTP accept loop: hyper's HTTP/1.1 server with a header-read deadline, WebSocket
//! upgrades, `TCP_NODELAY` and graceful shutdown.
//!
//! Why not `axum::serve`: it gives hyper no timer, so hyper's header-read timeout is off and a
//! peer that sends nothing, or dribbles a request line and headers, holds a socket and a task
//! forever (slowloris). Why not hyper-util's `auto::Builder` (what axum uses) with a timer: it
//! first reads up to 24 bytes, with no deadline, to tell HTTP/1 from HTTP/2, so a silent peer
//! would still never be closed. Weaver speaks HTTP/1.1 only (y-websocket upgrades over it), so
//! hyper's `http1` builder is used directly.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics as m;

/// After shutdown starts, how long an HTTP connection may take to finish the request it is in
/// before its socket is dropped. Requests are short (the largest is one update body); a peer
/// still sending headers is not worth waiting for. Well inside the 2 s the binary allows the
/// HTTP server after the relay has shut down.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Limits of the HTTP layer, before a connection becomes a WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Deadline for a complete request head, from the accept and after each response.
    pub handshake_timeout: Duration,
    /// HTTP connections (not yet, or never, upgraded) open at once, in total.
    pub max_http_connections: usize,
    /// The same, per peer IP address: one slow or silent client cannot take all of them.
    pub max_http_connections_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: crate::config::DEFAULT_HANDSHAKE_TIMEOUT,
            max_http_connections: crate::config::DEFAULT_MAX_HTTP_CONNECTIONS,
            max_http_connections_per_ip: crate::config::DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP,
        }
    }
}

/// Open HTTP connections, in total and per peer IP. A slot is released when its connection
/// task ends, which for a WebSocket is right after the upgrade (the socket then leaves hyper).
#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

struct Slot {
    slots: Arc<Mutex<Slots>>,
    ip: IpAddr,
}

impl Slot {
    /// `Err(reason)` when the connection must be refused.
    fn take(
        slots: &Arc<Mutex<Slots>>,
        ip: IpAddr,
        limits: &HttpLimits,
    ) -> Result<Slot, &'static str> {
        let mut s = slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.total >= limits.max_http_connections {
            return Err("http_connection_limit");
        }
        let n = s.per_ip.entry(ip).or_insert(0);
        if *n >= limits.max_http_connections_per_ip {
            return Err("http_connection_limit_per_ip");
        }
        *n += 1;
        s.total += 1;
        Ok(Slot {
            slots: Arc::clone(slots),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes.
///
/// Each accepted socket gets `TCP_NODELAY` (small y-websocket frames must not wait for Nagle +
/// delayed ACK). A connection must deliver a complete request head within `handshake_timeout`
/// of being accepted, and again after each response while it is kept alive; otherwise it is
/// closed without a response. When that happens before its first request, the connection is
/// counted as `weaver_rejected_messages_total{reason="handshake_timeout"}` (an idle keep-alive
/// connection closed after a response is normal and not counted). A connection beyond
/// [`HttpLimits`]' caps is closed at once (reasons `http_connection_limit`,
/// `http_connection_limit_per_ip`): a flood of silent sockets costs bounded memory, and one
/// address cannot take every slot.
///
/// On `shutdown`: stops accepting, asks every connection to finish its in-flight request and
/// close ([`SHUTDOWN_DRAIN`] at most), and returns when all connection tasks have ended.
/// Upgraded WebSockets have left hyper by then; the relay's own shutdown closes them (1012).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            // The peer gave up between SYN and accept: nothing to do.
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Typically EMFILE: accepting again at once would spin. Existing connections
                // finishing is what frees descriptors, so wait a little.
                tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let slot = match Slot::take(&slots, peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(reason) => {
                // Dropping the socket closes it; no response, nothing read. Debug level: a
                // flood would otherwise become a log flood; the counter shows it.
                metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => reason).increment(1);
                tracing::debug!(%peer, reason, "refused an HTTP connection");
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "could not set TCP_NODELAY");
        }
        tasks.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            limits.handshake_timeout,
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    handshake_timeout: Duration,
    stop: CancellationToken,
    // Held until this task ends.
    _slot: Slot,
) {
    // Set once a request head has been read completely: tells a peer that never managed one
    // (counted) from a kept-alive connection that went quiet after a response (not counted).
    let got_request = Arc::new(AtomicBool::new(false));
    let service = {
        let got_request = Arc::clone(&got_request);
        let app = TowerToHyperService::new(app);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            got_request.store(true, Ordering::Relaxed);
            app.call(req)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_DRAIN, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(%peer, "HTTP connection still busy at shutdown; dropped");
                    return;
                }
            }
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() && !got_request.load(Ordering::Relaxed) => {
            metrics::counter!(m::REJECTED_MESSAGES_TOTAL, "reason" => "handshake_timeout")
                .increment(1);
            tracing::warn!(
                %peer,
                reason = "handshake_timeout",
                timeout_secs = handshake_timeout.as_secs_f64(),
                "closed a connection that sent no complete request head in time"
            );
        }
        Err(e) => tracing::debug!(%peer, error = %e, "HTTP connection ended with an error"),
    }
}

/// Errors of one half-open connection (not of the listener), as in axum's accept loop.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
