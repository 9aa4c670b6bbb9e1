//! Shared set-up: a room log or lease bucket with names no other test uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weaver_cluster::testing::{NatsServer, unique};
use weaver_cluster::{LeaseConfig, Leases, RoomLog, RoomLogConfig};

pub fn log_config() -> RoomLogConfig {
    RoomLogConfig {
        stream_prefix: unique("ROOMS"),
        subject_prefix: unique("t"),
        streams: 2,
        ..RoomLogConfig::default()
    }
}

/// A room log on `server` with fresh streams.
pub async fn room_log(server: &NatsServer) -> RoomLog {
    RoomLog::open(server.client().await, log_config())
        .await
        .unwrap()
}

/// A second node's view of the same streams.
pub async fn same_log(server: &NatsServer, cfg: &RoomLogConfig) -> RoomLog {
    RoomLog::open(server.client().await, cfg.clone())
        .await
        .unwrap()
}

pub fn lease_config(ttl: Duration) -> LeaseConfig {
    LeaseConfig {
        bucket: unique("leases"),
        ttl,
        margin: ttl / 5,
        replicas: 1,
    }
}

pub async fn leases(server: &NatsServer, cfg: &LeaseConfig) -> Leases {
    let js = weaver_cluster::jetstream(server.client().await, Duration::from_secs(2));
    Leases::open(&js, cfg.clone()).await.unwrap()
}

pub fn room(name: &str) -> Arc<str> {
    Arc::from(name)
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A loopback TCP proxy to a nats-server whose two directions can be frozen: frozen bytes
/// are held, not dropped, and flow again on thaw (a stall, not a reset).
pub struct Proxy {
    pub url: String,
    up: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("nats://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let (up, down) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (u, d) = (up.clone(), down.clone());
        // Ends with the test's runtime.
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(pump(ri, wo, u.clone()));
                tokio::spawn(pump(ro, wi, d.clone()));
            }
        });
        Proxy { url, up, down }
    }

    /// Holds client→server (`up`) and/or server→client (`down`) bytes until thawed.
    pub fn freeze(&self, up: bool, down: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.down.store(down, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
