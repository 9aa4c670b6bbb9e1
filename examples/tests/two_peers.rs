//! Runs the two_peers example's logic against the real relay in-process on 127.0.0.1:0 (a
//! temp redb), so the example cannot rot; also checks what the relay stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use weaver_doc::Workspace;
use weaver_relay::{Relay, RelayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_sync_through_an_in_process_relay() {
    let dir = tempfile::tempdir().unwrap();
    let db = weaver_relay::open_database(dir.path()).unwrap();
    let shutdown = CancellationToken::new();
    let store = weaver_relay::RedbRoomStore::start(db, Default::default()).unwrap();
    let relay = Relay::start(store, RelayConfig::default(), shutdown.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(weaver_relay::serve(
        listener,
        relay.router(),
        weaver_relay::HttpLimits::default(),
        shutdown.clone().cancelled_owned(),
    ));
    let url = format!("ws://{addr}");

    let mut lines = Vec::new();
    let (seen_by_b, seen_by_a) = weaver_examples::two_peers(
        &url,
        "example-room",
        Duration::from_secs(10),
        &mut |l: &str| lines.push(l.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(seen_by_b.content, "hello from peer A");
    assert_eq!(seen_by_a.content, "hello back from peer B");
    assert!(
        lines.iter().any(|l| l.starts_with("B sees from-a-")),
        "{lines:?}"
    );

    // Both blocks are durable in the relay, and a third peer joining later gets them.
    let stored =
        Workspace::from_update_v1(&relay.handle().room_state("example-room").await.unwrap())
            .unwrap();
    assert_eq!(stored.blocks().unwrap().len(), 2);
    let mut c = weaver_examples::Peer::connect(&url, "example-room", "peer-c")
        .await
        .unwrap();
    c.handshake(Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.ws.blocks().unwrap().len(), 2);
    c.close().await;

    // A second run in the same room adds two more blocks (ids are unique per run).
    weaver_examples::two_peers(&url, "example-room", Duration::from_secs(10), &mut |_| {})
        .await
        .unwrap();
    let stored =
        Workspace::from_update_v1(&relay.handle().room_state("example-room").await.unwrap())
            .unwrap();
    assert_eq!(stored.blocks().unwrap().len(), 4);

    shutdown.cancel();
    relay.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
