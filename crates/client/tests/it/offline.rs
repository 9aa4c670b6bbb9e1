//! Offline: the server stopped, the network cut, a process gone; edits are kept, pushed on
//! reconnect, and everyone converges.

use weaver_client::ConnectionState;

use crate::support::{self, Proxy, content, eventually, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_while_the_server_is_stopped_are_pushed_after_it_restarts() {
    let data = tempfile::tempdir().unwrap();
    let server = support::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::open(&proxy.url(), "room", da.path());
    a.transact(|t| t.add_block("b1", "text", "before"))
        .unwrap()
        .unwrap();
    synced(&a).await;

    server.stop().await;
    eventually("a offline", || a.state() != ConnectionState::Online).await;
    for i in 0..5 {
        a.transact(|t| t.insert_text("b1", 0, &format!("off{i} ")))
            .unwrap()
            .unwrap();
    }
    a.transact(|t| t.add_block("b2", "text", "offline block"))
        .unwrap()
        .unwrap();
    assert!(a.unsynced() > 0);

    let server = support::start(data.path()).await;
    proxy.point_to(server.addr);
    synced(&a).await;
    assert_eq!(a.state(), ConnectionState::Online);
    let b = support::open(&server.url(), "room", db.path());
    eventually("b has everything", || {
        b.to_json().unwrap() == a.to_json().unwrap()
    })
    .await;
    assert_eq!(content(&b, "b2").as_deref(), Some("offline block"));
    assert_eq!(server.json("room").await, a.to_json().unwrap());
    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_keeps_both_sides_editing_and_they_converge() {
    let data = tempfile::tempdir().unwrap();
    let server = support::start(data.path()).await;
    let proxy = Proxy::start(server.addr).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::open(&proxy.url(), "cut", da.path());
    let b = support::open(&server.url(), "cut", db.path());
    a.transact(|t| t.add_block("b1", "text", "base"))
        .unwrap()
        .unwrap();
    synced(&a).await;
    eventually("b sees b1", || content(&b, "b1").is_some()).await;

    proxy.cut();
    eventually("a offline", || a.state() != ConnectionState::Online).await;
    a.transact(|t| t.insert_text("b1", 0, "A-offline "))
        .unwrap()
        .unwrap();
    a.transact(|t| t.add_block("a2", "text", "from a"))
        .unwrap()
        .unwrap();
    b.transact(|t| {
        let n = t.content_len("b1")?;
        t.insert_text("b1", n, " B-online")
    })
    .unwrap()
    .unwrap();
    synced(&b).await;
    assert!(a.unsynced() > 0);
    assert!(content(&a, "b1").unwrap().contains("A-offline"));
    assert!(!content(&a, "b1").unwrap().contains("B-online"));

    proxy.resume();
    synced(&a).await;
    eventually("convergence", || {
        a.to_json().unwrap() == b.to_json().unwrap()
    })
    .await;
    assert_eq!(
        content(&a, "b1").as_deref(),
        Some("A-offline base B-online")
    );
    assert_eq!(server.json("cut").await, a.to_json().unwrap());
    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_process_on_the_same_directory_pushes_unsynced_edits() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: the edit is made offline.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("ws://{}", dead.local_addr().unwrap());
    drop(dead);
    let first = support::open(&dead_url, "later", dir.path());
    let id = first.client_id();
    first
        .transact(|t| t.add_block("kept", "text", "made offline"))
        .unwrap()
        .unwrap();
    assert_eq!(first.unsynced(), 1);
    // Dropped without close; what matters is what reached the disk before transact returned.
    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let server = support::start(data.path()).await;
    let second = support::open(&server.url(), "later", dir.path());
    assert_eq!(second.client_id(), id, "the replica keeps its client id");
    assert_eq!(second.unsynced(), 1, "unsynced survives the restart");
    synced(&second).await;
    assert_eq!(
        server.json("later").await["blocks"][0]["content"],
        "made offline"
    );
    second.close().await;
    server.stop().await;
}
