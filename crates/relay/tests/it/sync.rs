//! The y-websocket handshake byte by byte, fan-out, awareness, and refusals of bad frames.

use weaver_protocol::{
    AwarenessEntry, decode_awareness, encode_awareness, encode_awareness_message, encode_update,
};
use weaver_relay::{RelayConfig, close_code};

use crate::support::*;

fn awareness_entries(frame: &[u8]) -> Vec<AwarenessEntry> {
    assert_eq!(frame[0], 1, "awareness frame");
    let mut r = weaver_protocol::Reader::new(&frame[1..]);
    decode_awareness(r.read_var_u8_array().unwrap()).unwrap()
}

fn awareness_frame(client_id: u64, clock: u64, state: &str) -> Vec<u8> {
    encode_awareness_message(&encode_awareness(&[AwarenessEntry {
        client_id,
        clock,
        state: state.into(),
    }]))
}

#[tokio::test]
async fn handshake_bytes_of_an_empty_room() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut c = s.client("empty-room").await;
    // Server step1 with the empty state vector comes first, unprompted.
    assert_eq!(c.recv().await, vec![0, 0, 1, 0]);
    // Our step1 is answered with step2 of the empty update.
    c.send(&[0, 0, 1, 0]).await;
    assert_eq!(c.recv().await, vec![0, 1, 2, 0, 0]);
    c.close().await;
    s.stop().await;
}

#[tokio::test]
async fn update_is_echoed_to_the_sender_and_sent_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut a = s.client("fanout").await;
    let mut b = s.client("fanout").await;
    a.handshake().await;
    b.handshake().await;
    let w = Writer::new(1);
    let frame = encode_update(&w.append("hello"));
    a.send(&frame).await;
    assert_eq!(a.recv().await, frame, "echo to the sender");
    assert_eq!(b.recv().await, frame, "delivery to the other connection");
    // A late joiner's step1 carries the new state vector and its step2 the content.
    let mut c = s.client("fanout").await;
    let step1 = c.recv().await;
    assert_ne!(step1, vec![0, 0, 1, 0]);
    c.send(&[0, 0, 1, 0]).await;
    let step2 = c.recv().await;
    assert_eq!(text_of(&sync_payload(&step2)), "hello");
    s.stop().await;
}

#[tokio::test]
async fn step2_from_a_client_is_stored_and_broadcast() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut a = s.client("step2").await;
    let mut b = s.client("step2").await;
    a.handshake().await;
    b.handshake().await;
    let w = Writer::new(9);
    let update = w.append("offline edit");
    a.send(&weaver_protocol::encode_sync_step2(&update)).await;
    // Broadcast as a plain update (type 2) to everyone, the sender included.
    assert_eq!(a.recv().await, encode_update(&update));
    assert_eq!(b.recv().await, encode_update(&update));
    assert_eq!(
        text_of(&s.handle.room_state("step2").await.unwrap()),
        "offline edit"
    );
    s.stop().await;
}

#[tokio::test]
async fn awareness_is_relayed_queried_and_nulled_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut a = s.client("aw").await;
    let mut b = s.client("aw").await;
    a.handshake().await;
    b.handshake().await;
    a.send(&awareness_frame(77, 1, r#"{"user":"a"}"#)).await;
    let got_a = a.recv().await;
    let got_b = b.recv().await;
    assert_eq!(got_a, got_b);
    assert_eq!(awareness_entries(&got_b)[0].client_id, 77);

    // A new connection gets step1, then the known states as a separate frame.
    let mut c = s.client("aw").await;
    assert_eq!(c.recv().await[..2], [0, 0]);
    let states = awareness_entries(&c.recv().await);
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].state, r#"{"user":"a"}"#);

    // queryAwareness is answered with every known state.
    c.send(&[3]).await;
    let answer = awareness_entries(&c.recv().await);
    assert_eq!(answer[0].client_id, 77);

    // Closing the owner broadcasts a null state with the same clock.
    a.close().await;
    let gone = awareness_entries(&b.recv().await);
    assert_eq!(gone[0].client_id, 77);
    assert_eq!(gone[0].clock, 1);
    assert_eq!(gone[0].state, "null");
    s.stop().await;
}

/// Each bad frame closes only its own connection with the documented code; the room keeps
/// serving another client.
#[tokio::test]
async fn malformed_frames_close_with_their_code_and_the_room_survives() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut good = s.client("hostile").await;
    good.handshake().await;
    let w = Writer::new(5);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("empty frame", vec![], close_code::PROTOCOL_ERROR),
        (
            "unknown message type",
            vec![9, 1, 2],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "unknown sync type",
            vec![0, 7, 0],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "truncated varint",
            vec![0, 0, 0x80],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "length past the end",
            vec![0, 2, 50, 1, 2],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "trailing bytes",
            vec![0, 0, 1, 0, 0],
            close_code::PROTOCOL_ERROR,
        ),
        (
            "bad update bytes",
            vec![0, 2, 4, 0xff, 0xff, 0xff, 0x7f],
            close_code::INVALID_PAYLOAD,
        ),
        (
            "bad state vector",
            vec![0, 0, 2, 5, 0x80],
            close_code::INVALID_PAYLOAD,
        ),
        (
            "bad awareness",
            vec![1, 3, 1, 1, 1],
            close_code::INVALID_PAYLOAD,
        ),
    ];
    for (i, (name, frame, code)) in cases.into_iter().enumerate() {
        let mut bad = s.client("hostile").await;
        bad.recv().await; // step1
        bad.send(&frame).await;
        assert_eq!(bad.expect_close().await, code, "{name}");
        // The room still works for the good client.
        let f = encode_update(&w.append(&i.to_string()));
        good.send(&f).await;
        assert_eq!(good.recv().await, f, "room still serves after {name}");
    }
    let mut text = s.client("hostile").await;
    text.recv().await;
    text.send_text("hello").await;
    assert_eq!(text.expect_close().await, close_code::UNSUPPORTED_DATA);
    let f = encode_update(&w.append("!"));
    good.send(&f).await;
    assert_eq!(good.recv().await, f);
    s.stop().await;
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        max_message_bytes: 64 * 1024,
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let mut good = s.client("big").await;
    good.handshake().await;
    let mut big = s.client("big").await;
    big.recv().await;
    let w = Writer::new(3);
    let huge = encode_update(&w.append(&"x".repeat(100 * 1024)));
    big.send(&huge).await;
    assert_eq!(big.expect_close().await, close_code::TOO_BIG);
    let f = encode_update(&Writer::new(4).append("small"));
    good.send(&f).await;
    assert_eq!(good.recv().await, f);
    s.stop().await;
}

#[tokio::test]
async fn invalid_room_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    for path in [
        "/api",
        "/metrics",
        "/bad%20name",
        &format!("/{}", "a".repeat(129)),
        "/..",
    ] {
        let (status, _) = http(s.addr, "GET", path, b"").await;
        assert!(status == 400 || status == 404, "{path} → {status}");
    }
    assert!(weaver_relay::validate_room_name("ok-room_1.2~x").is_ok());
    // '/' separates non-empty segments (issue 21): "a/b" is a name, "a//b" is not.
    assert!(weaver_relay::validate_room_name("a/b").is_ok());
    assert!(weaver_relay::validate_room_name("a//b").is_err());
    assert!(weaver_relay::validate_room_name("a b").is_err());
    assert!(weaver_relay::validate_room_name("").is_err());
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_1012() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut c = s.client("bye").await;
    c.handshake().await;
    let stop = tokio::spawn(s.stop());
    assert_eq!(c.expect_close().await, close_code::SHUTDOWN);
    stop.await.unwrap();
}

/// A v1 update whose one item is `ContentAny` nested `depth` arrays deep (the yrs 0.28.1 stack
/// overflow probe from the reliability notes). yrs alone aborts the process at ~7,000 levels.
fn nested_any_update(depth: usize) -> Vec<u8> {
    let mut u = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
    for _ in 0..depth {
        u.extend_from_slice(&[117, 1]);
    }
    u.push(126);
    u.push(0);
    u
}

#[tokio::test]
async fn deeply_nested_update_is_refused_with_1008_and_the_process_survives() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut good = s.client("deep").await;
    good.handshake().await;
    for depth in [100, 10_000, 100_000] {
        let mut bad = s.client("deep").await;
        bad.recv().await;
        bad.send(&encode_update(&nested_any_update(depth))).await;
        assert_eq!(
            bad.expect_close().await,
            close_code::POLICY,
            "depth {depth}"
        );
    }
    let f = encode_update(&Writer::new(8).append("still alive"));
    good.send(&f).await;
    assert_eq!(good.recv().await, f);
    // Nothing of the bombs reached storage.
    assert_eq!(
        text_of(&s.handle.room_state("deep").await.unwrap()),
        "still alive"
    );
    s.stop().await;
}

#[tokio::test]
async fn silent_connection_is_closed_after_two_ping_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        ping_interval: std::time::Duration::from_millis(100),
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let mut c = s.client("silent").await;
    // Not reading means not answering pings.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(c.expect_close().await, close_code::TIMEOUT);
    s.stop().await;
}

/// A client that stops reading is closed once its queue is full, never silently skipped; the
/// other connections keep receiving everything.
#[tokio::test]
async fn slow_consumer_is_closed_and_others_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_queue_no_compaction(64);
    let s = start(dir.path(), config).await;
    let mut slow = s.client("slow").await;
    let mut good = s.client("slow").await;
    good.handshake().await;
    let n = 120;
    // The good client reads continuously in its own task.
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            if good.recv().await.starts_with(&[0, 2]) {
                got += 1;
            }
        }
        got
    });
    let w = Writer::new(77);
    let chunk = "y".repeat(128 * 1024);
    let updates: Vec<Vec<u8>> = (0..n).map(|_| w.append(&chunk)).collect();
    for batch in updates.chunks(30) {
        let writes = batch
            .iter()
            .map(|u| s.handle.apply_update("slow", u.clone(), "test"));
        for r in futures_util::future::join_all(writes).await {
            r.unwrap();
        }
    }
    assert_eq!(
        tokio::time::timeout(WAIT, reader).await.unwrap().unwrap(),
        n
    );
    // The slow client now reads: it gets some frames, then the connection ends.
    let mut updates = 0;
    loop {
        match tokio::time::timeout(WAIT, slow.next_message())
            .await
            .unwrap()
        {
            Some(m) if m.is_binary() && m.clone().into_data().starts_with(&[0, 2]) => updates += 1,
            Some(m) if m.is_close() => break,
            Some(_) => {}
            None => break,
        }
    }
    assert!(
        updates < n,
        "the slow connection was closed before receiving all {n} updates"
    );
    s.stop().await;
}

/// A client that sends without ever reading fills both directions: its socket to us (we must
/// keep reading it while our writes to it are blocked, or neither side moves again) and its
/// outbound queue (echoes of its own updates). It must end as a slow consumer, not hang, and the
/// room must keep serving others.
#[tokio::test]
async fn a_peer_that_sends_without_reading_is_closed_not_deadlocked() {
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let config = small_queue_no_compaction(16);
    let s = start(dir.path(), config).await;
    // A small receive buffer so the relay's writes to this peer block after a few frames.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let tcp = socket.connect(s.addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{}/flood", s.addr), tcp)
        .await
        .unwrap();
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    // Updates too large to share a merged frame (two exceed its 256 KiB cap), so each echo is
    // its own frame and the queue counts them one by one.
    let n = 64;
    let flooder = tokio::spawn(async move {
        use futures_util::SinkExt;
        let w = Writer::new(91);
        let chunk = "f".repeat(192 * 1024);
        let mut sent = 0;
        for _ in 0..n {
            let frame = encode_update(&w.append(&chunk));
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let sent = tokio::time::timeout(WAIT, flooder)
        .await
        .expect("the flooding peer's writes never finished: both directions are stuck")
        .unwrap();
    assert!(sent > 0);
    // The flooding connection ends (its close frame may be lost behind its unread input).
    tokio::time::timeout(WAIT, async {
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
    })
    .await
    .expect("the flooding connection was never closed");
    let mut good = s.client("flood").await;
    good.handshake().await;
    let f = encode_update(&Writer::new(92).append("after"));
    good.send(&f).await;
    assert_eq!(
        good.recv_until(|m| m == f.as_slice()).await,
        f,
        "the room still serves"
    );
    s.stop().await;
}

#[tokio::test]
async fn limits_on_document_size_pending_bytes_and_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        max_doc_bytes: 20 * 1024,
        max_pending_bytes: 4 * 1024,
        max_connections: 3,
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let mut good = s.client("limits").await;
    good.handshake().await;

    // A gap: the second update depends on the first. Small gaps are parked and stored...
    let w = Writer::new(61);
    let first = w.append("a");
    let second = w.append("b");
    good.send(&encode_update(&second)).await;
    assert_eq!(good.recv().await, encode_update(&second));
    good.send(&encode_update(&first)).await;
    assert_eq!(good.recv().await, encode_update(&first));
    assert_eq!(text_of(&s.handle.room_state("limits").await.unwrap()), "ab");

    // ...but a connection parking more than the pending limit is closed with 1008.
    let gap = Writer::new(62);
    let _missing = gap.append(&"m".repeat(100));
    let parked = gap.append(&"p".repeat(6 * 1024));
    let mut bad = s.client("limits").await;
    bad.recv().await;
    bad.send(&encode_update(&parked)).await;
    assert_eq!(bad.expect_close().await, close_code::POLICY);
    drop(bad);

    // Writes that would push the document past its size limit are refused.
    let big = Writer::new(63);
    let mut over = s.client("limits").await;
    over.recv().await;
    over.send(&encode_update(&big.append(&"z".repeat(30 * 1024))))
        .await;
    assert_eq!(over.expect_close().await, close_code::POLICY);
    drop(over);
    let r = s
        .handle
        .apply_update(
            "limits",
            Writer::new(64).append(&"q".repeat(30 * 1024)),
            "t",
        )
        .await;
    assert!(
        matches!(r, Err(weaver_relay::RelayError::DocumentTooLarge { .. })),
        "{r:?}"
    );

    // The room still serves, with the refused content absent.
    let f = encode_update(&w.append("c"));
    good.send(&f).await;
    assert_eq!(good.recv().await, f);
    assert_eq!(
        text_of(&s.handle.room_state("limits").await.unwrap()),
        "abc"
    );

    // Connection limit: 3 sockets; the 4th upgrade is refused with HTTP 503.
    let _c2 = s.client("limits").await;
    let _c3 = s.client("limits").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/limits", s.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    s.stop().await;
}

/// Seeded garbage: mutated real frames and random bytes, each on its own connection. Whatever
/// each does to its own connection, the process and the room keep working.
#[tokio::test]
async fn seeded_garbage_frames_never_take_the_room_down() {
    let seed: u64 = std::env::var("WEAVER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    println!("seed {seed}");
    let mut x = seed;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut good = s.client("garbage").await;
    good.handshake().await;
    let w = Writer::new(99);
    let seeds: Vec<Vec<u8>> = vec![
        encode_update(&Writer::new(100).append("seed text")),
        weaver_protocol::encode_sync_step1(&[1, 100, 9]),
        awareness_frame(5, 3, r#"{"a":[1,2,{"b":null}]}"#),
        vec![3],
    ];
    for i in 0..120 {
        let mut frame = seeds[(rand() % seeds.len() as u64) as usize].clone();
        match rand() % 3 {
            0 => {
                for _ in 0..1 + rand() % 4 {
                    let pos = (rand() % frame.len() as u64) as usize;
                    frame[pos] = rand() as u8;
                }
            }
            1 => frame.truncate((rand() % frame.len() as u64) as usize),
            _ => frame = (0..rand() % 40).map(|_| rand() as u8).collect(),
        }
        let mut c = s.client("garbage").await;
        c.recv().await;
        c.send(&frame).await;
        c.close().await;
        if i % 20 == 0 {
            let f = encode_update(&w.append("."));
            good.send(&f).await;
            // Some update (ours or a garbage one that happened to be valid) comes through.
            let got = good.recv_until(|f| f.starts_with(&[0, 2])).await;
            assert!(!got.is_empty());
        }
    }
    let f = encode_update(&w.append("end"));
    good.send(&f).await;
    let echoed = good.recv_until(|g| g == f.as_slice()).await;
    assert_eq!(echoed, f);
    assert_eq!(http(s.addr, "GET", "/healthz", b"").await.0, 200);
    s.stop().await;
}

/// Updates that pass the validator but make yrs 0.28.1 panic inside `apply_update` (found by
/// the protocol crate's fuzzer). The relay drops the update, closes the sender with 1011,
/// rebuilds the room from storage and keeps serving; the update is never stored.
#[tokio::test]
async fn an_update_that_makes_yrs_panic_is_dropped_and_the_room_rebuilt() {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../protocol/tests/data/fuzz-regressions/apply_update-panic-blockstore-push-unwrap.bin",
    );
    let poison = std::fs::read(data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let s = start(dir.path(), RelayConfig::default()).await;
        let mut good = s.client("panics").await;
        good.handshake().await;
        let w = Writer::new(81);
        let f = encode_update(&w.append("before "));
        good.send(&f).await;
        assert_eq!(good.recv().await, f);

        let mut bad = s.client("panics").await;
        bad.recv().await;
        bad.send(&encode_update(&poison)).await;
        assert_eq!(bad.expect_close().await, close_code::INTERNAL);

        // Same room, same actor, rebuilt document: it still has the earlier content and
        // accepts new writes.
        let f = encode_update(&w.append("after"));
        good.send(&f).await;
        assert_eq!(good.recv().await, f);
        assert_eq!(
            text_of(&s.handle.room_state("panics").await.unwrap()),
            "before after"
        );
        // The HTTP path refuses it too, without harm.
        assert_eq!(
            http(s.addr, "POST", "/api/rooms/panics/update", &poison)
                .await
                .0,
            400
        );
        good.close().await;
        s.stop().await;
    }
    // Nothing of the poison update reached the log: a restart loads cleanly.
    let s = start(dir.path(), RelayConfig::default()).await;
    assert_eq!(
        text_of(&s.handle.room_state("panics").await.unwrap()),
        "before after"
    );
    s.stop().await;
}

/// yrs 0.28.1 never frees a document holding a subdocument, so rooms refuse them (1008) over
/// WebSocket and HTTP alike, and nothing of such an update is stored.
#[tokio::test]
async fn subdocuments_are_refused_with_1008() {
    use yrs::{Doc, Map, Transact};
    let doc = Doc::new();
    let root = doc.get_or_insert_map("m");
    let update = {
        let mut txn = doc.transact_mut();
        root.insert(&mut txn, "sub", Doc::new());
        txn.encode_update_v1()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut bad = s.client("subdocs").await;
    bad.recv().await;
    bad.send(&encode_update(&update)).await;
    assert_eq!(bad.expect_close().await, close_code::POLICY);
    assert!(
        s.handle
            .apply_update("subdocs", update.clone(), "test")
            .await
            .is_err()
    );
    let mut good = s.client("subdocs").await;
    good.handshake().await;
    let f = encode_update(&Writer::new(9).append("plain text is fine"));
    good.send(&f).await;
    assert_eq!(good.recv().await, f);
    assert_eq!(
        text_of(&s.handle.room_state("subdocs").await.unwrap()),
        "plain text is fine"
    );
    s.stop().await;
}

/// A relay whose connections queue at most `frames` frames and whose rooms never compact (so
/// the tests count exactly the frames they caused).
fn small_queue_no_compaction(frames: usize) -> RelayConfig {
    RelayConfig {
        conn_queue_frames: frames,
        compact_after_bytes: u64::MAX,
        compact_after_updates: u64::MAX,
        ..RelayConfig::default()
    }
}
