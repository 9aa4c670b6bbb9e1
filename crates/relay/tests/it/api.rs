//! The HTTP room API and the bridge-facing `RelayHandle` API.

use base64::Engine;
use weaver_protocol::encode_update;
use weaver_relay::{RelayConfig, RelayEvent, UpdateOrigin, close_code};
use yrs::updates::encoder::Encode;
use yrs::{ReadTxn, Transact};

use crate::support::*;

#[tokio::test]
async fn http_read_write_diff_blocks_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let (status, body) = http(s.addr, "GET", "/api/rooms/h1/update", b"").await;
    assert_eq!((status, body), (200, vec![0, 0]));

    let mut ws = s.client("h1").await;
    ws.handshake().await;

    let w = Writer::new(41);
    let first = w.append("abc");
    let (status, _) = http(s.addr, "POST", "/api/rooms/h1/update", &first).await;
    assert_eq!(status, 204);
    // A connected client receives the HTTP write as an ordinary update.
    assert_eq!(ws.recv().await, encode_update(&first));

    let sv = w.doc.transact().state_vector().encode_v1();
    let second = w.append("def");
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/h1/update", &second)
            .await
            .0,
        204
    );
    let (status, body) = http(s.addr, "GET", "/api/rooms/h1/update", b"").await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&body), "abcdef");
    // The diff against our earlier state vector holds only the second write.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sv);
    let (status, diff) = http(
        s.addr,
        "GET",
        &format!("/api/rooms/h1/update?sv={b64}"),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    assert!(diff.len() < body.len());
    assert_eq!(
        http(s.addr, "GET", "/api/rooms/h1/update?sv=!!", b"")
            .await
            .0,
        400
    );

    // Bad bytes are refused and change nothing.
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/h1/update", &[0xff, 0xff, 0x01])
            .await
            .0,
        400
    );
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/h%20x/update", &first)
            .await
            .0,
        400
    );

    let (status, json) = http(s.addr, "GET", "/api/rooms/h1/blocks", b"").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(json.get("blocks").is_some(), "{json}");

    // Delete closes connections with 4410 and removes storage.
    assert_eq!(http(s.addr, "DELETE", "/api/rooms/h1", b"").await.0, 204);
    assert_eq!(ws.expect_close().await, close_code::ROOM_DELETED);
    let (status, body) = http(s.addr, "GET", "/api/rooms/h1/update", b"").await;
    assert_eq!((status, body), (200, vec![0, 0]));
    assert!(s.handle.stored_rooms().await.unwrap().is_empty());

    let (status, body) = http(s.addr, "GET", "/healthz", b"").await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    assert_eq!(http(s.addr, "GET", "/readyz", b"").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn handle_api_publishes_committed_updates_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut events = s.handle.subscribe();
    let w = Writer::new(51);
    let u1 = w.append("from bridge");
    s.handle
        .apply_update("r1", u1.clone(), "bridge")
        .await
        .unwrap();
    let e = committed(events.recv().await.unwrap());
    assert_eq!(&*e.room, "r1");
    assert_eq!(e.update.as_ref(), u1.as_slice());
    assert_eq!(e.origin, UpdateOrigin::Internal("bridge".into()));

    let mut c = s.client("r1").await;
    assert_eq!(text_of(&c.handshake().await), "from bridge");
    let u2 = w.append("!");
    c.send(&encode_update(&u2)).await;
    let e = committed(events.recv().await.unwrap());
    assert!(matches!(e.origin, UpdateOrigin::Client { .. }));
    assert_eq!(e.update.as_ref(), u2.as_slice());

    assert_eq!(
        text_of(&s.handle.room_state("r1").await.unwrap()),
        "from bridge!"
    );
    assert_eq!(
        s.handle.stored_rooms().await.unwrap(),
        vec!["r1".to_string()]
    );
    assert!(
        s.handle
            .apply_update("r1", vec![0xff, 0xff], "bridge")
            .await
            .is_err()
    );
    assert!(
        s.handle
            .apply_update("bad name", u1, "bridge")
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test]
async fn blocks_view_is_the_typed_workspace_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let ws = weaver_doc::Workspace::new();
    let (_, update) = ws
        .transact("test", |t| t.add_block("b1", "text", "hello blocks"))
        .unwrap();
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/typed/update", &update)
            .await
            .0,
        204
    );
    let (status, body) = http(s.addr, "GET", "/api/rooms/typed/blocks", b"").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["blocks"][0]["id"], "b1");
    assert_eq!(json["blocks"][0]["type"], "text");
    assert_eq!(json["blocks"][0]["content"], "hello blocks");
    s.stop().await;
}

#[tokio::test]
async fn delete_room_publishes_the_room_name_after_the_content_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let mut events = s.handle.subscribe();
    let w = Writer::new(61);
    s.handle
        .apply_update("doomed", w.append("x"), "test")
        .await
        .unwrap();
    s.handle.delete_room("doomed").await.unwrap();
    // One ordered stream: the room's update, then its deletion.
    let first = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert_eq!(&*committed(first.unwrap()).room, "doomed");
    let second = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert!(
        matches!(second, Ok(RelayEvent::Deleted { ref room }) if &**room == "doomed"),
        "{second:?}"
    );
    // Published after the content is gone: a subscriber reading the room sees it empty.
    assert_eq!(text_of(&s.handle.room_state("doomed").await.unwrap()), "");
    assert!(s.handle.stored_rooms().await.unwrap().is_empty());
    assert!(events.try_recv().is_err(), "one notice per deletion");
    s.stop().await;
}

async fn list(addr: std::net::SocketAddr, query: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(addr, "GET", &format!("/api/rooms{query}"), b"").await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

fn names(page: &serde_json::Value) -> Vec<&str> {
    page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn room_listing_pages_stored_and_open_rooms_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        compact_after_updates: 3,
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let w = Writer::new(61);
    for part in ["one ", "two ", "three ", "four"] {
        s.handle
            .apply_update("t1-a", w.append(part), "test")
            .await
            .unwrap();
    }
    for room in ["t1-b", "t2-x"] {
        s.handle
            .apply_update(room, Writer::new(62).append(room), "test")
            .await
            .unwrap();
    }
    // Open but never written: listed as loaded with its connection, nothing stored.
    let mut ws = s.client("t1-c").await;
    ws.handshake().await;

    let (status, page) = list(s.addr, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["t1-a", "t1-b", "t1-c", "t2-x"]);
    assert!(page["next"].is_null());
    let c = &page["rooms"][2];
    assert_eq!(
        (c["loaded"].as_bool(), c["connections"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(
        (c["stored_bytes"].as_u64(), c["last_seq"].as_u64()),
        (Some(0), Some(0))
    );
    let b = &page["rooms"][1];
    assert_eq!(b["last_seq"], 1);
    assert_eq!(b["log_updates"], 1);
    assert_eq!(b["connections"], 0);
    assert!(b["stored_bytes"].as_u64().unwrap() > 4);

    // Four updates with compaction after three: the log is folded into a snapshot in the
    // background, and the listing shows it without losing the last seq.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, page) = list(s.addr, "?prefix=t1-a").await;
        let a = &page["rooms"][0];
        assert_eq!(a["last_seq"], 4, "{a}");
        if a["snapshot_seq"].as_u64().unwrap() > 0 {
            assert!(a["log_updates"].as_u64().unwrap() < 4, "{a}");
            assert!(
                a["stored_bytes"].as_u64().unwrap() >= a["log_bytes"].as_u64().unwrap(),
                "{a}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never compacted: {a}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Pages: `next` is the `after` of the following page.
    let (_, first) = list(s.addr, "?limit=2").await;
    assert_eq!(names(&first), ["t1-a", "t1-b"]);
    assert_eq!(first["next"], "t1-b");
    let (_, second) = list(s.addr, "?limit=2&after=t1-b").await;
    assert_eq!(names(&second), ["t1-c", "t2-x"]);
    assert!(second["next"].is_null());
    let (_, t1) = list(s.addr, "?prefix=t1-&after=t1-a").await;
    assert_eq!(names(&t1), ["t1-b", "t1-c"]);
    let (_, none) = list(s.addr, "?prefix=t1-&after=t2").await;
    assert_eq!(names(&none), Vec::<&str>::new());

    for bad in ["?limit=0", "?limit=1001", "?limit=ten", "?prefix=a%20b"] {
        let (status, body) = list(s.addr, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("invalid query"),
            "{body}"
        );
    }

    // Deleted rooms leave the listing.
    assert_eq!(http(s.addr, "DELETE", "/api/rooms/t1-b", b"").await.0, 204);
    ws.close().await;
    let (_, page) = list(s.addr, "?prefix=t1-").await;
    assert!(!names(&page).contains(&"t1-b"), "{page}");
    s.stop().await;
}

fn awareness_frame(client_id: u64, clock: u64, state: &str) -> Vec<u8> {
    weaver_protocol::encode_awareness_message(&weaver_protocol::encode_awareness(&[
        weaver_protocol::AwarenessEntry {
            client_id,
            clock,
            state: state.into(),
        },
    ]))
}

async fn presence(addr: std::net::SocketAddr, room: &str) -> serde_json::Value {
    let (status, body) = http(addr, "GET", &format!("/api/rooms/{room}/awareness"), b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn presence_until(
    addr: std::net::SocketAddr,
    room: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let p = presence(addr, room).await;
        if pred(&p) {
            return p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "presence never matched: {p}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn presence_shows_connections_and_awareness_without_loading_or_pinning_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        idle_unload: std::time::Duration::from_millis(300),
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    // A room nobody is in is not loaded to answer.
    let p = presence(s.addr, "p1").await;
    assert_eq!(p, serde_json::json!({"connections": 0, "clients": []}));
    assert_eq!(s.handle.loaded_rooms(), 0);
    assert_eq!(
        http(s.addr, "GET", "/api/rooms/a%2F%2Fb/awareness", b"")
            .await
            .0,
        400
    );

    let mut ann = s.client("p1").await;
    ann.handshake().await;
    let mut bob = s.client("p1").await;
    bob.handshake().await;
    ann.send(&awareness_frame(
        7,
        1,
        r#"{"user":{"name":"ann"},"cursor":null}"#,
    ))
    .await;
    let p = presence_until(s.addr, "p1", |p| {
        p["clients"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(p["connections"], 2);
    assert_eq!(
        p["clients"][0],
        serde_json::json!({"client_id": 7, "clock": 1, "state": {"user": {"name": "ann"}, "cursor": null}})
    );
    // A removed state (Yjs sends `null`) leaves the list.
    ann.send(&awareness_frame(7, 2, "null")).await;
    presence_until(s.addr, "p1", |p| {
        p["clients"].as_array().unwrap().is_empty()
    })
    .await;

    ann.close().await;
    bob.close().await;
    presence_until(s.addr, "p1", |p| p["connections"] == 0).await;
    // Polling presence keeps asking the loaded, empty room; it still unloads when idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while s.handle.loaded_rooms() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "presence polls kept the room loaded"
        );
        presence(s.addr, "p1").await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn room_pages_interleaving_stored_and_open_rooms_cover_each_room_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let all: Vec<String> = (0..10).map(|i| format!("s-{i:02}")).collect();
    let mut open = Vec::new();
    for (i, room) in all.iter().enumerate() {
        if i % 2 == 0 {
            s.handle
                .apply_update(room, Writer::new(70 + i as u64).append(room), "test")
                .await
                .unwrap();
        } else {
            let mut c = s.client(room).await;
            c.handshake().await;
            open.push(c);
        }
    }
    // Noise outside the prefix on both sides.
    s.handle
        .apply_update("r-0", Writer::new(90).append("x"), "test")
        .await
        .unwrap();
    let mut t = s.client("t-0").await;
    t.handshake().await;
    for limit in [1, 3, 4, 10] {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let q = match &after {
                Some(a) => format!("?prefix=s-&limit={limit}&after={a}"),
                None => format!("?prefix=s-&limit={limit}"),
            };
            let (status, page) = list(s.addr, &q).await;
            assert_eq!(status, 200, "{page}");
            let names = names(&page);
            assert!(names.len() <= limit, "{page}");
            seen.extend(names.iter().map(|n| n.to_string()));
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, all, "limit {limit}");
    }
    s.stop().await;
}
