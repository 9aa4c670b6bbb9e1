//! The relay's `RoomStore` conformance suite (`weaver_relay::store::contract`) run against
//! `JetStreamRoomStore` on a real nats-server, plus what only a shared engine has: a second
//! writer fences the first (`StoreError::Fenced`), and a re-created room's seqs continue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{JetStreamRoomStore, RoomLogConfig};
use weaver_relay::RoomStore;
use weaver_relay::store::StoreError;
use weaver_relay::store::contract::{self, Harness};

use crate::support::log_config;

/// Stores over fresh streams of one server; `private` servers can be stopped (broken writes).
struct JetStream {
    server: Arc<NatsServer>,
    cfg: RoomLogConfig,
    private: bool,
}

impl JetStream {
    fn shared() -> JetStream {
        JetStream {
            server: NatsServer::shared(),
            cfg: config(),
            private: false,
        }
    }

    fn private() -> JetStream {
        JetStream {
            server: Arc::new(NatsServer::start()),
            cfg: config(),
            private: true,
        }
    }

    async fn store(&self) -> Arc<JetStreamRoomStore> {
        Arc::new(
            JetStreamRoomStore::open(self.server.client().await, self.cfg.clone())
                .await
                .unwrap(),
        )
    }
}

fn config() -> RoomLogConfig {
    RoomLogConfig {
        // A stopped server fails an append after 3 × this, not 15 s.
        request_timeout: Duration::from_secs(1),
        ..log_config()
    }
}

impl Harness for JetStream {
    fn open(&self) -> BoxFuture<'_, Arc<dyn RoomStore>> {
        async move {
            let store: Arc<dyn RoomStore> = self.store().await;
            store
        }
        .boxed()
    }

    fn break_writes(&self, broken: bool) -> bool {
        if !self.private {
            return false;
        }
        if broken {
            self.server.stop();
        } else {
            self.server.resume();
        }
        true
    }
}

#[tokio::test]
async fn append_then_load_round_trips() {
    contract::append_then_load_round_trips(&JetStream::shared()).await;
}

#[tokio::test]
async fn seqs_survive_a_restart() {
    contract::seqs_survive_a_restart(&JetStream::shared()).await;
}

#[tokio::test]
async fn compaction_then_load() {
    contract::compaction_then_load(&JetStream::shared()).await;
}

#[tokio::test]
async fn compaction_refuses_what_would_lose_data() {
    contract::compaction_refuses_what_would_lose_data(&JetStream::shared()).await;
}

#[tokio::test]
async fn delete_then_load_is_empty_and_the_room_starts_over() {
    contract::delete_then_load_is_empty_and_the_room_starts_over(&JetStream::shared()).await;
}

#[tokio::test]
async fn listing_pages_by_prefix_in_name_order() {
    contract::listing_pages_by_prefix_in_name_order(&JetStream::shared()).await;
}

#[tokio::test]
async fn concurrent_rooms_are_all_committed() {
    contract::concurrent_rooms_are_all_committed(&JetStream::shared()).await;
}

#[tokio::test]
async fn stop_refuses_later_writes() {
    contract::stop_refuses_later_writes(&JetStream::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_reported() {
    // The harness stops and resumes the server from inside the test (blocking calls).
    contract::a_failed_write_is_reported(&JetStream::private()).await;
}

/// Unlike redb's failure, JetStream's clears by itself once NATS is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_clears_when_nats_is_back() {
    let h = JetStream::private();
    let store = h.store().await;
    assert!(!store.failed());
    h.break_writes(true);
    wait_for(|| store.failed(), "failed while NATS is down").await;
    h.break_writes(false);
    wait_for(|| !store.failed(), "healthy once NATS is back").await;
    let r: Arc<str> = Arc::from("back");
    assert_eq!(store.append(r, vec![b("1")]).await.unwrap(), 1);
    store.stop().await;
}

/// Two nodes' stores over the same streams: the second writer's append fences the first one's
/// next append (`StoreError::Fenced`, the store not failed); the first reloads and continues.
#[tokio::test]
async fn a_second_writer_fences_the_first() {
    let h = JetStream::shared();
    let (a, b_node) = (h.store().await, h.store().await);
    let r: Arc<str> = Arc::from("fence");
    a.load(r.clone()).await.unwrap();
    assert_eq!(a.append(r.clone(), vec![b("a1")]).await.unwrap(), 1);
    b_node.load(r.clone()).await.unwrap();
    assert_eq!(b_node.append(r.clone(), vec![b("b2")]).await.unwrap(), 2);
    let e = a.append(r.clone(), vec![b("a-late")]).await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert!(matches!(&*e, StoreError::Fenced(_)));
    assert!(!a.failed());
    // The lost tip is not re-read behind the actor's back either: still fenced.
    let e = a.append(r.clone(), vec![b("a-later")]).await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    // Unloaded and loaded again (a new actor): it sees b's write and may append after it.
    a.unloaded(&r);
    let loaded = a.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail, vec![(1, b"a1".to_vec()), (2, b"b2".to_vec())]);
    assert_eq!(a.append(r.clone(), vec![b("a3")]).await.unwrap(), 3);
    a.stop().await;
    b_node.stop().await;
}

/// JetStream keeps a deleted room's last seq in its tombstone: a re-created room continues
/// above it (the relay sees an empty room either way).
#[tokio::test]
async fn a_recreated_room_continues_the_seqs() {
    let h = JetStream::shared();
    let store = h.store().await;
    let r: Arc<str> = Arc::from("recreate");
    assert_eq!(
        store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
        2
    );
    store.delete(r.clone()).await.unwrap();
    assert_eq!(store.load(r.clone()).await.unwrap(), Default::default());
    assert_eq!(store.append(r.clone(), vec![b("new")]).await.unwrap(), 3);
    store.stop().await;
}

/// Every check in one go on one backing, as `run_all` documents.
#[tokio::test]
async fn every_check_on_one_server() {
    contract::run_all(&JetStream::shared()).await;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn wait_for(cond: impl Fn() -> bool, what: &str) {
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(tokio::time::Instant::now() < until, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn versions_survive_compaction_and_restart() {
    contract::versions_survive_compaction_and_restart(&JetStream::shared()).await;
}

#[tokio::test]
async fn version_retention_keeps_what_listed_versions_need() {
    contract::version_retention_keeps_what_listed_versions_need(&JetStream::shared()).await;
}

#[tokio::test]
async fn versions_are_deleted_with_the_room() {
    contract::versions_are_deleted_with_the_room(&JetStream::shared()).await;
}
