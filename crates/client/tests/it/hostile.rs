//! Hostile servers: garbage frames, oversized frames and silence drop the connection and the
//! client retries with backoff; it never panics and local edits keep working.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use weaver_client::{Client, ClientOptions, ConnectionState};

use crate::support::eventually;

/// A WebSocket server that answers each connection with `frames` (then stays silent) and
/// counts connections.
async fn fake_server(frames: Vec<Message>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let frames = frames.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                for f in frames {
                    if ws.send(f).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, count)
}

async fn check(frames: Vec<Message>) {
    let (url, count) = fake_server(frames).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::open(
        ClientOptions::new(url, "room", dir.path())
            .backoff(Duration::from_millis(20), Duration::from_millis(100))
            .handshake_timeout(Duration::from_millis(300))
            .max_frame_bytes(64 * 1024),
    )
    .unwrap();
    let mut state = client.watch_state();
    client
        .transact(|t| t.add_block("b", "text", "kept"))
        .unwrap()
        .unwrap();
    eventually("several reconnects", || count.load(Ordering::SeqCst) >= 3).await;
    assert!(state.borrow_and_update().clone() != ConnectionState::Online);
    assert_eq!(client.unsynced(), 1);
    assert_eq!(client.block("b").unwrap().unwrap().content, "kept");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_frames() {
    check(vec![Message::Binary(vec![9, 9, 9].into())]).await;
    check(vec![Message::Text("hello".into())]).await;
    // A step1 that claims a huge state vector, then an update that is not one.
    check(vec![
        Message::Binary(vec![0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f].into()),
        Message::Binary(vec![0, 2, 3, 1, 2, 3].into()),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_silence() {
    check(vec![Message::Binary(vec![0u8; 200 * 1024].into())]).await;
    check(Vec::new()).await;
}
