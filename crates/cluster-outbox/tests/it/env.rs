//! One runtime, nats-server and client shared by every test of the binary; each store gets a
//! stream and subjects of its own.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use weaver_bridge::outbox::conformance::policy;
use weaver_cluster::testing::{NatsServer, unique};
use weaver_cluster_outbox::{JetStreamOutbox, OutboxConfig};

pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub client: async_nats::Client,
    _server: Arc<NatsServer>,
}

pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = Arc::new(NatsServer::start());
        let client = rt.block_on(server.client());
        Env {
            rt,
            client,
            _server: server,
        }
    })
}

/// A configuration of its own (stream, subjects).
pub fn config() -> OutboxConfig {
    let name = unique("OUTBOX");
    OutboxConfig {
        subject_prefix: format!("t.{name}"),
        stream: name,
        request_timeout: Duration::from_secs(5),
        ..OutboxConfig::default()
    }
}

/// A handle as the conformance fixture opens it (no failure notices, as the redb fixture).
pub fn open(cfg: &OutboxConfig) -> JetStreamOutbox {
    try_open(cfg, false).unwrap()
}

pub fn try_open(
    cfg: &OutboxConfig,
    failure_notices: bool,
) -> Result<JetStreamOutbox, weaver_bridge::OutboxError> {
    let e = env();
    e.rt.block_on(JetStreamOutbox::open(
        &e.client,
        cfg,
        policy(),
        failure_notices,
    ))
}
