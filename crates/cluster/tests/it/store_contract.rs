//! The relay's `RoomStore` conformance suite (`weaver_relay::store::contract`) run against
//! `JetStreamRoomStore` on a real nats-server, plus what only a shared engine has: a second
//! writer fences the first (`StoreError::Fenced`), and a re-created room's seqs continue.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{Claims, JetStreamRoomStore, RoomLogConfig};
use weaver_relay::RoomStore;
use weaver_relay::store::contract::{self, Harness};
use weaver_relay::store::{Detail, StoreError};

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

/// The window a takeover record closes: a stale owner's append that expects the tip it knew
/// lands after another node loaded the room (to own it) but before that node appended
/// anything. It is refused, the new owner's appends work, and a fresh load sees exactly the
/// acknowledged updates with dense seqs (takeover records take none and are not shown).
#[tokio::test]
async fn a_takeover_fences_the_stale_owner_before_the_new_one_appends() {
    let h = JetStream::shared();
    let (a, b_node) = (h.store().await, h.store().await);
    let r: Arc<str> = Arc::from("takeover");
    a.load(r.clone()).await.unwrap();
    assert_eq!(
        a.append(r.clone(), vec![b("a1"), b("a2")]).await.unwrap(),
        2
    );
    let loaded = b_node.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail, vec![(1, b"a1".to_vec()), (2, b"a2".to_vec())]);
    // b appended nothing: only its takeover record stands after a's tip.
    let e = a.append(r.clone(), vec![b("a-stale")]).await.unwrap_err();
    assert!(matches!(&*e, StoreError::Fenced(_)), "{e}");
    assert!(!a.failed());
    // The stale owner's lost tip is not re-read into a successful write either.
    let e = a.append(r.clone(), vec![b("a-stale-2")]).await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert_eq!(b_node.append(r.clone(), vec![b("b3")]).await.unwrap(), 3);
    assert_eq!(
        b_node
            .append(r.clone(), vec![b("b4"), b("b5")])
            .await
            .unwrap(),
        5
    );
    let fresh = h.store().await;
    let loaded = fresh.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(
        loaded.tail,
        vec![
            (1, b"a1".to_vec()),
            (2, b"a2".to_vec()),
            (3, b"b3".to_vec()),
            (4, b"b4".to_vec()),
            (5, b"b5".to_vec()),
        ]
    );
    // Listed with its last seq, not one more per takeover.
    let listed = fresh
        .list("takeover".into(), None, 10, Detail::Full)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].last_seq, listed[0].log_updates), (5, 5));
    // The fresh load took the room over in turn: b is fenced now.
    let e = b_node
        .append(r.clone(), vec![b("b-stale")])
        .await
        .unwrap_err();
    assert!(e.is_fenced(), "{e}");
    for s in [a, b_node, fresh] {
        s.stop().await;
    }
}

/// A room that was only loaded (taken over, never written) or deleted and loaded again is
/// not listed: its takeover record is not content.
#[tokio::test]
async fn taken_over_rooms_without_content_are_not_listed() {
    let h = JetStream::shared();
    let store = h.store().await;
    let (ghost, gone): (Arc<str>, Arc<str>) = (Arc::from("tk-ghost"), Arc::from("tk-gone"));
    store.load(ghost.clone()).await.unwrap();
    store.append(gone.clone(), vec![b("1")]).await.unwrap();
    store.delete(gone.clone()).await.unwrap();
    assert_eq!(store.load(gone.clone()).await.unwrap(), Default::default());
    assert!(
        store
            .list("tk-".into(), None, 10, Detail::Seq)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .rooms()
            .await
            .unwrap()
            .iter()
            .any(|r| r.starts_with("tk-"))
    );
    // Deleting a room that holds only a takeover changes nothing; appends continue its seqs.
    store.delete(gone.clone()).await.unwrap();
    store.load(gone.clone()).await.unwrap();
    assert_eq!(store.append(gone.clone(), vec![b("2")]).await.unwrap(), 2);
    store.stop().await;
}

/// With claims (cluster mode), a room this node holds no lease on is only read: a change
/// feed resuming here does not fence the owner elsewhere. The owner's epoch goes into its
/// takeover; a load with an older epoch than the latest takeover's is refused.
#[tokio::test]
async fn claims_decide_who_takes_over_and_newer_epochs_win() {
    let h = JetStream::shared();
    let (claims_a, claims_b) = (Claims::new("a"), Claims::new("b"));
    let a = JetStreamRoomStore::open(h.server.client().await, h.cfg.clone())
        .await
        .unwrap()
        .with_claims(claims_a.clone());
    let b_node = JetStreamRoomStore::open(h.server.client().await, h.cfg.clone())
        .await
        .unwrap()
        .with_claims(claims_b.clone());
    let r: Arc<str> = Arc::from("claims");
    claims_a.hold(&r, 10);
    a.load(r.clone()).await.unwrap();
    assert_eq!(a.append(r.clone(), vec![b("a1")]).await.unwrap(), 1);
    // b reads without a lease: a stays the writer.
    assert_eq!(b_node.load(r.clone()).await.unwrap().tail.len(), 1);
    assert_eq!(a.append(r.clone(), vec![b("a2")]).await.unwrap(), 2);
    // b gets the lease (a newer epoch) and takes over: a is fenced.
    claims_b.hold(&r, 20);
    b_node.unloaded(&r);
    b_node.load(r.clone()).await.unwrap();
    assert!(
        a.append(r.clone(), vec![b("a3")])
            .await
            .unwrap_err()
            .is_fenced()
    );
    // a, still claiming the old epoch, cannot take the room back by loading it.
    a.unloaded(&r);
    let e = a.load(r.clone()).await.unwrap_err();
    assert!(e.is_fenced(), "{e}");
    assert_eq!(b_node.append(r.clone(), vec![b("b3")]).await.unwrap(), 3);
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
