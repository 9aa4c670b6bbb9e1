//! The cluster-wide change stream: another node's appends, chunked records, compactions and
//! deletions reach a subscriber in order per room.

use std::time::Duration;

use bytes::Bytes;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{RoomChange, RoomChanges};

use crate::support::{b, log_config, room, same_log};

async fn next(changes: &mut RoomChanges) -> RoomChange {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change within 10 s")
        .expect("the stream is open")
}

/// What the subscriber sees, as (room, seq or kind).
fn label(c: &RoomChange) -> (String, String) {
    match c {
        RoomChange::Update { room, seq, .. } => (room.to_string(), format!("u{seq}")),
        RoomChange::Resync { room, seq, .. } => (room.to_string(), format!("s{seq}")),
        RoomChange::Deleted { room } => (room.to_string(), "deleted".into()),
        RoomChange::Lagged => (String::new(), "lagged".into()),
    }
}

#[tokio::test]
async fn another_writers_appends_chunks_and_deletes_arrive_in_order_per_room() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let writer = same_log(&server, &cfg).await;
    let reader = same_log(&server, &cfg).await;
    let (a, c) = (room("room-a"), room("room.c/ü"));
    // Written before subscribing: not delivered.
    writer.take_over(a.clone(), 1, "w".into()).await.unwrap();
    writer.append(a.clone(), vec![b("old")]).await.unwrap();

    let mut changes = RoomChanges::subscribe(&reader).await.unwrap();
    writer
        .append(a.clone(), vec![b("a2"), b("a3")])
        .await
        .unwrap();
    writer.take_over(c.clone(), 1, "w".into()).await.unwrap();
    writer.append(c.clone(), vec![b("c1")]).await.unwrap();
    let big = Bytes::from(
        (0..1_500_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    writer.append(a.clone(), vec![big.clone()]).await.unwrap();
    writer.append(c.clone(), vec![b("c2")]).await.unwrap();
    writer.delete(c.clone()).await.unwrap();

    let mut got_a = Vec::new();
    let mut got_c = Vec::new();
    let mut big_seen = None;
    while got_a.len() < 3 || got_c.len() < 3 {
        let ch = next(&mut changes).await;
        if let RoomChange::Update { seq: 4, update, .. } = &ch {
            big_seen = Some(update.clone());
        }
        let (r, what) = label(&ch);
        assert_ne!(what, "lagged");
        if r == "room-a" {
            got_a.push(what);
        } else {
            assert_eq!(r, "room.c/ü");
            got_c.push(what);
        }
    }
    assert_eq!(got_a, ["u2", "u3", "u4"]);
    assert_eq!(got_c, ["u1", "u2", "deleted"]);
    assert_eq!(big_seen.as_deref(), Some(&big[..]), "the chunked update");

    // A re-created room continues after the deleted one's seqs.
    writer.take_over(c.clone(), 2, "w".into()).await.unwrap();
    writer.append(c.clone(), vec![b("again")]).await.unwrap();
    assert_eq!(
        label(&next(&mut changes).await),
        ("room.c/ü".into(), "u3".into())
    );
    changes.stop().await;
    writer.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn compactions_deliver_nothing_new_unless_updates_were_erased_unseen() {
    let server = NatsServer::shared();
    let cfg = log_config();
    let writer = same_log(&server, &cfg).await;
    let reader = same_log(&server, &cfg).await;
    let (a, d) = (room("seen"), room("unseen"));
    writer.take_over(d.clone(), 1, "w".into()).await.unwrap();
    writer
        .append(d.clone(), vec![b("d1"), b("d2")])
        .await
        .unwrap();

    let mut changes = RoomChanges::subscribe(&reader).await.unwrap();
    writer.take_over(a.clone(), 1, "w".into()).await.unwrap();
    writer
        .append(a.clone(), vec![b("1"), b("2")])
        .await
        .unwrap();
    assert_eq!(label(&next(&mut changes).await).1, "u1");
    assert_eq!(label(&next(&mut changes).await).1, "u2");
    // Everything the snapshot folds in was delivered: nothing; then the next update.
    writer
        .compact(a.clone(), 2, b"snap".to_vec())
        .await
        .unwrap();
    writer.append(a.clone(), vec![b("3")]).await.unwrap();
    assert_eq!(
        label(&next(&mut changes).await),
        ("seen".into(), "u3".into())
    );
    // A room whose folded updates this subscriber never saw: the snapshot stands in.
    writer
        .compact(d.clone(), 2, b"dsnap".to_vec())
        .await
        .unwrap();
    match next(&mut changes).await {
        RoomChange::Resync { room, seq, state } => {
            assert_eq!((&*room, seq, &state[..]), ("unseen", 2, &b"dsnap"[..]));
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    changes.stop().await;
    writer.stop().await;
    reader.stop().await;
}
