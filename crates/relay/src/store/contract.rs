//! The conformance suite of [`RoomStore`]: the contract documented on the trait, written once
//! and run by every engine's tests (feature `contract-tests`). An engine supplies a [`Harness`]
//! that opens stores over one backing (a file, a test cluster) and, if it can, breaks the
//! backing's writes; then it runs [`run_all`] or one check per test:
//!
//! ```ignore
//! #[tokio::test]
//! async fn store_contract_seqs_survive_a_restart() {
//!     weaver_relay::store::contract::seqs_survive_a_restart(&MyHarness::new()).await;
//! }
//! ```
//!
//! Every check opens its own store, uses rooms of its own prefix (so all of them can share one
//! backing) and stops the store at the end. The checks panic on a breach, like any test.

// Test code: a breach of the contract is a panic with the assertion that caught it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{
    Detail, NewVersion, Retention, RoomStore, StoreError, StoredRoom, StoredRoomInfo, VersionKind,
};

/// How the suite reaches an engine.
pub trait Harness: Send + Sync {
    /// Opens a store over the harness's backing. The suite calls it again only after it
    /// stopped and dropped the previous store: the new one is a restart and must see everything
    /// the previous one acknowledged.
    fn open(&self) -> BoxFuture<'_, Arc<dyn RoomStore>>;

    /// From now on (`broken`) or no longer (`!broken`), every write to the backing fails, like a
    /// full disk or a lost connection. Returns false if the harness cannot do that; the check
    /// of failures is then skipped.
    fn break_writes(&self, broken: bool) -> bool;
}

/// Runs every check in turn on one backing.
pub async fn run_all(h: &dyn Harness) {
    append_then_load_round_trips(h).await;
    seqs_survive_a_restart(h).await;
    compaction_then_load(h).await;
    compaction_refuses_what_would_lose_data(h).await;
    delete_then_load_is_empty_and_the_room_starts_over(h).await;
    listing_pages_by_prefix_in_name_order(h).await;
    concurrent_rooms_are_all_committed(h).await;
    stop_refuses_later_writes(h).await;
    a_failed_write_is_reported(h).await;
    versions_survive_compaction_and_restart(h).await;
    version_retention_keeps_what_listed_versions_need(h).await;
    versions_are_deleted_with_the_room(h).await;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn room(name: &str) -> Arc<str> {
    Arc::from(name)
}

fn tail(entries: &[(u64, &str)]) -> Vec<(u64, Vec<u8>)> {
    entries
        .iter()
        .map(|(seq, u)| (*seq, u.as_bytes().to_vec()))
        .collect()
}

async fn restart(h: &dyn Harness, store: Arc<dyn RoomStore>) -> Arc<dyn RoomStore> {
    store.stop().await;
    drop(store);
    h.open().await
}

/// Appends get consecutive seqs from 1 per room and load returns them in order; a room never
/// written loads empty.
pub async fn append_then_load_round_trips(h: &dyn Harness) {
    let store = h.open().await;
    let (a, other) = (room("rt-a"), room("rt-b"));
    assert_eq!(
        store
            .append(a.clone(), vec![b("1"), b("22")])
            .await
            .unwrap(),
        2
    );
    assert_eq!(store.append(a.clone(), vec![b("333")]).await.unwrap(), 3);
    assert_eq!(
        store.append(other.clone(), vec![b("x")]).await.unwrap(),
        1,
        "seqs are per room"
    );
    let loaded = store.load(a.clone()).await.unwrap();
    assert_eq!(
        loaded,
        StoredRoom {
            snapshot: None,
            snapshot_seq: 0,
            tail: tail(&[(1, "1"), (2, "22"), (3, "333")]),
        }
    );
    assert_eq!(loaded.tail_bytes(), 6);
    assert_eq!(store.load(other).await.unwrap().tail, tail(&[(1, "x")]));
    assert_eq!(
        store.load(room("rt-never")).await.unwrap(),
        StoredRoom::default()
    );
    store.stop().await;
}

/// Everything acknowledged is there after a restart, and seqs continue after it, also when a
/// compaction emptied the log before the restart (a seq is never reused).
pub async fn seqs_survive_a_restart(h: &dyn Harness) {
    let store = h.open().await;
    let (r, full) = (room("rs-a"), room("rs-full"));
    assert_eq!(
        store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .append(full.clone(), vec![b("1"), b("2")])
            .await
            .unwrap(),
        2
    );
    store
        .compact(full.clone(), 2, b"snap-2".to_vec())
        .await
        .unwrap();
    let store = restart(h, store).await;
    assert_eq!(
        store.load(r.clone()).await.unwrap().tail,
        tail(&[(1, "1"), (2, "2")])
    );
    assert_eq!(store.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
    assert_eq!(store.append(full.clone(), vec![b("3")]).await.unwrap(), 3);
    let store = restart(h, store).await;
    assert_eq!(
        store.load(r).await.unwrap().tail,
        tail(&[(1, "1"), (2, "2"), (3, "3")])
    );
    let loaded = store.load(full).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-2"[..]));
    assert_eq!((loaded.snapshot_seq, loaded.tail), (2, tail(&[(3, "3")])));
    store.stop().await;
}

/// A compaction replaces the snapshot and drops the log it covers; later appends continue the
/// seqs, also after a compaction up to the last seq.
pub async fn compaction_then_load(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("cp-a");
    store
        .append(r.clone(), vec![b("1"), b("2"), b("3")])
        .await
        .unwrap();
    store
        .compact(r.clone(), 2, b"snap-2".to_vec())
        .await
        .unwrap();
    let loaded = store.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-2"[..]));
    assert_eq!((loaded.snapshot_seq, loaded.tail), (2, tail(&[(3, "3")])));
    assert_eq!(store.append(r.clone(), vec![b("4")]).await.unwrap(), 4);
    // Up to the last seq: the log is empty and the next seq is still the next one.
    store
        .compact(r.clone(), 4, b"snap-4".to_vec())
        .await
        .unwrap();
    let loaded = store.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-4"[..]));
    assert_eq!((loaded.snapshot_seq, loaded.tail.len()), (4, 0));
    assert_eq!(store.append(r.clone(), vec![b("5")]).await.unwrap(), 5);
    // The same seq again (a retried compaction) is accepted.
    store
        .compact(r.clone(), 4, b"snap-4b".to_vec())
        .await
        .unwrap();
    let loaded = store.load(r).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-4b"[..]));
    assert_eq!((loaded.snapshot_seq, loaded.tail), (4, tail(&[(5, "5")])));
    store.stop().await;
}

/// Beyond the last seq or below the existing snapshot: refused on its own, nothing changed,
/// the store not failed.
pub async fn compaction_refuses_what_would_lose_data(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("cr-a");
    store
        .append(r.clone(), vec![b("1"), b("2"), b("3")])
        .await
        .unwrap();
    let e = store
        .compact(r.clone(), 9, b"x".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&*e, StoreError::CompactionRefused { room, .. } if room == "cr-a"),
        "{e}"
    );
    store
        .compact(r.clone(), 2, b"snap-2".to_vec())
        .await
        .unwrap();
    let e = store
        .compact(r.clone(), 1, b"old".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(&*e, StoreError::CompactionRefused { .. }), "{e}");
    let loaded = store.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-2"[..]));
    assert_eq!((loaded.snapshot_seq, loaded.tail), (2, tail(&[(3, "3")])));
    // A room never written has nothing to compact.
    assert!(
        store
            .compact(room("cr-never"), 1, b"x".to_vec())
            .await
            .is_err()
    );
    assert!(!store.failed(), "a refusal is not a failure");
    assert_eq!(store.append(r, vec![b("4")]).await.unwrap(), 4);
    store.stop().await;
}

/// A deleted room loads empty and is not listed; written again, it is a new room holding only
/// what was written since, with strictly increasing seqs. (Whether they start over at 1 is the
/// engine's: the redb engine's test asserts it.)
pub async fn delete_then_load_is_empty_and_the_room_starts_over(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("dl-a");
    store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap();
    store.compact(r.clone(), 1, b"s".to_vec()).await.unwrap();
    store.append(r.clone(), vec![b("3")]).await.unwrap();
    store.delete(r.clone()).await.unwrap();
    assert_eq!(store.load(r.clone()).await.unwrap(), StoredRoom::default());
    assert!(!store.rooms().await.unwrap().iter().any(|n| n == "dl-a"));
    assert!(
        store
            .list("dl-".into(), None, 10, Detail::Full)
            .await
            .unwrap()
            .is_empty()
    );
    // Deleting a room that is not stored is not an error.
    store.delete(room("dl-never")).await.unwrap();
    let store = restart(h, store).await;
    assert_eq!(store.load(r.clone()).await.unwrap(), StoredRoom::default());
    let first = store.append(r.clone(), vec![b("new")]).await.unwrap();
    let second = store.append(r.clone(), vec![b("newer")]).await.unwrap();
    assert!(first >= 1 && second == first + 1, "{first}, {second}");
    let loaded = store.load(r).await.unwrap();
    assert_eq!((loaded.snapshot, loaded.snapshot_seq), (None, 0));
    assert_eq!(loaded.tail, tail(&[(first, "new"), (second, "newer")]));
    store.stop().await;
}

/// Listing: only stored rooms, by prefix, after `after`, at most `limit`, in byte order; `Full`
/// counts what each holds, `Seq` only the last seq.
pub async fn listing_pages_by_prefix_in_name_order(h: &dyn Harness) {
    let store = h.open().await;
    // Written out of order; `ls-B` sorts before `ls-a` (bytewise).
    store.append(room("ls-c"), vec![b("c1")]).await.unwrap();
    store
        .compact(room("ls-c"), 1, b"snap".to_vec())
        .await
        .unwrap();
    store
        .append(room("ls-a"), vec![b("a1"), b("a22")])
        .await
        .unwrap();
    store
        .append(room("ls-b"), vec![b("1"), b("2"), b("333")])
        .await
        .unwrap();
    store
        .compact(room("ls-b"), 2, b"snap-b".to_vec())
        .await
        .unwrap();
    store.append(room("ls-B"), vec![b("B")]).await.unwrap();
    store.append(room("lr-before"), vec![b("x")]).await.unwrap();
    store.append(room("lt-after"), vec![b("x")]).await.unwrap();
    // Loaded but never written: not stored.
    store.load(room("ls-ghost")).await.unwrap();

    let full = store
        .list("ls-".into(), None, 10, Detail::Full)
        .await
        .unwrap();
    let info = |name: &str, last_seq, snapshot_seq, snapshot_bytes, log_updates, log_bytes| {
        StoredRoomInfo {
            name: name.into(),
            last_seq,
            snapshot_seq,
            snapshot_bytes,
            log_updates,
            log_bytes,
        }
    };
    assert_eq!(
        full,
        vec![
            info("ls-B", 1, 0, 0, 1, 1),
            info("ls-a", 2, 0, 0, 2, 5),
            info("ls-b", 3, 2, 6, 1, 3),
            info("ls-c", 1, 1, 4, 0, 0),
        ]
    );
    let seq = |name: &str, last_seq| StoredRoomInfo {
        name: name.into(),
        last_seq,
        ..Default::default()
    };
    let page = |after: Option<&str>, limit| {
        store.list("ls-".into(), after.map(str::to_owned), limit, Detail::Seq)
    };
    assert_eq!(
        page(None, 2).await.unwrap(),
        vec![seq("ls-B", 1), seq("ls-a", 2)]
    );
    assert_eq!(
        page(Some("ls-a"), 2).await.unwrap(),
        vec![seq("ls-b", 3), seq("ls-c", 1)]
    );
    assert_eq!(page(Some("ls-c"), 2).await.unwrap(), vec![]);
    // `after` before the prefix: the page starts at the prefix.
    assert_eq!(page(Some("a"), 1).await.unwrap(), vec![seq("ls-B", 1)]);
    // A room's exact name as prefix; a prefix nothing has.
    let exact = store
        .list("ls-b".into(), None, 10, Detail::Seq)
        .await
        .unwrap();
    assert_eq!(exact, vec![seq("ls-b", 3)]);
    assert!(
        store
            .list("zz".into(), None, 10, Detail::Seq)
            .await
            .unwrap()
            .is_empty()
    );
    // Everything, in byte order.
    let all = store
        .list(String::new(), None, usize::MAX, Detail::Seq)
        .await
        .unwrap();
    assert!(all.windows(2).all(|w| w[0].name < w[1].name), "{all:?}");
    for name in ["lr-before", "ls-B", "ls-a", "ls-b", "ls-c", "lt-after"] {
        assert!(all.iter().any(|r| r.name == name), "{name} in {all:?}");
    }
    assert!(!all.iter().any(|r| r.name == "ls-ghost"));
    let mut names = store.rooms().await.unwrap();
    names.sort();
    let listed: Vec<String> = all.into_iter().map(|r| r.name).collect();
    assert_eq!(names, listed, "rooms() names the rooms the listing has");
    store.stop().await;
}

/// Many rooms appending at once: every append acknowledged, every log complete and in order.
pub async fn concurrent_rooms_are_all_committed(h: &dyn Harness) {
    let store = h.open().await;
    let mut tasks = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let name = room(&format!("cc-{n}"));
            for i in 1..=10u64 {
                let seq = store
                    .append(name.clone(), vec![b(&format!("{n}:{i}"))])
                    .await
                    .unwrap();
                assert_eq!(seq, i, "{name}");
            }
            name
        }));
    }
    for t in tasks {
        let name = t.await.unwrap();
        let loaded = store.load(name.clone()).await.unwrap();
        let seqs: Vec<u64> = loaded.tail.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<u64>>(), "{name}");
    }
    store.stop().await;
}

/// After `stop` every write fails with `Stopped` (the store is not failed); what was
/// acknowledged before is there after a restart; stopping twice is harmless.
pub async fn stop_refuses_later_writes(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("st-a");
    assert_eq!(store.append(r.clone(), vec![b("1")]).await.unwrap(), 1);
    store.stop().await;
    let e = store.append(r.clone(), vec![b("late")]).await.unwrap_err();
    assert!(matches!(&*e, StoreError::Stopped), "{e}");
    let e = store
        .compact(r.clone(), 1, b"s".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(&*e, StoreError::Stopped), "{e}");
    let e = store.delete(r.clone()).await.unwrap_err();
    assert!(matches!(&*e, StoreError::Stopped), "{e}");
    assert!(!store.failed());
    store.stop().await;
    drop(store);
    let store = h.open().await;
    assert_eq!(store.load(r).await.unwrap().tail, tail(&[(1, "1")]));
    store.stop().await;
}

/// A write the engine fails is not acknowledged and marks the store failed; a restart is a
/// healthy store holding everything acknowledged, whose seqs continue above them. (Whether
/// `failed` clears once the backing works again is the engine's: redb's stays set, which its
/// own test asserts; JetStream's clears when NATS is back.)
pub async fn a_failed_write_is_reported(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("fl-a");
    assert_eq!(store.append(r.clone(), vec![b("1")]).await.unwrap(), 1);
    assert!(!store.failed());
    if !h.break_writes(true) {
        store.stop().await;
        return;
    }
    let e = store.append(r.clone(), vec![b("lost")]).await.unwrap_err();
    assert!(matches!(&*e, StoreError::Write(_)), "{e}");
    assert!(e.engine_error().is_some());
    // An engine may answer the write before it records the failure (redb's persister answers
    // the group first): a moment's grace, not a weaker check.
    for _ in 0..100 {
        if store.failed() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.failed(), "a failed write marks the store failed");
    h.break_writes(false);
    // Whether the engine takes writes again is its own business.
    let _ = store.append(r.clone(), vec![b("after")]).await;
    let store = restart(h, store).await;
    assert!(!store.failed(), "a restart starts healthy");
    let loaded = store.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail.first(), Some(&(1, b"1".to_vec())));
    let highest = loaded.tail.last().map_or(0, |(s, _)| *s);
    let next = store.append(r, vec![b("2")]).await.unwrap();
    assert!(next > highest, "seq {next} after {highest}");
    store.stop().await;
}

fn version(seq: u64, kind: VersionKind, base: Option<u64>, data: &str, at: u64) -> NewVersion {
    NewVersion {
        seq,
        created_at_ms: at,
        kind,
        label: Some(format!("v{seq}")),
        base,
        chain_bytes: if base.is_some() { data.len() as u64 } else { 0 },
        full_bytes: 1,
        state_vector: vec![seq as u8],
        data: data.as_bytes().to_vec(),
    }
}

/// Versions get ids 1, 2, … per room, read back with their data, and are untouched by a
/// compaction and a restart; a diff whose base is not the newest row is refused alone.
pub async fn versions_survive_compaction_and_restart(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("ver-a");
    store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap();
    let v1 = store
        .add_version(
            r.clone(),
            version(2, VersionKind::Auto, None, "full", 10),
            Retention::ALL,
        )
        .await
        .unwrap();
    assert_eq!((v1.id, v1.seq, v1.bytes, v1.listed), (1, 2, 4, true));
    assert_eq!(v1.label.as_deref(), Some("v2"));
    let v2 = store
        .add_version(
            r.clone(),
            version(2, VersionKind::Explicit, Some(1), "diff", 20),
            Retention::ALL,
        )
        .await
        .unwrap();
    assert_eq!((v2.id, v2.base), (2, Some(1)));
    let stale = store
        .add_version(
            r.clone(),
            version(2, VersionKind::Auto, Some(1), "late", 30),
            Retention::ALL,
        )
        .await;
    assert!(
        matches!(
            stale.as_ref().map_err(|e| &**e),
            Err(StoreError::VersionRefused { base: 1, .. })
        ),
        "{stale:?}"
    );
    assert!(!store.failed(), "a refusal is not a failure");
    assert_eq!(
        store
            .add_version(
                room("ver-other"),
                version(1, VersionKind::Auto, None, "o", 1),
                Retention::ALL
            )
            .await
            .unwrap()
            .id,
        1,
        "ids are per room"
    );
    store.compact(r.clone(), 2, b"snap".to_vec()).await.unwrap();
    let store = restart(h, store).await;
    let rows = store.versions(r.clone()).await.unwrap();
    assert_eq!(rows, vec![v1.clone(), v2.clone()]);
    assert_eq!(
        store.version_data(r.clone(), vec![1, 2]).await.unwrap(),
        vec![b"full".to_vec(), b"diff".to_vec()]
    );
    let missing = store.version_data(r.clone(), vec![9]).await;
    assert!(
        matches!(missing, Err(StoreError::VersionMissing { id: 9, .. })),
        "{missing:?}"
    );
    assert!(store.versions(room("ver-never")).await.unwrap().is_empty());
    store.stop().await;
}

/// Retention unlists old automatic versions (never explicit ones, never the newest), and only
/// removes rows that no listed version chains through; the log is untouched.
pub async fn version_retention_keeps_what_listed_versions_need(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("ver-ret");
    store.append(r.clone(), vec![b("1")]).await.unwrap();
    let add = |v: NewVersion, ret: Retention| store.add_version(r.clone(), v, ret);
    add(version(1, VersionKind::Auto, None, "f1", 0), Retention::ALL)
        .await
        .unwrap();
    add(
        version(1, VersionKind::Explicit, Some(1), "d2", 0),
        Retention::ALL,
    )
    .await
    .unwrap();
    add(
        version(1, VersionKind::Auto, Some(2), "d3", 0),
        Retention::ALL,
    )
    .await
    .unwrap();
    add(version(1, VersionKind::Auto, None, "f4", 0), Retention::ALL)
        .await
        .unwrap();
    add(
        version(1, VersionKind::Auto, None, "f5", 1000),
        Retention::ALL,
    )
    .await
    .unwrap();
    let policy = Retention {
        keep: 1,
        max_age_ms: None,
        now_ms: 1000,
    };
    let v6 = add(version(1, VersionKind::Auto, Some(5), "d6", 1000), policy)
        .await
        .unwrap();
    assert_eq!(v6.id, 6);
    let rows = store.versions(r.clone()).await.unwrap();
    let shown: Vec<(u64, bool)> = rows.iter().map(|m| (m.id, m.listed)).collect();
    // 2 is explicit and chains through 1; 6 chains through 5; 3 and 4 are gone.
    assert_eq!(shown, vec![(1, false), (2, true), (5, false), (6, true)]);
    assert_eq!(
        store.version_data(r.clone(), vec![1, 2]).await.unwrap(),
        vec![b"f1".to_vec(), b"d2".to_vec()]
    );
    assert_eq!(store.load(r.clone()).await.unwrap().tail, tail(&[(1, "1")]));
    store.stop().await;
}

/// Deleting a room removes its versions; the next room of that name starts without any.
pub async fn versions_are_deleted_with_the_room(h: &dyn Harness) {
    let store = h.open().await;
    let r = room("ver-del");
    store.append(r.clone(), vec![b("1")]).await.unwrap();
    store
        .add_version(
            r.clone(),
            version(1, VersionKind::Auto, None, "f", 0),
            Retention::ALL,
        )
        .await
        .unwrap();
    store.delete(r.clone()).await.unwrap();
    assert!(store.versions(r.clone()).await.unwrap().is_empty());
    store.append(r.clone(), vec![b("2")]).await.unwrap();
    let again = store
        .add_version(
            r.clone(),
            version(1, VersionKind::Auto, None, "g", 0),
            Retention::ALL,
        )
        .await
        .unwrap();
    assert_eq!(again.id, 1);
    store.stop().await;
}
