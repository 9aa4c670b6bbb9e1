//! Storage: updates survive a restart, compaction keeps the document identical and shrinks
//! the log, idle rooms unload and reload.

use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use weaver_protocol::encode_update;
use weaver_relay::{RelayConfig, RelayEvent};

use crate::support::*;

const UPDATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("relay_updates");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("relay_snapshots");

fn log_rows(dir: &std::path::Path, room: &str) -> (usize, bool) {
    let db = redb::Database::create(dir.join(weaver_relay::DB_FILE_NAME)).unwrap();
    let txn = db.begin_read().unwrap();
    let log = txn.open_table(UPDATES).unwrap();
    let rows = log.range((room, 0)..=(room, u64::MAX)).unwrap().count();
    let snap = txn
        .open_table(SNAPSHOTS)
        .unwrap()
        .get(room)
        .unwrap()
        .is_some();
    (rows, snap)
}

#[tokio::test]
async fn updates_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = Writer::new(11);
    {
        let s = start(dir.path(), RelayConfig::default()).await;
        let mut c = s.client("durable").await;
        c.handshake().await;
        for word in ["one ", "two ", "three"] {
            let f = encode_update(&w.append(word));
            c.send(&f).await;
            // The echo means the update is on disk.
            assert_eq!(c.recv().await, f);
        }
        s.stop().await;
    }
    assert_eq!(log_rows(dir.path(), "durable"), (3, false));
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut c = s.client("durable").await;
    let content = c.handshake().await;
    assert_eq!(text_of(&content), "one two three");
    assert_eq!(
        s.handle.stored_rooms().await.unwrap(),
        vec!["durable".to_string()]
    );
    s.stop().await;
}

#[tokio::test]
async fn compaction_keeps_the_document_identical() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        compact_after_updates: 10,
        ..RelayConfig::default()
    };
    let w = Writer::new(21);
    let mut expected = String::new();
    let before;
    {
        let s = start(dir.path(), config.clone()).await;
        let mut c = s.client("compact").await;
        c.handshake().await;
        for i in 0..55 {
            let word = format!("{i},");
            expected.push_str(&word);
            let f = encode_update(&w.append(&word));
            c.send(&f).await;
            assert_eq!(c.recv().await, f);
        }
        before = s.handle.room_state("compact").await.unwrap();
        assert_eq!(text_of(&before), expected);
        // Wait (bounded) until the background compactions caught up: a snapshot, and fewer log
        // rows than the threshold, so no further compaction is due. A fixed sleep flaked on a
        // loaded 2-core machine.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let page = s.handle.list_rooms("compact", None, 10).await.unwrap();
            let room = page.rooms.iter().find(|r| r.name == "compact");
            if room.is_some_and(|r| r.snapshot_seq > 0 && r.log_updates < 10) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "compaction did not catch up within 10 s: {room:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s.stop().await;
    }
    let (rows, snapshot) = log_rows(dir.path(), "compact");
    assert!(snapshot, "a snapshot was written");
    assert!(rows < 10, "the log was truncated ({rows} rows left)");
    let s = start(dir.path(), config).await;
    let after = s.handle.room_state("compact").await.unwrap();
    assert_eq!(text_of(&after), expected);
    // Same state vector before and after compaction + reload.
    let sv = |u: &[u8]| {
        use yrs::updates::decoder::Decode;
        use yrs::{ReadTxn, Transact};
        let d = yrs::Doc::new();
        d.transact_mut()
            .apply_update(yrs::Update::decode_v1(u).unwrap())
            .unwrap();
        d.transact().state_vector()
    };
    assert_eq!(sv(&before), sv(&after));
    // And the room keeps accepting writes on top of the snapshot.
    let mut c = s.client("compact").await;
    c.handshake().await;
    let f = encode_update(&w.append("end"));
    c.send(&f).await;
    assert_eq!(c.recv().await, f);
    assert_eq!(
        text_of(&s.handle.room_state("compact").await.unwrap()),
        format!("{expected}end")
    );
    s.stop().await;
}

#[tokio::test]
async fn idle_rooms_unload_and_reload_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        idle_unload: Duration::from_millis(200),
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let mut events = s.handle.subscribe();
    let w = Writer::new(31);
    let mut c = s.client("idle").await;
    c.handshake().await;
    let f = encode_update(&w.append("kept"));
    c.send(&f).await;
    assert_eq!(c.recv().await, f);
    c.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.handle.loaded_rooms() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "room never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The unload is announced (the bridge drops its mirror on it), after the room's update.
    let update = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert!(
        matches!(update, Ok(RelayEvent::Committed(ref u)) if &*u.room == "idle"),
        "{update:?}"
    );
    let unloaded = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert!(
        matches!(unloaded, Ok(RelayEvent::Unloaded { ref room }) if &**room == "idle"),
        "{unloaded:?}"
    );
    let mut c = s.client("idle").await;
    assert_eq!(text_of(&c.handshake().await), "kept");
    s.stop().await;
}

/// A record that cannot be applied (planted directly in the log) is skipped on load: the
/// process starts, the rest of the room loads, and new writes continue after it.
#[tokio::test]
async fn a_poison_record_does_not_stop_the_room_from_loading() {
    const ROOMS: TableDefinition<&str, u64> = TableDefinition::new("relay_rooms");
    let dir = tempfile::tempdir().unwrap();
    let w = Writer::new(71);
    let good1 = w.append("good ");
    let good2 = w.append("record");
    {
        let db = weaver_relay::open_database(dir.path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(UPDATES).unwrap();
            let row = |u: &[u8]| [&[1u8][..], u].concat();
            log.insert(("poisoned", 1), row(&good1).as_slice()).unwrap();
            log.insert(("poisoned", 2), row(&[0xff, 0xff, 0xff, 0x01]).as_slice())
                .unwrap();
            log.insert(("poisoned", 3), [9u8, 1, 2].as_slice()).unwrap(); // unknown row format
            log.insert(("poisoned", 4), row(&good2).as_slice()).unwrap();
            txn.open_table(ROOMS)
                .unwrap()
                .insert("poisoned", 4)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut c = s.client("poisoned").await;
    assert_eq!(text_of(&c.handshake().await), "good record");
    let f = encode_update(&w.append("!"));
    c.send(&f).await;
    assert_eq!(c.recv().await, f);
    c.close().await;
    s.stop().await;
    let (rows, _) = log_rows(dir.path(), "poisoned");
    assert_eq!(rows, 5, "the new write got seq 5, after the planted rows");
}
