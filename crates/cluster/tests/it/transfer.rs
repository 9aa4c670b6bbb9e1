//! `RoomTransfer`: copying rooms out of a deployment without disturbing their owner, and
//! importing them into another at their own seqs, refused where anything of the room exists.

use bytes::Bytes;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{
    JetStreamRoomStore, LogError, RoomCopy, RoomTransfer, TransferError, VersionError,
};
use weaver_relay::store::{NewVersion, Retention, RoomStore, StoredRoom, VersionKind};

use crate::support::{b, log_config, room};

fn version(seq: u64, data: &[u8], base: Option<u64>) -> NewVersion {
    NewVersion {
        seq,
        created_at_ms: 1,
        kind: VersionKind::Explicit,
        label: Some(format!("at {seq}")),
        base,
        chain_bytes: 0,
        full_bytes: data.len() as u64,
        state_vector: vec![0],
        data: data.to_vec(),
    }
}

async fn tip(store: &JetStreamRoomStore, name: &str) -> u64 {
    store
        .log()
        .stream_of(name)
        .direct_get_last_for_subject(store.log().subject_of(name))
        .await
        .unwrap()
        .sequence
}

#[tokio::test]
async fn rooms_copy_out_without_a_takeover_and_import_at_their_own_seqs_once() {
    let server = NatsServer::shared();
    let (from_cfg, to_cfg) = (log_config(), log_config());
    let owner = JetStreamRoomStore::open(server.client().await, from_cfg.clone())
        .await
        .unwrap();
    // A compacted room with a tail and versions, a plain log, a room larger than one message.
    let (c, p, big) = (room("compacted"), room("plain"), room("big"));
    owner.load(c.clone()).await.unwrap();
    owner
        .append(c.clone(), vec![b("1"), b("2"), b("3")])
        .await
        .unwrap();
    owner
        .compact(c.clone(), 2, b"snap-2".to_vec())
        .await
        .unwrap();
    owner.append(c.clone(), vec![b("4")]).await.unwrap();
    let v1 = owner
        .add_version(c.clone(), version(3, b"full", None), Retention::ALL)
        .await
        .unwrap();
    owner
        .add_version(c.clone(), version(4, b"diff", Some(v1.id)), Retention::ALL)
        .await
        .unwrap();
    owner.load(p.clone()).await.unwrap();
    owner.append(p.clone(), vec![b("a"), b("b")]).await.unwrap();
    owner.load(big.clone()).await.unwrap();
    let large = Bytes::from(vec![7u8; 1_500_000]);
    owner
        .append(big.clone(), vec![large.clone()])
        .await
        .unwrap();
    // Deleted: not a stored room, but its name is taken in that deployment.
    let gone = room("gone");
    owner.load(gone.clone()).await.unwrap();
    owner.append(gone.clone(), vec![b("x")]).await.unwrap();
    owner.delete(gone.clone()).await.unwrap();

    let source = RoomTransfer::open(server.client().await, from_cfg.clone())
        .await
        .unwrap();
    assert_eq!(source.rooms().await.unwrap(), ["big", "compacted", "plain"]);
    let before = tip(&owner, "compacted").await;
    let copy = source.read("compacted").await.unwrap().unwrap();
    assert_eq!(
        tip(&owner, "compacted").await,
        before,
        "a copy writes nothing"
    );
    assert_eq!(copy.stored.snapshot.as_deref(), Some(&b"snap-2"[..]));
    assert_eq!(copy.stored.snapshot_seq, 2);
    assert_eq!(
        copy.stored.tail,
        vec![(3, b"3".to_vec()), (4, b"4".to_vec())]
    );
    assert_eq!(copy.versions.len(), 2);
    assert_eq!(copy.versions[1].0.base, Some(v1.id));
    assert_eq!(copy.versions[1].1, b"diff");
    // The owner did not lose the room: its next append is accepted.
    assert_eq!(owner.append(c.clone(), vec![b("5")]).await.unwrap(), 5);
    assert!(source.read("gone").await.unwrap().is_none());
    assert_eq!(
        source
            .occupied(&["gone".into(), "never".into()])
            .await
            .unwrap(),
        ["gone"]
    );

    // Into a new deployment: every room as read, then served at the same seqs.
    let target = RoomTransfer::open(server.client().await, to_cfg.clone())
        .await
        .unwrap();
    let mut copies = Vec::new();
    for name in source.rooms().await.unwrap() {
        let copy = source.read(&name).await.unwrap().unwrap();
        target.import(&name, copy.clone()).await.unwrap();
        copies.push((name, copy));
    }
    for (name, copy) in &copies {
        assert_eq!(&target.read(name).await.unwrap().unwrap(), copy, "{name}");
    }
    let served = JetStreamRoomStore::open(server.client().await, to_cfg)
        .await
        .unwrap();
    assert_eq!(
        served.load(big.clone()).await.unwrap().tail[0].1,
        large.to_vec()
    );
    served.load(c.clone()).await.unwrap();
    assert_eq!(served.append(c.clone(), vec![b("6")]).await.unwrap(), 6);
    assert_eq!(served.versions(c.clone()).await.unwrap().len(), 2);

    // A second import of any of them is refused and changes nothing.
    let again = target
        .import("plain", copies[2].1.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&again, TransferError::Log(LogError::Occupied { room }) if room == "plain"),
        "{again}"
    );
    assert_eq!(target.read("plain").await.unwrap().unwrap(), copies[2].1);
    let empty = target.import("nothing", RoomCopy::default()).await;
    assert!(empty.is_ok());
    assert!(target.read("nothing").await.unwrap().is_none());
    for s in [&owner, &served] {
        s.stop().await;
    }
    source.stop().await;
    target.stop().await;
}

#[tokio::test]
async fn an_import_never_writes_over_a_version_index_it_finds() {
    let server = NatsServer::shared();
    let cfg = log_config();
    // A node running while the restore runs added a version to a room with no log yet.
    let node = JetStreamRoomStore::open(server.client().await, cfg.clone())
        .await
        .unwrap();
    let raced = room("raced");
    let theirs = node
        .add_version(raced.clone(), version(0, b"node's", None), Retention::ALL)
        .await
        .unwrap();
    let target = RoomTransfer::open(server.client().await, cfg)
        .await
        .unwrap();
    let backup = version(1, b"backup's", None);
    let copy = RoomCopy {
        stored: StoredRoom {
            snapshot: None,
            snapshot_seq: 0,
            tail: vec![(1, b"1".to_vec())],
        },
        versions: vec![(backup.meta(theirs.id), backup.data.clone())],
    };
    let refused = target.import("raced", copy).await.unwrap_err();
    assert!(
        matches!(&refused, TransferError::Versions(VersionError::Conflict { room }) if room == "raced"),
        "{refused}"
    );
    assert_eq!(
        node.versions(raced.clone()).await.unwrap(),
        vec![theirs.clone()]
    );
    assert_eq!(
        node.version_data(raced.clone(), vec![theirs.id])
            .await
            .unwrap(),
        vec![b"node's".to_vec()],
        "the node's version data is left alone"
    );
    assert!(
        target.read("raced").await.unwrap().is_none(),
        "no log written"
    );
    node.stop().await;
    target.stop().await;
}
