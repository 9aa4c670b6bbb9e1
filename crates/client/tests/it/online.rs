//! Online: two Rust clients and the relay converge; unsynced, synced, awareness, events.

use serde_json::json;
use weaver_client::{ClientEvent, ConnectionState};

use crate::support::{self, content, eventually, synced};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_converge_through_the_relay() {
    let data = tempfile::tempdir().unwrap();
    let server = support::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::open(&server.url(), "org.team/doc", da.path());
    let b = support::open(&server.url(), "org.team/doc", db.path());
    let mut events = a.subscribe();

    a.transact(|t| t.add_block("b1", "text", "hello"))
        .unwrap()
        .unwrap();
    assert!(a.unsynced() >= 1, "durable locally, not yet acknowledged");
    synced(&a).await;
    assert_eq!(a.unsynced(), 0);
    eventually("b sees b1", || {
        content(&b, "b1").as_deref() == Some("hello")
    })
    .await;

    // Concurrent edits of the same text from both sides.
    for i in 0..20 {
        a.transact(|t| t.insert_text("b1", 0, &format!("a{i} ")))
            .unwrap()
            .unwrap();
        b.transact(|t| {
            let n = t.content_len("b1")?;
            t.insert_text("b1", n, &format!(" b{i}"))
        })
        .unwrap()
        .unwrap();
    }
    synced(&a).await;
    synced(&b).await;
    eventually("convergence", || {
        a.to_json().unwrap() == b.to_json().unwrap()
    })
    .await;
    assert_eq!(server.json("org.team/doc").await, a.to_json().unwrap());
    let text = content(&a, "b1").unwrap();
    assert!(text.contains("a19 ") && text.contains(" b19"), "{text}");

    // Events: a local change, then the connection and unsynced counts were reported.
    let mut saw_change = false;
    while let Ok(ev) = events.try_recv() {
        if let ClientEvent::Changed(cs) = ev {
            saw_change |= cs.is_from(weaver_client::LOCAL_ORIGIN);
        }
    }
    assert!(saw_change);
    assert_eq!(a.state(), ConnectionState::Online);

    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awareness_reaches_the_other_client_and_leaves_on_close() {
    let data = tempfile::tempdir().unwrap();
    let server = support::start(data.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = support::open(&server.url(), "presence", da.path());
    let b = support::open(&server.url(), "presence", db.path());
    a.set_awareness(Some(&json!({"user": {"name": "ada"}})))
        .unwrap();
    let a_id = a.client_id();
    eventually("b sees a's state", || {
        b.peers()
            .iter()
            .any(|p| p.client_id == a_id && p.state["user"]["name"] == "ada")
    })
    .await;
    a.close().await;
    eventually("a's state removed", || b.peers().is_empty()).await;
    b.close().await;
    server.stop().await;
}
