//! `GET /api/rooms/{room}/changes`: the Server-Sent Events change feed, read over real TCP.

use std::time::Duration;

use base64::Engine;
use weaver_auth::{Claims, Permission, Scope};
use weaver_relay::{AuthConfig, RelayConfig, parse_auth_key};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, ReadTxn, Transact, Update};

use crate::support::*;

/// A replica built only from what the feed sent.
struct Mirror {
    doc: yrs::Doc,
}

impl Mirror {
    fn new() -> Mirror {
        Mirror {
            doc: yrs::Doc::new(),
        }
    }

    fn apply(&self, update: &[u8]) {
        self.doc
            .transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
    }

    fn text(&self) -> String {
        let t = self.doc.get_or_insert_text("t");
        t.get_string(&self.doc.transact())
    }
}

#[tokio::test]
async fn the_feed_sends_the_state_then_every_committed_update_from_every_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let w = Writer::new(71);
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/f1/update", &w.append("stored "))
            .await
            .0,
        204
    );
    let (status, feed) = sse(s.addr, "/api/rooms/f1/changes", None).await;
    assert_eq!(status, 200);
    let mut feed = feed.unwrap();
    let mirror = Mirror::new();
    mirror.apply(&feed.next_update("sync").await);
    assert_eq!(mirror.text(), "stored ");

    // A WebSocket client's update, an HTTP write and an in-process write, in this order.
    let mut ws = s.client("f1").await;
    ws.handshake().await;
    let from_ws = w.append("ws ");
    ws.send(&weaver_protocol::encode_update(&from_ws)).await;
    // The echo means it is committed; the feed must carry it too.
    ws.recv_until(|f| f == weaver_protocol::encode_update(&from_ws).as_slice())
        .await;
    let from_http = w.append("http ");
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/f1/update", &from_http)
            .await
            .0,
        204
    );
    let from_handle = w.append("bridge");
    s.handle
        .apply_update("f1", from_handle.clone(), "bridge")
        .await
        .unwrap();
    for expected in [&from_ws, &from_http, &from_handle] {
        assert_eq!(&feed.next_update("update").await, expected);
    }
    let mirror_sv = mirror.doc.transact().state_vector();
    for u in [&from_ws, &from_http, &from_handle] {
        mirror.apply(u);
    }
    assert_eq!(mirror.text(), "stored ws http bridge");
    let stored = s.handle.room_state("f1").await.unwrap();
    assert_eq!(text_of(&stored), mirror.text());
    assert_ne!(mirror_sv, mirror.doc.transact().state_vector());
    // Updates of other rooms never reach this feed.
    s.handle
        .apply_update("other", Writer::new(72).append("x"), "test")
        .await
        .unwrap();
    let last = w.append("!");
    s.handle
        .apply_update("f1", last.clone(), "test")
        .await
        .unwrap();
    assert_eq!(feed.next_update("update").await, last);
    s.stop().await;
}

#[tokio::test]
async fn sv_limits_the_first_event_to_what_the_consumer_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    let w = Writer::new(73);
    let first = w.append("known ");
    s.handle.apply_update("f2", first, "test").await.unwrap();
    let sv = w.doc.transact().state_vector().encode_v1();
    s.handle
        .apply_update("f2", w.append("new"), "test")
        .await
        .unwrap();

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sv);
    let (status, feed) = sse(s.addr, &format!("/api/rooms/f2/changes?sv={b64}"), None).await;
    assert_eq!(status, 200);
    let diff = feed.unwrap().next_update("sync").await;
    let whole = s.handle.room_state("f2").await.unwrap();
    assert!(
        diff.len() < whole.len(),
        "{} vs {}",
        diff.len(),
        whole.len()
    );
    // Applied on top of what the consumer had, the diff gives the whole text.
    let mirror = Mirror::new();
    mirror.apply(&Writer::new(73).append("known "));
    mirror.apply(&diff);
    assert_eq!(mirror.text(), "known new");

    // The whole state vector: nothing is lacking.
    let full = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(w.doc.transact().state_vector().encode_v1());
    let (_, feed) = sse(s.addr, &format!("/api/rooms/f2/changes?sv={full}"), None).await;
    assert_eq!(feed.unwrap().next_update("sync").await, vec![0, 0]);

    // Bad input is an ordinary error before any stream starts.
    let (status, body) = sse(s.addr, "/api/rooms/f2/changes?sv=!!", None).await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body.err().unwrap()).contains("base64url"));
    let not_sv = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xff, 0xff]);
    let (status, _) = sse(s.addr, &format!("/api/rooms/f2/changes?sv={not_sv}"), None).await;
    assert_eq!(status, 400);
    let (status, _) = sse(s.addr, "/api/rooms/%00bad/changes", None).await;
    assert_eq!(status, 400);
    s.stop().await;
}

#[tokio::test]
async fn the_feed_ends_when_the_room_is_deleted_or_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), RelayConfig::default()).await;
    s.handle
        .apply_update("doomed", Writer::new(74).append("x"), "test")
        .await
        .unwrap();
    let (_, doomed) = sse(s.addr, "/api/rooms/doomed/changes", None).await;
    let mut doomed = doomed.unwrap();
    assert_eq!(text_of(&doomed.next_update("sync").await), "x");
    let (_, kept) = sse(s.addr, "/api/rooms/kept/changes", None).await;
    let mut kept = kept.unwrap();
    assert_eq!(kept.next_update("sync").await, vec![0, 0]);

    assert_eq!(
        http(s.addr, "DELETE", "/api/rooms/doomed", b"").await.0,
        204
    );
    assert_eq!(doomed.expect_closed().await, "deleted");

    // Stopping the server ends open feeds with a reason instead of hanging the shutdown.
    let stopping = tokio::spawn(s.stop());
    assert_eq!(kept.expect_closed().await, "shutdown");
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_feed_does_not_keep_its_room_loaded_and_follows_it_across_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        idle_unload: Duration::from_millis(100),
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let w = Writer::new(75);
    s.handle
        .apply_update("idle", w.append("a"), "test")
        .await
        .unwrap();
    let (_, feed) = sse(s.addr, "/api/rooms/idle/changes", None).await;
    let mut feed = feed.unwrap();
    assert_eq!(text_of(&feed.next_update("sync").await), "a");
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.handle.loaded_rooms() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the room stayed loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = w.append("b");
    s.handle
        .apply_update("idle", b.clone(), "test")
        .await
        .unwrap();
    assert_eq!(feed.next_update("update").await, b);
    s.stop().await;
}

#[tokio::test]
async fn a_feed_that_cannot_keep_up_is_ended_not_silently_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        conn_queue_frames: 4,
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    // A small receive buffer that is never read: the server's writes stall, the feed's queue
    // fills (4 events) and the feed is cut off.
    let (_, feed) = sse(s.addr, "/api/rooms/slow/changes", Some(4096)).await;
    let mut feed = feed.unwrap();
    let w = Writer::new(76);
    let chunk = "y".repeat(64 * 1024);
    for _ in 0..150 {
        s.handle
            .apply_update("slow", w.append(&chunk), "test")
            .await
            .unwrap();
    }
    let mirror = Mirror::new();
    mirror.apply(&feed.next_update("sync").await);
    let mut updates = 0;
    let reason = loop {
        let ev = feed
            .next()
            .await
            .expect("the stream ended without a closed event");
        match ev.event.as_str() {
            "update" => {
                updates += 1;
                mirror.apply(
                    &base64::engine::general_purpose::STANDARD
                        .decode(ev.data)
                        .unwrap(),
                );
            }
            "closed" => break serde_json::from_str::<serde_json::Value>(&ev.data).unwrap(),
            other => panic!("unexpected event {other}"),
        }
    };
    assert_eq!(reason["reason"], "lagged", "{reason}");
    assert!(
        updates < 150,
        "{updates} updates: the feed never fell behind"
    );
    assert!(feed.next().await.is_none());
    // What it did get is a consistent prefix; resuming with its state vector gets the rest.
    let sv = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(mirror.doc.transact().state_vector().encode_v1());
    let (_, resumed) = sse(s.addr, &format!("/api/rooms/slow/changes?sv={sv}"), None).await;
    mirror.apply(&resumed.unwrap().next_update("sync").await);
    assert_eq!(mirror.text(), chunk.repeat(150));
    s.stop().await;
}

#[tokio::test]
async fn feeds_are_limited_and_need_a_token_that_ends_them_when_it_expires() {
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let key = parse_auth_key(KEY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        max_change_feeds: 1,
        auth: AuthConfig {
            key: Some(key.clone()),
            ..AuthConfig::default()
        },
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |room: &str, expires_at: u64| {
        key.mint(&Claims {
            scope: Scope::Room(room.into()),
            permission: Permission::Read,
            expires_at,
            admin: false,
        })
    };
    assert_eq!(sse(s.addr, "/api/rooms/t/changes", None).await.0, 401);
    let other = token("not-t", now + 600);
    assert_eq!(
        sse(s.addr, &format!("/api/rooms/t/changes?token={other}"), None)
            .await
            .0,
        403
    );
    // A read token is enough; this one expires within two seconds.
    let short = token("t", now + 2);
    let (status, feed) = sse(s.addr, &format!("/api/rooms/t/changes?token={short}"), None).await;
    assert_eq!(status, 200);
    let mut feed = feed.unwrap();
    feed.next_update("sync").await;
    // The one feed allowed is open.
    let long = token("t", now + 600);
    let (status, body) = sse(s.addr, &format!("/api/rooms/t/changes?token={long}"), None).await;
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body.err().unwrap()).contains("change feed limit"));
    assert_eq!(feed.expect_closed().await, "token_expired");
    // The ended feed's slot is free again.
    let (status, again) = sse(s.addr, &format!("/api/rooms/t/changes?token={long}"), None).await;
    assert_eq!(status, 200);
    drop(again);
    s.stop().await;
}
