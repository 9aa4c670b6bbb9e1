//! Shutdown is bounded whatever state the store is in: an engine whose stop never finishes (a
//! persister stuck on a full disk) must not keep `Relay::shutdown` waiting past the timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use weaver_relay::store::wrapped::{StopWith, Wrapped};
use weaver_relay::{Relay, RelayConfig};

#[tokio::test]
async fn shutdown_is_bounded_when_the_store_never_stops() {
    let dir = tempfile::tempdir().unwrap();
    let db = weaver_relay::open_database(dir.path()).unwrap();
    let inner =
        weaver_relay::RedbRoomStore::start(db, weaver_relay::CommitMode::default()).unwrap();
    let config = RelayConfig {
        shutdown_timeout: Duration::from_millis(500),
        ..RelayConfig::default()
    };
    let relay = Relay::start(
        // The redb engine, except that `stop` never completes (and the store reports failed).
        Arc::new(Wrapped::new(inner, StopWith::Never).failed_as(true)),
        config,
        CancellationToken::new(),
    )
    .unwrap();
    relay
        .handle()
        .apply_update("r", crate::support::Writer::new(1).append("x"), "test")
        .await
        .unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), relay.shutdown())
        .await
        .expect("Relay::shutdown returned");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
}
