//! The JetStream room log: what the relay's store promises, plus fencing and chunking.

use bytes::Bytes;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{LogError, RoomSeq, StoredRoom};

use crate::support::{Proxy, b, log_config, room, room_log, same_log};

fn seqs(stored: &StoredRoom) -> Vec<u64> {
    stored.tail.iter().map(|(s, _)| *s).collect()
}

#[tokio::test]
async fn append_then_load_round_trips_with_dense_increasing_seqs() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    let r = room("doc-1");
    assert_eq!(log.load(r.clone()).await.unwrap(), StoredRoom::default());
    assert_eq!(
        log.append(r.clone(), vec![b("1"), b("2")]).await.unwrap(),
        2
    );
    assert_eq!(log.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
    assert_eq!(log.append(r.clone(), vec![]).await.unwrap(), 3);
    let other = room("doc-2");
    log.load(other.clone()).await.unwrap();
    assert_eq!(log.append(other.clone(), vec![b("x")]).await.unwrap(), 1);
    let mut last = 3;
    for i in 0..20 {
        let seq = log
            .append(r.clone(), vec![b(&format!("u{i}"))])
            .await
            .unwrap();
        assert_eq!(seq, last + 1);
        last = seq;
    }
    // Another node reads the same thing.
    let reader = same_log(&server, &cfg).await;
    let loaded = reader.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(seqs(&loaded), (1..=23).collect::<Vec<_>>());
    assert_eq!(loaded.tail[2].1, b"3".to_vec());
    assert_eq!(loaded.tail[22].1, b"u19".to_vec());
    assert_eq!(
        reader.rooms().await.unwrap(),
        vec![
            RoomSeq {
                name: "doc-1".into(),
                last_seq: 23
            },
            RoomSeq {
                name: "doc-2".into(),
                last_seq: 1
            },
        ]
    );
    log.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn append_needs_a_load_first() {
    let server = NatsServer::shared();
    let log = room_log(&server).await;
    let err = log
        .append(room("never-loaded"), vec![b("x")])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::NotLoaded { .. }), "{err}");
    log.stop().await;
}

#[tokio::test]
async fn a_second_writer_is_fenced_until_it_reloads() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let (a, b_node) = (same_log(&server, &cfg).await, same_log(&server, &cfg).await);
    let r = room("contested");
    // Both load the empty room: the first write wins, the second is fenced.
    a.load(r.clone()).await.unwrap();
    b_node.load(r.clone()).await.unwrap();
    assert_eq!(a.append(r.clone(), vec![b("a1")]).await.unwrap(), 1);
    let err = b_node.append(r.clone(), vec![b("b1")]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // A fenced writer stays fenced until it loads again.
    let err = b_node.append(r.clone(), vec![b("b1")]).await.unwrap_err();
    assert!(matches!(err, LogError::NotLoaded { .. }), "{err}");
    let loaded = b_node.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail, vec![(1, b"a1".to_vec())]);
    assert_eq!(b_node.append(r.clone(), vec![b("b2")]).await.unwrap(), 2);
    // Now the first writer is the stale one.
    let err = a.append(r.clone(), vec![b("a2")]).await.unwrap_err();
    assert!(err.is_fenced(), "{err}");
    // Its compaction is fenced too (it needs a load first).
    let err = a.compact(r.clone(), 1, b"s".to_vec()).await.unwrap_err();
    assert!(matches!(err, LogError::NotLoaded { .. }), "{err}");
    let loaded = a.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail, vec![(1, b"a1".to_vec()), (2, b"b2".to_vec())]);
    // A stale writer's rollup never erases the new writer's updates: the compaction is
    // fenced like an append.
    b_node.load(r.clone()).await.unwrap();
    assert_eq!(b_node.append(r.clone(), vec![b("b3")]).await.unwrap(), 3);
    let err = a
        .compact(r.clone(), 2, b"stale".to_vec())
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    let loaded = b_node.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(seqs(&loaded), vec![1, 2, 3]);
    a.stop().await;
    b_node.stop().await;
}

/// A publish whose ack was lost and that the writer retries with the same message id: the
/// retry is refused by the sequence check (nats-server 2.15 checks it before de-duplication),
/// and the writer finds its own message after the sequence it expected instead of failing.
#[tokio::test]
async fn a_retry_after_a_lost_ack_finds_its_own_write() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let (first_try, retry) = (same_log(&server, &cfg).await, same_log(&server, &cfg).await);
    let r = room("lost-ack");
    // Both lanes know the same tip: `retry` plays the writer after the ack of `first_try`'s
    // publish (the same message) was lost.
    first_try.load(r.clone()).await.unwrap();
    retry.load(r.clone()).await.unwrap();
    let id = "msg-lost-ack-1".to_owned();
    let landed = first_try
        .append_with_id(r.clone(), vec![b("once")], id.clone())
        .await
        .unwrap();
    let resolved = retry
        .append_with_id(r.clone(), vec![b("once")], id)
        .await
        .unwrap();
    assert_eq!(resolved, landed);
    // Written once, and the resolved writer continues from there.
    assert_eq!(retry.append(r.clone(), vec![b("next")]).await.unwrap(), 2);
    let loaded = retry.load(r.clone()).await.unwrap();
    assert_eq!(
        loaded.tail,
        vec![(1, b"once".to_vec()), (2, b"next".to_vec())]
    );
    // A different message id after the same expectation is another writer: fenced.
    first_try.load(r.clone()).await.unwrap();
    retry.append(r.clone(), vec![b("3")]).await.unwrap();
    let err = first_try
        .append_with_id(r.clone(), vec![b("x")], "other-id".into())
        .await
        .unwrap_err();
    assert!(err.is_fenced(), "{err}");
    first_try.stop().await;
    retry.stop().await;
}

/// The ack itself is lost: the publish reaches JetStream and lands, but nothing comes back
/// before the request times out. The writer reads what follows its expected sequence, finds
/// its own message id, and reports the write as done, exactly once.
#[tokio::test]
async fn an_append_whose_ack_is_lost_is_resolved_by_reading_the_tail() {
    let server = NatsServer::shared();
    let proxy = Proxy::start(&server.url()).await;
    let cfg = weaver_cluster::RoomLogConfig {
        request_timeout: std::time::Duration::from_millis(500),
        ..log_config()
    };
    let client = weaver_cluster::connect(&proxy.url, "lossy").await.unwrap();
    let log = weaver_cluster::RoomLog::open(client, cfg.clone())
        .await
        .unwrap();
    let r = room("ack-lost");
    log.load(r.clone()).await.unwrap();
    assert_eq!(log.append(r.clone(), vec![b("1")]).await.unwrap(), 1);
    // Server→client bytes are held: the publish lands, its ack does not arrive in time.
    proxy.freeze(false, true);
    let append = tokio::spawn({
        let (log, r) = (log.clone(), r.clone());
        async move { log.append(r, vec![b("2")]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        !append.is_finished(),
        "still resolving while the ack is missing"
    );
    proxy.freeze(false, false);
    assert_eq!(append.await.unwrap().unwrap(), 2);
    assert_eq!(log.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
    let loaded = same_log(&server, &cfg).await.load(r.clone()).await.unwrap();
    assert_eq!(
        loaded.tail,
        vec![(1, b"1".to_vec()), (2, b"2".to_vec()), (3, b"3".to_vec())]
    );
    log.stop().await;
}

#[tokio::test]
async fn compaction_rolls_the_subject_up_and_keeps_later_updates() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    let r = room("compact-me");
    log.load(r.clone()).await.unwrap();
    for i in 1..=5 {
        log.append(r.clone(), vec![b(&format!("u{i}"))])
            .await
            .unwrap();
    }
    // The snapshot covers 3; 4 and 5 were logged meanwhile and must survive the rollup.
    log.compact(r.clone(), 3, b"snap-3".to_vec()).await.unwrap();
    assert_eq!(log.append(r.clone(), vec![b("u6")]).await.unwrap(), 6);
    let reader = same_log(&server, &cfg).await;
    let loaded = reader.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot.as_deref(), Some(&b"snap-3"[..]));
    assert_eq!(loaded.snapshot_seq, 3);
    assert_eq!(seqs(&loaded), vec![4, 5, 6]);
    assert_eq!(loaded.tail[0].1, b"u4".to_vec());
    // History before the snapshot is gone from the subject: snapshot record + u6.
    assert_eq!(subject_count(&log, "compact-me", false).await, 2);
    // The same refusals as the redb engine.
    let err = log.compact(r.clone(), 7, b"s".to_vec()).await.unwrap_err();
    assert!(matches!(err, LogError::CompactionRefused { .. }), "{err}");
    let err = log.compact(r.clone(), 2, b"s".to_vec()).await.unwrap_err();
    assert!(matches!(err, LogError::CompactionRefused { .. }), "{err}");
    // A refusal does not fence: the writer goes on.
    assert_eq!(log.append(r.clone(), vec![b("u7")]).await.unwrap(), 7);
    // Compacting everything leaves just the snapshot.
    log.compact(r.clone(), 7, b"snap-7".to_vec()).await.unwrap();
    let loaded = reader.load(r.clone()).await.unwrap();
    assert_eq!((loaded.snapshot_seq, loaded.tail.len()), (7, 0));
    assert_eq!(subject_count(&log, "compact-me", false).await, 1);
    log.stop().await;
    reader.stop().await;
}

/// How many messages the stream holds on one of the room's subjects (records or chunks).
async fn subject_count(log: &weaver_cluster::RoomLog, name: &str, chunks: bool) -> usize {
    use futures_util::StreamExt;
    let mut subject = log.subject_of(name);
    if chunks {
        subject = subject.replacen(".r.", ".c.", 1);
    }
    let mut info = log
        .stream_of(name)
        .info_with_subjects(&subject)
        .await
        .unwrap();
    let mut n = 0;
    while let Some(entry) = info.next().await {
        let (s, count) = entry.unwrap();
        if s == subject {
            n += count;
        }
    }
    n
}

#[tokio::test]
async fn records_above_max_payload_are_chunked() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    assert!(log.chunk_size() < 1024 * 1024 + 1);
    let r = room("big");
    log.load(r.clone()).await.unwrap();
    let update: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let snapshot: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(log.append(r.clone(), vec![b("small")]).await.unwrap(), 1);
    assert_eq!(
        log.append(r.clone(), vec![Bytes::from(update.clone())])
            .await
            .unwrap(),
        2
    );
    assert_eq!(log.append(r.clone(), vec![b("after")]).await.unwrap(), 3);
    let reader = same_log(&server, &cfg).await;
    let loaded = reader.load(r.clone()).await.unwrap();
    assert_eq!(seqs(&loaded), vec![1, 2, 3]);
    assert!(
        loaded.tail[1].1 == update,
        "the 1.5 MB update reads back intact"
    );
    // A 3 MB snapshot covering 2, with the chunked history before it purged.
    log.compact(r.clone(), 2, snapshot.clone()).await.unwrap();
    let loaded = reader.load(r.clone()).await.unwrap();
    assert!(loaded.snapshot.as_deref() == Some(&snapshot[..]));
    assert_eq!((loaded.snapshot_seq, seqs(&loaded)), (2, vec![3]));
    let chunks = subject_count(&log, "big", true).await;
    let needed = (3_000_000 / log.chunk_size()) + 1;
    assert!(
        chunks <= needed + 1,
        "{chunks} chunks kept, the snapshot needs {needed}"
    );
    // And the big update rolled into a snapshot together with the tail after it.
    log.append(r.clone(), vec![Bytes::from(update.clone())])
        .await
        .unwrap();
    log.compact(r.clone(), 3, snapshot.clone()).await.unwrap();
    let loaded = reader.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot_seq, 3);
    assert!(loaded.tail.len() == 1 && loaded.tail[0].0 == 4 && loaded.tail[0].1 == update);
    log.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn deleting_a_room_empties_it_and_never_reuses_its_seqs() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    let r = room("to-delete");
    log.load(r.clone()).await.unwrap();
    log.append(r.clone(), vec![b("1"), b("2"), b("3")])
        .await
        .unwrap();
    log.compact(r.clone(), 2, b"s".to_vec()).await.unwrap();
    log.delete(r.clone()).await.unwrap();
    assert!(log.rooms().await.unwrap().is_empty());
    let loaded = log.load(r.clone()).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert!(loaded.tail.is_empty());
    // The deleted room's last seq: the re-created room continues after it.
    assert_eq!(loaded.snapshot_seq, 3);
    assert_eq!(log.append(r.clone(), vec![b("new")]).await.unwrap(), 4);
    let loaded = same_log(&server, &cfg).await.load(r.clone()).await.unwrap();
    assert_eq!(loaded.tail, vec![(4, b"new".to_vec())]);
    assert_eq!(
        log.rooms().await.unwrap(),
        vec![RoomSeq {
            name: "to-delete".into(),
            last_seq: 4
        }]
    );
    // Deleting twice, or a room never written, is fine.
    log.delete(r.clone()).await.unwrap();
    log.delete(r.clone()).await.unwrap();
    log.delete(room("never-written")).await.unwrap();
    log.stop().await;
}

#[tokio::test]
async fn odd_room_names_are_stored_and_listed_exactly() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    let names = [
        "a.b.c",
        "*",
        ">",
        "with space",
        "100%",
        "=3D",
        "ünïcødé 文档",
        "a/b",
        "",
    ];
    for (i, name) in names.iter().enumerate() {
        let r = room(name);
        log.load(r.clone()).await.unwrap();
        log.append(r.clone(), vec![b(&format!("v{i}"))])
            .await
            .unwrap();
    }
    let reader = same_log(&server, &cfg).await;
    for (i, name) in names.iter().enumerate() {
        let loaded = reader.load(room(name)).await.unwrap();
        assert_eq!(
            loaded.tail,
            vec![(1, format!("v{i}").into_bytes())],
            "{name:?}"
        );
    }
    let mut expected: Vec<RoomSeq> = names
        .iter()
        .map(|n| RoomSeq {
            name: (*n).to_owned(),
            last_seq: 1,
        })
        .collect();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(reader.rooms().await.unwrap(), expected);
    log.stop().await;
    reader.stop().await;
}

/// Killed and restarted (SIGKILL: no graceful flush): every acknowledged append is still
/// there (`sync_interval: always`), and the same client reconnects and goes on writing.
#[tokio::test]
async fn the_log_survives_a_nats_crash_and_the_client_reconnects() {
    let server = NatsServer::start();
    let cfg = log_config();
    let log = same_log(&server, &cfg).await;
    let r = room("survivor");
    log.load(r.clone()).await.unwrap();
    for i in 1..=10 {
        log.append(r.clone(), vec![b(&format!("u{i}"))])
            .await
            .unwrap();
    }
    server.kill();
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !log.failed() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok(),
        "failed() reports the lost connection"
    );
    server.resume();
    // The append waits out the reconnection (it resolves unacknowledged publishes).
    assert_eq!(log.append(r.clone(), vec![b("u11")]).await.unwrap(), 11);
    assert!(!log.failed());
    let loaded = same_log(&server, &cfg).await.load(r.clone()).await.unwrap();
    assert_eq!(seqs(&loaded), (1..=11).collect::<Vec<_>>());
    log.stop().await;
}

/// NATS restarts while ten rooms append continuously: writers ride out the restart, and every
/// append that was acknowledged is in the log afterwards, in order, with no seq twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_under_load_survive_a_nats_restart() {
    let server = std::sync::Arc::new(NatsServer::start());
    // An append in flight when the server went down waits this long for its ack before the
    // tail read resolves it.
    let cfg = weaver_cluster::RoomLogConfig {
        request_timeout: std::time::Duration::from_secs(1),
        ..log_config()
    };
    let log = same_log(&server, &cfg).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..10 {
        let (log, stop) = (log.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let r = room(&format!("load-{i}"));
            log.load(r.clone()).await.unwrap();
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let seq = log.append(r.clone(), vec![b(&format!("{i}:{n}"))]).await;
                acked.push((seq.unwrap(), format!("{i}:{n}").into_bytes()));
            }
            (r, acked)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let restarter = server.clone();
    tokio::task::spawn_blocking(move || restarter.restart())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reader = same_log(&server, &cfg).await;
    for w in writers {
        let (r, acked) = w.await.unwrap();
        assert!(acked.len() > 2, "{r} wrote across the restart");
        let loaded = reader.load(r.clone()).await.unwrap();
        assert_eq!(
            loaded.tail, acked,
            "{r}: the log is exactly what was acknowledged"
        );
    }
    log.stop().await;
    reader.stop().await;
}

/// Issue 17: every read made an ordered consumer and left it to the server's 30 s cleanup, so
/// reads in a row hit the stream's consumer limit ("maximum consumers limit reached", HTTP
/// 500 on `/blocks` reads through the cluster). Streams with a limit of 2 consumers: many
/// reads in a row succeed, and none is left behind.
#[tokio::test]
async fn reads_in_a_row_leave_no_consumers_behind() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let js = weaver_cluster::jetstream(server.client().await, std::time::Duration::from_secs(5));
    for i in 0..cfg.streams {
        js.create_stream(async_nats::jetstream::stream::Config {
            name: format!("{}_{i}", cfg.stream_prefix),
            subjects: vec![format!("{}.{i}.>", cfg.subject_prefix)],
            allow_rollup: true,
            allow_direct: true,
            max_consumers: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let writer = same_log(&server, &cfg).await;
    let reader = same_log(&server, &cfg).await;
    let r = room("read-often");
    writer.load(r.clone()).await.unwrap();
    writer
        .append(r.clone(), vec![b("1"), b("2")])
        .await
        .unwrap();
    for i in 0..12 {
        let loaded = reader.load(r.clone()).await.unwrap();
        assert_eq!(seqs(&loaded), vec![1, 2], "read {i}");
    }
    for i in 0..cfg.streams {
        let mut stream = js
            .get_stream(format!("{}_{i}", cfg.stream_prefix))
            .await
            .unwrap();
        assert_eq!(stream.info().await.unwrap().state.consumer_count, 0);
    }
    writer.stop().await;
    reader.stop().await;
}
