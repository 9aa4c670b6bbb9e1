//! The cluster notifier under faults: a term whose lease ran out while a newer term runs,
//! a room redelivered many times while its webhook fails, a deletion the ledger could not
//! record, a stream reader that dies. Real nats-server, real leases, a real HTTP receiver.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weaver_cluster::{NotifyLedger, RoomFeed, RoomFeedConfig, RoomFeedError};
use weaver_notify::{Delivered, Ledger};

use crate::notify::{
    Fixture, Term, campaign, check_once_in_order, config, delivered, receiver, slow_receiver,
    until, write,
};
use crate::support::{Proxy, lease_config, leases, room, same_log};

/// What the ledger holds for `room`, read under an epoch no term reaches (reading writes
/// nothing).
async fn recorded(log: &weaver_cluster::RoomLog, bucket: &str, name: &str) -> Option<Delivered> {
    let reader = NotifyLedger::open(log, bucket, u64::MAX).await.unwrap();
    reader.delivered(name).await.unwrap()
}

/// Waits (bounded: 15 s) until what the ledger holds for `name` satisfies `done`.
async fn until_recorded(
    log: &weaver_cluster::RoomLog,
    bucket: &str,
    name: &str,
    done: impl Fn(Delivered) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if recorded(log, bucket, name).await.is_some_and(&done) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}: not recorded as expected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_term_past_its_lease_neither_sends_nor_records_while_the_next_one_runs() {
    let fx = Fixture::new(&["q", "p"]).await;
    let (server, writer, bucket) = (&fx.server, &fx.writer, &fx.bucket);
    let (log1, log2) = (&fx.log, same_log(server, &fx.cfg).await);
    let feed = RoomFeedConfig::default();
    // Node 1 renews its lease through a proxy that is frozen at once: its process is as good
    // as paused. Its term is never told to stop; only its own clock can hold it back.
    let lease_cfg = lease_config(Duration::from_secs(3));
    let proxy = Proxy::start(&server.url()).await;
    let js1 = weaver_cluster::jetstream(
        weaver_cluster::connect(&proxy.url, "paused").await.unwrap(),
        Duration::from_secs(2),
    );
    let leases1 = weaver_cluster::Leases::open(&js1, lease_cfg.clone())
        .await
        .unwrap();
    let leases2 = leases(server, &lease_cfg).await;
    // Term 1's receiver answers only after 4 s: past the lease, so the answer to a send made
    // in time comes too late to be recorded.
    let (url1, mut rx1) = slow_receiver(Arc::default(), Duration::from_secs(4)).await;
    let (url2, mut rx2) = receiver(Arc::default()).await;

    let lease1 = campaign(&leases1, "n1").await;
    let clock1 = lease1.clock();
    proxy.freeze(true, true);
    let mut t1 = Term::start(log1, &feed, bucket, lease1, config(url1, 100)).await;
    write(writer, "q", 1).await;
    // The lease runs out by the clock (TTL - margin after its acquisition).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while clock1.remaining().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lease never ran out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Changed after the deadline: a term that ignores its clock would send it.
    write(writer, "p", 1).await;
    // q was sent in time; its answer comes 4 s later, past the lease.
    let mut hits1 = Vec::new();
    until(&mut rx1, &mut hits1, |d| d.iter().any(|h| h.room == "q")).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        recorded(log1, bucket, "q").await,
        None,
        "term 1 recorded after its lease"
    );
    // Term 1 ended by itself, though nobody stopped it.
    tokio::time::timeout(Duration::from_secs(5), t1.notifier.finished())
        .await
        .expect("the expired term keeps running");

    // Term 2, once the key expired on the server: delivers both, records them.
    let t2 = Term::start(
        &log2,
        &feed,
        bucket,
        campaign(&leases2, "n2").await,
        config(url2, 100),
    )
    .await;
    // Term 1 cannot move the consumers back under the running term.
    assert!(matches!(
        RoomFeed::open(log1, &feed, &clock1).await,
        Err(RoomFeedError::Fenced)
    ));
    let mut hits2 = Vec::new();
    until(&mut rx2, &mut hits2, |d| {
        delivered(d, "q", 1) && delivered(d, "p", 1)
    })
    .await;
    check_once_in_order(&hits2);
    until_recorded(&log2, bucket, "q", |d| d.seq == 1).await;
    // Nothing of p ever reached term 1's receiver.
    while let Ok(hit) = rx1.try_recv() {
        hits1.push(hit);
    }
    assert!(!hits1.iter().any(|h| h.room == "p"), "{hits1:?}");
    proxy.freeze(false, false);
    t2.end().await;
    t1.stop.cancel();
}

#[tokio::test]
async fn a_room_delivered_again_and_again_holds_one_message_and_gets_its_newest_seq() {
    let fx = Fixture::new(&["h"]).await;
    let writer = &fx.writer;
    // A short ack wait: the held message comes back several times while the room fails.
    let feed = RoomFeedConfig {
        ack_wait: Duration::from_millis(300),
        ..RoomFeedConfig::default()
    };
    let blocked = Arc::new(Mutex::new(HashSet::from(["h".to_owned()])));
    let (url, mut rx) = receiver(blocked.clone()).await;
    let t = fx.term("n1", &feed, config(url, 50)).await;
    const WRITES: usize = 60;
    write(writer, "h", WRITES).await;
    let mut all = Vec::new();
    until(&mut rx, &mut all, |d| {
        d.iter().any(|h| h.room == "h" && !h.ok)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stream = writer.stream_of("h");
    let info = stream.consumer_info(&feed.durable).await.unwrap();
    // The server holds what the notifier holds: one message of the room (another may be on
    // its way through the feed's queue), not one per write, and they came back many times.
    assert!(info.num_ack_pending <= 2, "{info:?}");
    assert!(info.delivered.consumer_sequence > WRITES as u64, "{info:?}");

    blocked.lock().unwrap().clear();
    until(&mut rx, &mut all, |d| delivered(d, "h", WRITES as u64)).await;
    let ok: Vec<u64> = all.iter().filter(|h| h.ok).map(|h| h.seq).collect();
    assert_eq!(ok, vec![WRITES as u64], "{all:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = stream.consumer_info(&feed.durable).await.unwrap();
        if info.num_ack_pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.end().await;
}

#[tokio::test]
async fn a_deletion_the_ledger_could_not_record_is_retried_until_it_is() {
    let fx = Fixture::new(&["d"]).await;
    let (writer, log, bucket) = (&fx.writer, &fx.log, &fx.bucket);
    let (url, mut rx) = receiver(Arc::default()).await;
    // The default ack wait (60 s): only a retry of its own brings the deletion back in time.
    let t = fx
        .term("n1", &RoomFeedConfig::default(), config(url, 50))
        .await;
    let epoch = t.lease.epoch();
    let mut all = Vec::new();
    write(writer, "d", 2).await;
    until(&mut rx, &mut all, |d| delivered(d, "d", 2)).await;

    // The ledger's bucket disappears: recording the deletion fails.
    let js = weaver_cluster::jetstream(fx.server.client().await, Duration::from_secs(2));
    js.delete_key_value(bucket).await.unwrap();
    writer.delete(room("d")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Back (empty); the deletion is recorded at a retry: a new generation.
    NotifyLedger::open(log, bucket, epoch).await.unwrap();
    until_recorded(log, bucket, "d", |d| d.generation == 1).await;
    // So the re-created room's webhook carries a new id.
    writer.take_over(room("d"), 1, "w".into()).await.unwrap();
    write(writer, "d", 1).await;
    until(&mut rx, &mut all, |d| delivered(d, "d", 3)).await;
    assert_eq!(all.iter().rfind(|h| h.ok).unwrap().id, "msg_d_1_3");
    t.end().await;
}

#[tokio::test]
async fn a_dead_stream_reader_ends_the_feed_and_the_term() {
    let fx = Fixture::new(&[]).await;
    let feed = RoomFeedConfig::default();
    let (url, _rx) = receiver(Arc::default()).await;
    let mut t = fx.term("n1", &feed, config(url, 50)).await;
    // One stream's consumer vanishes under its reader (as when an operator removes it).
    fx.log
        .stream_of("any")
        .delete_consumer(&feed.durable)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), t.notifier.finished())
        .await
        .expect("the notifier did not notice its dead reader");
    t.end().await;
}
