//! Shared set-up: a room log or lease bucket with names no other test uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
