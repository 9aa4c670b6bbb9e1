//! The merged broadcast: when one durable batch holds updates from several connections, each
//! connection receives them as one merged frame, and still every update exactly once.

use std::collections::HashMap;

use weaver_protocol::encode_update;
use weaver_relay::RelayConfig;
use yrs::updates::decoder::Decode;
use yrs::{GetString, IdSet, ReadTxn, Transact, Update};

use crate::support::*;

const CLIENTS: u64 = 3;
const UPDATES_PER_CLIENT: usize = 60;

/// Applies what a connection received; remembers which insertions came in which frame.
struct Replica {
    doc: yrs::Doc,
    seen: IdSet,
    frames: usize,
}

impl Replica {
    fn apply(&mut self, frame: &[u8]) {
        let update = Update::decode_v1(&sync_payload(frame)).unwrap();
        let inserted = update.insertions(true);
        assert!(
            self.seen.intersect(&inserted).is_empty(),
            "an update arrived twice"
        );
        self.seen.merge_with(inserted);
        self.doc.transact_mut().apply_update(update).unwrap();
        self.frames += 1;
    }

    fn new() -> Replica {
        Replica {
            doc: yrs::Doc::new(),
            seen: IdSet::new(),
            frames: 0,
        }
    }

    /// Fails unless this replica holds exactly the document the relay stored for `room`.
    async fn assert_same_as_stored(&self, s: &Server, room: &str) {
        let stored = yrs::Doc::new();
        stored
            .transact_mut()
            .apply_update(Update::decode_v1(&s.handle.room_state(room).await.unwrap()).unwrap())
            .unwrap();
        assert_eq!(
            self.doc.transact().state_vector(),
            stored.transact().state_vector()
        );
    }

    fn received(&self, client: u64) -> u32 {
        self.seen
            .get(&yrs::ClientID::new(client))
            .map_or(0, |r| r.iter().map(|(r, _)| r.end - r.start).sum())
    }
}

#[tokio::test]
async fn one_batch_from_several_clients_is_one_merged_frame_and_everyone_converges() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        let mut c = s.client("merged").await;
        c.handshake().await;
        conns.push(c);
    }
    // Each client writes into its own doc; all updates are sent before anything is read, so
    // the room batches updates of different connections while a commit is in flight.
    let writers: Vec<Writer> = (1..=CLIENTS).map(Writer::new).collect();
    for i in 0..UPDATES_PER_CLIENT {
        for (c, w) in conns.iter_mut().zip(&writers) {
            c.send(&encode_update(&w.append(&format!("{}", i % 10))))
                .await;
        }
    }
    let total = CLIENTS as u32 * UPDATES_PER_CLIENT as u32;
    let mut replicas: HashMap<usize, Replica> = HashMap::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let mut r = Replica::new();
        while (1..=CLIENTS).map(|id| r.received(id)).sum::<u32>() < total {
            let f = c.recv_until(|f| f.starts_with(&[0, 2])).await;
            r.apply(&f);
        }
        for id in 1..=CLIENTS {
            assert_eq!(
                r.received(id),
                UPDATES_PER_CLIENT as u32,
                "conn {i}, client {id}"
            );
        }
        replicas.insert(i, r);
    }
    // Every connection (the writers' own echoes included) holds exactly the stored document.
    let stored = yrs::Doc::new();
    stored
        .transact_mut()
        .apply_update(Update::decode_v1(&s.handle.room_state("merged").await.unwrap()).unwrap())
        .unwrap();
    let text = |d: &yrs::Doc| d.get_or_insert_text("t").get_string(&d.transact());
    let expected = text(&stored);
    assert_eq!(expected.len(), total as usize);
    let expected_sv = stored.transact().state_vector();
    for (i, r) in &replicas {
        assert_eq!(text(&r.doc), expected, "conn {i} text");
        assert_eq!(
            r.doc.transact().state_vector(),
            expected_sv,
            "conn {i} state vector"
        );
    }
    // The point of the test: batches were merged, so fewer frames than updates arrived.
    let frames: usize = replicas.values().map(|r| r.frames).sum();
    assert!(
        frames < replicas.len() * total as usize,
        "no batch was merged ({frames} frames for {total} updates per connection)"
    );
    s.stop().await;
}

/// A connection that fell behind (its socket full) gets the update frames that queued up for it
/// merged into one when its writer catches up: fewer frames, every update exactly once, same
/// document.
#[tokio::test]
async fn frames_queued_behind_a_full_socket_go_out_merged() {
    const SMALL: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut lagging = s.client("lagging").await;
    lagging.handshake().await;
    let mut writer = s.client("lagging").await;
    writer.handshake().await;
    let w = Writer::new(7);
    // 8 MiB that `lagging` does not read: more than its receive window plus the server's send
    // buffer (tcp_wmem max 4 MiB here), so its writer blocks and later frames queue.
    let big = "x".repeat(512 * 1024);
    for _ in 0..16 {
        writer.send(&encode_update(&w.append(&big))).await;
        writer.recv_until(|f| f.starts_with(&[0, 2])).await;
    }
    // Each small update is its own durable batch (the writer waits for its echo), so without
    // merging at the writer `lagging` would receive one frame for each.
    for i in 0..SMALL {
        writer
            .send(&encode_update(&w.append(&format!("{}", i % 10))))
            .await;
        writer.recv_until(|f| f.starts_with(&[0, 2])).await;
    }
    let mut r = Replica::new();
    let total = 16 * big.len() as u32 + SMALL as u32;
    let mut small_frames = 0;
    while r.received(7) < total {
        let f = lagging.recv_until(|f| f.starts_with(&[0, 2])).await;
        if f.len() < 64 * 1024 {
            small_frames += 1;
        }
        r.apply(&f);
    }
    assert_eq!(r.received(7), total);
    r.assert_same_as_stored(&s, "lagging").await;
    assert!(
        small_frames < SMALL,
        "{small_frames} frames for {SMALL} small updates queued behind a full socket"
    );
    s.stop().await;
}

/// A room that receives updates faster than `hold_above_rate` holds each batch for up to
/// `hold_window` and commits and broadcasts what gathered as one: a peer receives far fewer
/// frames than updates, each update exactly once, and the same document as stored.
#[tokio::test]
async fn a_write_storm_is_held_into_few_merged_batches() {
    const UPDATES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        hold_window: std::time::Duration::from_millis(100),
        hold_above_rate: 1,
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let mut reader = s.client("storm").await;
    reader.handshake().await;
    let mut writer = s.client("storm").await;
    writer.handshake().await;
    let w = Writer::new(9);
    // Paced 2 ms apart: without holding, every update is its own commit (a commit takes well
    // under 2 ms here) and so its own frame.
    for i in 0..UPDATES {
        writer
            .send(&encode_update(&w.append(&format!("{}", i % 10))))
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let mut r = Replica::new();
    while r.received(9) < UPDATES as u32 {
        let f = reader.recv_until(|f| f.starts_with(&[0, 2])).await;
        r.apply(&f);
    }
    assert_eq!(r.received(9), UPDATES as u32);
    r.assert_same_as_stored(&s, "storm").await;
    // ~200 ms of writes in 100 ms holds: a handful of frames (20 leaves room for a slow machine).
    assert!(
        r.frames <= 20,
        "{} frames for {UPDATES} updates of a write storm",
        r.frames
    );
    s.stop().await;
}
