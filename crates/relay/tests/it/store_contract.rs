//! The `RoomStore` conformance suite (`weaver_relay::store::contract`) run against the redb
//! engine, over an in-memory redb file whose writes can be made to fail (like a full disk).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redb::backends::InMemoryBackend;
use redb::{BackendError, StorageBackend};
use weaver_relay::store::contract::{self, Harness};
use weaver_relay::{CommitMode, RedbRoomStore, RoomStore};

/// One in-memory database file that outlives the `Database`s opened on it (restarts).
#[derive(Debug, Clone, Default)]
struct Backing {
    file: Arc<InMemoryBackend>,
    broken: Arc<AtomicBool>,
}

impl Backing {
    fn refuse(&self) -> Result<(), std::io::Error> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected write failure"));
        }
        Ok(())
    }
}

impl StorageBackend for Backing {
    fn len(&self) -> Result<u64, BackendError> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.refuse()?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        self.refuse()?;
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.refuse()?;
        self.file.write(offset, data)
    }
}

#[derive(Default)]
struct Redb {
    backing: Backing,
}

impl Harness for Redb {
    fn open(&self) -> BoxFuture<'_, Arc<dyn RoomStore>> {
        async move {
            // As `weaver serve` opens it: every page's checksum verified (also after a failure).
            let db = redb::Database::builder()
                .set_check_integrity_on_open(true)
                .create_with_backend(self.backing.clone())
                .unwrap();
            let store: Arc<dyn RoomStore> =
                RedbRoomStore::start(Arc::new(db), CommitMode::OnePhase).unwrap();
            store
        }
        .boxed()
    }

    fn break_writes(&self, broken: bool) -> bool {
        self.backing.broken.store(broken, Ordering::SeqCst);
        true
    }
}

#[tokio::test]
async fn append_then_load_round_trips() {
    contract::append_then_load_round_trips(&Redb::default()).await;
}

#[tokio::test]
async fn seqs_survive_a_restart() {
    contract::seqs_survive_a_restart(&Redb::default()).await;
}

#[tokio::test]
async fn compaction_then_load() {
    contract::compaction_then_load(&Redb::default()).await;
}

#[tokio::test]
async fn compaction_refuses_what_would_lose_data() {
    contract::compaction_refuses_what_would_lose_data(&Redb::default()).await;
}

#[tokio::test]
async fn delete_then_load_is_empty_and_the_room_starts_over() {
    contract::delete_then_load_is_empty_and_the_room_starts_over(&Redb::default()).await;
}

#[tokio::test]
async fn listing_pages_by_prefix_in_name_order() {
    contract::listing_pages_by_prefix_in_name_order(&Redb::default()).await;
}

#[tokio::test]
async fn concurrent_rooms_are_all_committed() {
    contract::concurrent_rooms_are_all_committed(&Redb::default()).await;
}

#[tokio::test]
async fn stop_refuses_later_writes() {
    contract::stop_refuses_later_writes(&Redb::default()).await;
}

#[tokio::test]
async fn a_failed_write_is_reported() {
    contract::a_failed_write_is_reported(&Redb::default()).await;
}

/// redb's own behaviour beyond the contract: a deleted room's seqs start over at 1.
#[tokio::test]
async fn redb_restarts_a_deleted_room_at_seq_1() {
    let h = Redb::default();
    let store = h.open().await;
    let r: Arc<str> = Arc::from("dl-redb");
    store
        .append(
            r.clone(),
            vec![b"1".as_slice().into(), b"2".as_slice().into()],
        )
        .await
        .unwrap();
    store.delete(r.clone()).await.unwrap();
    assert_eq!(
        store
            .append(r.clone(), vec![b"new".as_slice().into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.load(r).await.unwrap().tail,
        vec![(1, b"new".to_vec())]
    );
    store.stop().await;
}

/// redb's own behaviour beyond the contract: once a commit failed, the store stays failed
/// until the process restarts, even when the disk works again (redb refuses writes after an
/// I/O error).
#[tokio::test]
async fn redb_failure_is_sticky_until_a_restart() {
    let h = Redb::default();
    let store = h.open().await;
    let r: Arc<str> = Arc::from("fl-redb");
    store
        .append(r.clone(), vec![b"1".as_slice().into()])
        .await
        .unwrap();
    assert!(h.break_writes(true));
    let e = store
        .append(r.clone(), vec![b"lost".as_slice().into()])
        .await
        .unwrap_err();
    // The persister answers the group before it marks the store failed: wait for the mark.
    for _ in 0..100 {
        if store.failed() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.failed(), "{e}");
    h.break_writes(false);
    let _ = store
        .append(r.clone(), vec![b"after".as_slice().into()])
        .await;
    assert!(store.failed(), "a failed store stays failed");
    store.stop().await;
    drop(store);
    let store = h.open().await;
    assert!(!store.failed(), "a restart starts healthy");
    store.stop().await;
}

/// All checks on one backing, as a second engine would run them in one go; on a real file, so
/// restarts reopen it through `open_database` (page checks included).
#[tokio::test]
async fn every_check_on_one_file() {
    struct File(tempfile::TempDir);
    impl Harness for File {
        fn open(&self) -> BoxFuture<'_, Arc<dyn RoomStore>> {
            async move {
                let db = weaver_relay::open_database(self.0.path()).unwrap();
                let store: Arc<dyn RoomStore> =
                    RedbRoomStore::start(db, CommitMode::TwoPhase).unwrap();
                store
            }
            .boxed()
        }

        fn break_writes(&self, _: bool) -> bool {
            false
        }
    }
    contract::run_all(&File(tempfile::tempdir().unwrap())).await;
}

/// The whole contract on the journaled engine `weaver serve` uses (`start_journaled`): appends
/// made durable by the journal, restarts through its checkpoint and replay.
#[tokio::test]
async fn every_check_journaled() {
    struct Journaled(tempfile::TempDir);
    impl Harness for Journaled {
        fn open(&self) -> BoxFuture<'_, Arc<dyn RoomStore>> {
            async move {
                let db = weaver_relay::open_database(self.0.path()).unwrap();
                let store: Arc<dyn RoomStore> =
                    RedbRoomStore::start_journaled(db, CommitMode::OnePhase, self.0.path())
                        .unwrap();
                store
            }
            .boxed()
        }

        fn break_writes(&self, _: bool) -> bool {
            false
        }
    }
    contract::run_all(&Journaled(tempfile::tempdir().unwrap())).await;
}

#[tokio::test]
async fn versions_survive_compaction_and_restart() {
    contract::versions_survive_compaction_and_restart(&Redb::default()).await;
}

#[tokio::test]
async fn version_retention_keeps_what_listed_versions_need() {
    contract::version_retention_keeps_what_listed_versions_need(&Redb::default()).await;
}

#[tokio::test]
async fn versions_are_deleted_with_the_room() {
    contract::versions_are_deleted_with_the_room(&Redb::default()).await;
}
