//! Test support: the real relay in-process on 127.0.0.1:0 over a temp redb (restartable on
//! the same directory), a TCP proxy the test can cut and resume, and polling helpers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use weaver_client::{Client, ClientOptions};
use weaver_relay::{Relay, RelayConfig, RelayHandle};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct Server {
    pub addr: SocketAddr,
    pub handle: RelayHandle,
    relay: Relay,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn start(dir: &Path) -> Server {
    start_with(dir, RelayConfig::default()).await
}

pub async fn start_with(dir: &Path, config: RelayConfig) -> Server {
    let db = weaver_relay::open_database(dir).unwrap();
    let shutdown = CancellationToken::new();
    let store = weaver_relay::RedbRoomStore::start(db, Default::default()).unwrap();
    let relay = Relay::start(store, config, shutdown.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
        relay,
        shutdown,
        server,
    }
}

impl Server {
    /// Graceful stop (connections close with 1012); the directory can be started again.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.relay.shutdown().await;
        let _ = tokio::time::timeout(WAIT, self.server).await;
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The room's stored document as JSON.
    pub async fn json(&self, room: &str) -> serde_json::Value {
        let state = self.handle.room_state(room).await.unwrap();
        weaver_doc::Workspace::from_update_v1(&state)
            .unwrap()
            .to_json()
            .unwrap()
    }
}

/// A TCP proxy in front of the server: `cut` drops every connection and refuses new ones
/// until `resume`; `point_to` follows a restarted server.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: watch::Sender<SocketAddr>,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up_tx, up_rx) = watch::channel(upstream);
        let (cut_tx, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let up = *up_rx.borrow();
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(up).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream: up_tx,
            cut: cut_tx,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn resume(&self) {
        self.cut.send_replace(false);
    }

    pub fn point_to(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client with short backoff and ping timings, so tests reconnect quickly.
pub fn open(url: &str, room: &str, dir: &Path) -> Client {
    Client::open(
        ClientOptions::new(url, room, dir)
            .backoff(Duration::from_millis(50), Duration::from_millis(300))
            .ping_interval(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap()
}

/// Polls `cond` until true or [`WAIT`] passes (then panics with `what`).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `client.synced()` within [`WAIT`].
pub async fn synced(client: &Client) {
    tokio::time::timeout(WAIT, client.synced())
        .await
        .expect("the client did not sync in time");
}

/// A block's content as the client sees it.
pub fn content(client: &Client, id: &str) -> Option<String> {
    client.block(id).unwrap().map(|b| b.content)
}
