//! Room-change webhooks through a real relay (redb on disk) and a real HTTP receiver on
//! loopback that answers with a scripted sequence of statuses.
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weaver_notify::{Notifier, NotifyConfig, WebhookSecret};
use weaver_relay::{Relay, RelayConfig};
use yrs::{Doc, GetString, Text, Transact};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug)]
struct Hit {
    headers: HeaderMap,
    body: serde_json::Value,
    raw: Bytes,
}

/// An HTTP server that records every request and answers with `script` (then 200 forever).
async fn receiver(script: Vec<u16>) -> (reqwest::Url, mpsc::UnboundedReceiver<Hit>) {
    slow_receiver(script, Duration::ZERO).await
}

/// [`receiver`] that takes `delay` to answer each request.
async fn slow_receiver(
    script: Vec<u16>,
    delay: Duration,
) -> (reqwest::Url, mpsc::UnboundedReceiver<Hit>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, raw: Bytes| {
            let tx = tx.clone();
            let script = script.clone();
            async move {
                let body = serde_json::from_slice(&raw).unwrap();
                let _ = tx.send(Hit { headers, body, raw });
                tokio::time::sleep(delay).await;
                let status = script.lock().unwrap().next().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook").parse().unwrap(), rx)
}

struct Node {
    relay: Option<Relay>,
    notifier: Option<Notifier>,
    stop: CancellationToken,
}

impl Node {
    /// A relay, and a notifier if `cfg` says so, started: its start-up scan done, so what is
    /// written from now on is not part of the baseline (an event, not a sleep).
    async fn start(dir: &Path, cfg: Option<NotifyConfig>) -> Node {
        let db = weaver_relay::open_database(dir).unwrap();
        let store = weaver_relay::RedbRoomStore::start(db.clone(), Default::default()).unwrap();
        let relay = Relay::start(store, RelayConfig::default(), CancellationToken::new()).unwrap();
        let stop = CancellationToken::new();
        let notifier = cfg.map(|c| Notifier::start(c, db, relay.handle(), stop.clone()).unwrap());
        if let Some(n) = &notifier {
            n.started().await;
        }
        Node {
            relay: Some(relay),
            notifier,
            stop,
        }
    }

    async fn write(&self, room: &str, client: u64, text: &str) {
        let doc = Doc::with_client_id(client);
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        t.insert(&mut txn, 0, text);
        let update = txn.encode_update_v1();
        drop(txn);
        assert_eq!(t.get_string(&doc.transact()), text);
        let relay = self.relay.as_ref().unwrap().handle();
        relay.apply_update(room, update, "test").await.unwrap();
    }

    async fn stop(mut self) {
        self.stop.cancel();
        if let Some(n) = self.notifier.take() {
            n.stop(Duration::from_secs(10)).await;
        }
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
    }
}

fn config(url: reqwest::Url, debounce_ms: u64, max_wait_ms: u64) -> NotifyConfig {
    let mut c = NotifyConfig::new(url);
    c.secret = Some(WebhookSecret::parse(SECRET).unwrap());
    c.prefix = "n-".into();
    c.debounce = Duration::from_millis(debounce_ms);
    c.max_wait = Duration::from_millis(max_wait_ms);
    c
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Hit>, within: Duration) -> Hit {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no notification in time")
        .unwrap()
}

async fn none(rx: &mut mpsc::UnboundedReceiver<Hit>, for_: Duration) {
    if let Ok(Some(hit)) = tokio::time::timeout(for_, rx.recv()).await {
        panic!("unexpected notification: {}", hit.body);
    }
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers.get(name).unwrap().to_str().unwrap()
}

fn verify(hit: &Hit) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    weaver_auth::webhook::verify(
        &[WebhookSecret::parse(SECRET).unwrap()],
        Some(header(hit, "webhook-id")),
        Some(header(hit, "webhook-timestamp")),
        Some(header(hit, "webhook-signature")),
        &hit.raw,
        now,
        300,
    )
    .unwrap();
}

#[tokio::test]
async fn a_burst_is_one_signed_delivery_retried_under_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hits) = receiver(vec![503, 200, 400]).await;
    // A debounce well above the time between two (fsync'd) writes, even on a loaded machine.
    let node = Node::start(dir.path(), Some(config(url, 1000, 5000))).await;
    for i in 0..10 {
        node.write("n-a", 100 + i, "x").await;
    }
    node.write("other", 1, "outside the prefix").await;

    let first = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(first.body["type"], "room.updated");
    assert_eq!(
        (&first.body["room"], &first.body["seq"]),
        (&"n-a".into(), &10.into())
    );
    verify(&first);
    // 503 → retried (backoff 0.5–1 s) with the same id, so the receiver can deduplicate.
    let second = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(header(&second, "webhook-id"), header(&first, "webhook-id"));
    assert_eq!(second.body["seq"], 10);
    verify(&second);
    // Delivered: nothing more, and nothing for the room outside the prefix.
    none(&mut hits, Duration::from_millis(600)).await;

    // A final 4xx is not retried; the next change is announced again.
    node.write("n-b", 1, "y").await;
    let refused = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(
        (&refused.body["room"], &refused.body["seq"]),
        (&"n-b".into(), &1.into())
    );
    none(&mut hits, Duration::from_millis(1500)).await;
    node.write("n-b", 2, "y").await;
    let again = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(
        (&again.body["room"], &again.body["seq"]),
        (&"n-b".into(), &2.into())
    );
    node.stop().await;
}

#[tokio::test]
async fn max_wait_bounds_the_delay_under_continuous_edits() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hits) = receiver(vec![]).await;
    let node = Node::start(dir.path(), Some(config(url, 1500, 1500))).await;
    // One edit every 100 ms for 3 s: the 1.5 s debounce alone would wait until the end; the
    // 1.5 s max wait (counted from the first edit) sends one in the middle.
    let mut during = None;
    for i in 0..30 {
        node.write("n-busy", 200 + i, "z").await;
        if during.is_none()
            && let Ok(hit) = hits.try_recv()
        {
            during = Some((i, hit));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (i, hit) = during.expect("no notification while the room kept changing");
    assert!(
        i < 25,
        "first notification only after edit {i}: {}",
        hit.body
    );
    // After the edits stop, the last seq is announced.
    let mut last = 0;
    while last < 30 {
        last = next(&mut hits, Duration::from_secs(10)).await.body["seq"]
            .as_u64()
            .unwrap();
    }
    node.stop().await;
}

#[tokio::test]
async fn a_restart_sends_what_was_not_delivered_but_never_history() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hits) = receiver(vec![]).await;
    // History written before notifications were turned on.
    let node = Node::start(dir.path(), None).await;
    node.write("n-old", 1, "history").await;
    node.stop().await;

    // First start with notifications: history is recorded, not announced. A change then
    // waits out a long debounce and the process stops before sending it.
    let node = Node::start(dir.path(), Some(config(url.clone(), 60_000, 60_000))).await;
    node.write("n-new", 2, "pending").await;
    none(&mut hits, Duration::from_millis(500)).await;
    node.stop().await;

    // The restart finds n-new's seq ahead of what was delivered and sends it at once.
    let node = Node::start(dir.path(), Some(config(url.clone(), 60_000, 60_000))).await;
    let hit = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(
        (&hit.body["room"], &hit.body["seq"]),
        (&"n-new".into(), &1.into())
    );
    verify(&hit);
    none(&mut hits, Duration::from_millis(500)).await;
    node.stop().await;

    // Delivered and recorded: another restart sends nothing.
    let node = Node::start(dir.path(), Some(config(url, 60_000, 60_000))).await;
    none(&mut hits, Duration::from_millis(800)).await;
    node.stop().await;
}

/// CPU seconds this thread has used (user + system). The test's runtime is single-threaded,
/// so this is the notifier's loop, and not the other tests running in parallel.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test]
async fn rooms_waiting_for_a_delivery_slot_do_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hits) = slow_receiver(vec![], Duration::from_millis(1500)).await;
    let mut cfg = config(url, 50, 50);
    cfg.concurrency = 1;
    let node = Node::start(dir.path(), Some(cfg)).await;
    for (i, room) in ["n-1", "n-2", "n-3"].into_iter().enumerate() {
        node.write(room, 300 + i as u64, "w").await;
    }
    // One delivery in flight for 1.5 s, two rooms due and waiting for the slot.
    next(&mut hits, Duration::from_secs(10)).await;
    let before = cpu_secs();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let used = cpu_secs() - before;
    assert!(
        used < 0.25,
        "{used:.2} s of CPU in 1.2 s while waiting for a slot"
    );
    // And the waiting rooms are delivered one after another.
    next(&mut hits, Duration::from_secs(10)).await;
    next(&mut hits, Duration::from_secs(10)).await;
    node.stop().await;
}

#[tokio::test]
async fn a_deleted_and_recreated_room_gets_new_webhook_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut hits) = receiver(vec![]).await;
    let node = Node::start(dir.path(), Some(config(url, 100, 1000))).await;
    node.write("n-d", 1, "first life").await;
    let first = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(first.body["seq"], 1);
    assert_eq!(header(&first, "webhook-id"), "msg_n-d_0_1");

    let relay = node.relay.as_ref().unwrap().handle();
    relay.delete_room("n-d").await.unwrap();
    node.write("n-d", 2, "second life").await;
    // Its seqs restarted at 1: a receiver deduplicating on the id must not drop this one.
    let second = next(&mut hits, Duration::from_secs(10)).await;
    assert_eq!(second.body["seq"], 1);
    assert_eq!(header(&second, "webhook-id"), "msg_n-d_1_1");
    verify(&second);
    none(&mut hits, Duration::from_millis(400)).await;
    node.stop().await;
}
