//! The HTTP room API and the bridge-facing `RelayHandle` API.

use base64::Engine;
use weaver_protocol::encode_update;
use weaver_relay::{RelayConfig, UpdateOrigin, close_code};
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
    let e = events.recv().await.unwrap();
    assert_eq!(&*e.room, "r1");
    assert_eq!(e.update.as_ref(), u1.as_slice());
    assert_eq!(e.origin, UpdateOrigin::Internal("bridge".into()));

    let mut c = s.client("r1").await;
    assert_eq!(text_of(&c.handshake().await), "from bridge");
    let u2 = w.append("!");
    c.send(&encode_update(&u2)).await;
    let e = events.recv().await.unwrap();
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
            .apply_update("bad/name", u1, "bridge")
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
    let mut deletions = s.handle.subscribe_deletions();
    let w = Writer::new(61);
    s.handle
        .apply_update("doomed", w.append("x"), "test")
        .await
        .unwrap();
    s.handle.delete_room("doomed").await.unwrap();
    let name = tokio::time::timeout(WAIT, deletions.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*name, "doomed");
    // Published after the content is gone: a subscriber reading the room sees it empty.
    assert_eq!(text_of(&s.handle.room_state("doomed").await.unwrap()), "");
    assert!(s.handle.stored_rooms().await.unwrap().is_empty());
    assert!(deletions.try_recv().is_err(), "one notice per deletion");
    s.stop().await;
}
