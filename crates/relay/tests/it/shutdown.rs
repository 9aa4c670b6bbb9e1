//! Shutdown is bounded whatever state the store is in: an engine whose stop never finishes (a
//! persister stuck on a full disk) must not keep `Relay::shutdown` waiting past the timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use weaver_relay::{Detail, Relay, RelayConfig, RoomStore, StoreError, StoredRoom, StoredRoomInfo};

/// The redb engine, except that `stop` never completes.
#[derive(Debug)]
struct StuckStop(Arc<weaver_relay::RedbRoomStore>);

impl RoomStore for StuckStop {
    fn load(&self, room: Arc<str>) -> BoxFuture<'_, Result<StoredRoom, StoreError>> {
        self.0.load(room)
    }
    fn append(
        &self,
        room: Arc<str>,
        updates: Vec<Bytes>,
    ) -> BoxFuture<'_, Result<u64, Arc<StoreError>>> {
        self.0.append(room, updates)
    }
    fn compact(
        &self,
        room: Arc<str>,
        upto_seq: u64,
        snapshot: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.0.compact(room, upto_seq, snapshot)
    }
    fn delete(&self, room: Arc<str>) -> BoxFuture<'_, Result<(), Arc<StoreError>>> {
        self.0.delete(room)
    }
    fn rooms(&self) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.0.rooms()
    }
    fn list(
        &self,
        prefix: String,
        after: Option<String>,
        limit: usize,
        detail: Detail,
    ) -> BoxFuture<'_, Result<Vec<StoredRoomInfo>, StoreError>> {
        self.0.list(prefix, after, limit, detail)
    }
    fn add_version(
        &self,
        room: Arc<str>,
        version: weaver_relay::store::NewVersion,
        retention: weaver_relay::store::Retention,
    ) -> BoxFuture<'_, Result<weaver_relay::store::VersionMeta, Arc<StoreError>>> {
        self.0.add_version(room, version, retention)
    }
    fn versions(
        &self,
        room: Arc<str>,
    ) -> BoxFuture<'_, Result<Vec<weaver_relay::store::VersionMeta>, StoreError>> {
        self.0.versions(room)
    }
    fn version_data(
        &self,
        room: Arc<str>,
        ids: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<Vec<u8>>, StoreError>> {
        self.0.version_data(room, ids)
    }
    fn failed(&self) -> bool {
        true
    }
    fn stop(&self) -> BoxFuture<'_, ()> {
        std::future::pending().boxed()
    }
}

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
    let relay = Relay::start(Arc::new(StuckStop(inner)), config, CancellationToken::new()).unwrap();
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
