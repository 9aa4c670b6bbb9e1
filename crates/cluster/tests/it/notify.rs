//! Room-change webhooks in cluster mode: weaver-notify's cluster notifier over the durable
//! room feed and the KV ledger, a real nats-server and a real HTTP receiver on loopback.
//! A term ends without acknowledging what it did not deliver; the next term (a higher epoch)
//! sends that, skips what the ledger covers, and a stale term cannot write the ledger.
//! Each term holds the real `#notifier` lease; faults and overlapping terms: `notify_faults.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weaver_cluster::testing::{NatsServer, unique};
use weaver_cluster::{
    Lease, Leases, NotifyLedger, RoomFeed, RoomFeedConfig, RoomLog, RoomLogConfig,
};
use weaver_notify::{Ledger, LedgerError, Notifier, NotifyConfig, WebhookSecret};

use crate::support::{b, lease_config, leases, log_config, room, same_log};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver got, and what it answered.
#[derive(Debug)]
pub(crate) struct Hit {
    pub(crate) room: String,
    pub(crate) seq: u64,
    pub(crate) id: String,
    pub(crate) ok: bool,
}

/// Rooms the receiver answers 503 for.
pub(crate) type Blocked = Arc<Mutex<HashSet<String>>>;

/// Answers 503 for the rooms in `blocked`, 200 otherwise; every request's signature is
/// verified (a bad one fails the test).
pub(crate) async fn receiver(blocked: Blocked) -> (reqwest::Url, mpsc::UnboundedReceiver<Hit>) {
    slow_receiver(blocked, Duration::ZERO).await
}

/// As [`receiver`], answering each request only `delay` after it arrived (its hit is
/// reported on arrival: a sender that gives up meanwhile closes the connection).
pub(crate) async fn slow_receiver(
    blocked: Blocked,
    delay: Duration,
) -> (reqwest::Url, mpsc::UnboundedReceiver<Hit>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, raw: Bytes| {
            let (tx, blocked) = (tx.clone(), blocked.clone());
            async move {
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                weaver_auth::webhook::verify(
                    &[WebhookSecret::parse(SECRET).unwrap()],
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                    &raw,
                    now,
                    300,
                )
                .expect("a valid signature");
                let body: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                let room = body["room"].as_str().unwrap().to_owned();
                let ok = !blocked.lock().unwrap().contains(&room);
                let _ = tx.send(Hit {
                    seq: body["seq"].as_u64().unwrap(),
                    id: h("webhook-id").unwrap().to_owned(),
                    room,
                    ok,
                });
                tokio::time::sleep(delay).await;
                if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook").parse().unwrap(), rx)
}

pub(crate) fn config(url: reqwest::Url, debounce_ms: u64) -> NotifyConfig {
    let mut c = NotifyConfig::new(url);
    c.secret = Some(WebhookSecret::parse(SECRET).unwrap());
    c.debounce = Duration::from_millis(debounce_ms);
    c.max_wait = Duration::from_millis(debounce_ms * 5);
    c
}

/// The notifier role's lease bucket of a test (a long TTL: terms end when the test says).
pub(crate) async fn role(server: &NatsServer) -> Leases {
    leases(server, &lease_config(Duration::from_secs(30))).await
}

/// The `notifier` role's lease for a term, waiting (bounded: 20 s) for the last to expire.
pub(crate) async fn campaign(leases: &Leases, node: &str) -> Lease {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match leases.acquire("#notifier", node).await {
            Ok(lease) => return lease,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no notifier lease in time: {e}"),
        }
    }
}

/// What every notifier test sets up: a writer and the notifier's node on one fresh room log,
/// a ledger bucket, the role's lease bucket, and the given rooms taken over by the writer.
pub(crate) struct Fixture {
    pub(crate) server: Arc<NatsServer>,
    pub(crate) cfg: RoomLogConfig,
    pub(crate) writer: RoomLog,
    pub(crate) log: RoomLog,
    pub(crate) bucket: String,
    pub(crate) role: Leases,
}

impl Fixture {
    pub(crate) async fn new(rooms: &[&str]) -> Fixture {
        let server = NatsServer::shared();
        let cfg = log_config();
        let writer = same_log(&server, &cfg).await;
        let log = same_log(&server, &cfg).await;
        for r in rooms {
            writer.take_over(room(r), 1, "w".into()).await.unwrap();
        }
        let role = role(&server).await;
        Fixture {
            server,
            cfg,
            writer,
            log,
            bucket: unique("notify"),
            role,
        }
    }

    /// A term of `node` (once it holds the role) over the fixture's log and bucket.
    pub(crate) async fn term(&self, node: &str, feed: &RoomFeedConfig, cfg: NotifyConfig) -> Term {
        let lease = campaign(&self.role, node).await;
        Term::start(&self.log, feed, &self.bucket, lease, cfg).await
    }
}

/// One notifier term, holding the role's lease.
pub(crate) struct Term {
    pub(crate) notifier: Notifier,
    pub(crate) stop: CancellationToken,
    pub(crate) lease: Lease,
}

impl Term {
    /// Starts a term under `lease` (the stop token is the test's: the lease fencing does not
    /// stop the term by itself, as with a paused process).
    pub(crate) async fn start(
        log: &RoomLog,
        feed: &RoomFeedConfig,
        bucket: &str,
        lease: Lease,
        cfg: NotifyConfig,
    ) -> Term {
        let clock = lease.clock();
        let f = RoomFeed::open(log, feed, &clock).await.unwrap();
        let ledger = NotifyLedger::open(log, bucket, lease.epoch())
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let notifier = Notifier::start_cluster(cfg, f, ledger, clock, stop.clone()).unwrap();
        notifier.started().await;
        Term {
            notifier,
            stop,
            lease,
        }
    }

    /// Ends the term as a lost lease does: what was not delivered stays unacknowledged.
    pub(crate) async fn end(self) {
        self.stop.cancel();
        self.notifier.stop(Duration::from_secs(5)).await;
        let _ = self.lease.release().await;
    }
}

/// Collects hits until `done` holds for them (bounded: 20 s).
pub(crate) async fn until(
    rx: &mut mpsc::UnboundedReceiver<Hit>,
    all: &mut Vec<Hit>,
    done: impl Fn(&[Hit]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if done(all) {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(hit)) => all.push(hit),
            _ => panic!("webhooks not delivered in time; got {all:?}"),
        }
    }
}

/// Whether `seq` of `room` was delivered (answered 2xx).
pub(crate) fn delivered(all: &[Hit], room: &str, seq: u64) -> bool {
    all.iter().any(|h| h.ok && h.room == room && h.seq == seq)
}

/// Per room, the delivered seqs: strictly increasing (so none twice), webhook ids unique.
pub(crate) fn check_once_in_order(all: &[Hit]) -> HashMap<String, Vec<u64>> {
    let mut per_room: HashMap<String, Vec<u64>> = HashMap::new();
    let mut ids = HashSet::new();
    for h in all.iter().filter(|h| h.ok) {
        assert!(
            ids.insert(h.id.clone()),
            "{} delivered twice: {all:?}",
            h.id
        );
        let seqs = per_room.entry(h.room.clone()).or_default();
        assert!(
            seqs.last().is_none_or(|l| *l < h.seq),
            "room {} got seq {} after {seqs:?}",
            h.room,
            h.seq
        );
        seqs.push(h.seq);
    }
    per_room
}

pub(crate) async fn write(log: &RoomLog, name: &str, n: usize) {
    for i in 0..n {
        log.append(room(name), vec![b(&format!("{name}{i}"))])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_leader_change_neither_repeats_nor_loses_a_seq() {
    let fx = Fixture::new(&["a", "b", "z"]).await;
    let (writer, feed) = (&fx.writer, RoomFeedConfig::default());
    let blocked = Arc::new(Mutex::new(HashSet::from(["b".to_owned()])));
    let (url, mut rx) = receiver(blocked.clone()).await;
    let mut all = Vec::new();

    // Term 1: a is delivered; b is refused (503, retried) and so never acknowledged, while
    // a's later messages, behind b's in the stream, are delivered and acknowledged.
    let t1 = fx.term("n1", &feed, config(url.clone(), 100)).await;
    let epoch1 = t1.lease.epoch();
    write(writer, "a", 3).await;
    until(&mut rx, &mut all, |d| delivered(d, "a", 3)).await;
    write(writer, "b", 1).await;
    write(writer, "a", 2).await;
    // b was tried (and refused) too.
    until(&mut rx, &mut all, |d| {
        delivered(d, "a", 5) && d.iter().any(|h| h.room == "b" && !h.ok)
    })
    .await;
    t1.end().await;

    // Term 2 reads b's message again (and a's, which its ledger covers): b is delivered, a
    // not again; what is written now is announced too.
    blocked.lock().unwrap().clear();
    let t2 = fx.term("n2", &feed, config(url.clone(), 100)).await;
    assert!(t2.lease.epoch() > epoch1);
    until(&mut rx, &mut all, |d| delivered(d, "b", 1)).await;
    write(writer, "a", 1).await;
    until(&mut rx, &mut all, |d| delivered(d, "a", 6)).await;
    // A marker after everything: once it arrived, nothing else of the above is on its way.
    write(writer, "z", 1).await;
    until(&mut rx, &mut all, |d| delivered(d, "z", 1)).await;
    let per_room = check_once_in_order(&all);
    assert_eq!(per_room["a"].last(), Some(&6), "{all:?}");
    assert_eq!(per_room["b"], vec![1], "{all:?}");

    // Term 1's ledger is stale now: a write under its epoch is refused.
    let stale = NotifyLedger::open(&fx.log, &fx.bucket, epoch1)
        .await
        .unwrap();
    assert!(matches!(
        stale.record("a", 0, 7).await,
        Err(LedgerError::Superseded)
    ));
    t2.end().await;
}

#[tokio::test]
async fn a_restart_sends_what_was_not_delivered_but_never_history() {
    let fx = Fixture::new(&["old", "new", "z"]).await;
    let (writer, feed) = (&fx.writer, RoomFeedConfig::default());
    let (url, mut rx) = receiver(Arc::default()).await;
    let mut all = Vec::new();
    // History written before the notifier's first term: never announced.
    write(writer, "old", 2).await;

    // The first term waits out a long debounce and ends before sending `new`.
    let t1 = fx.term("n1", &feed, config(url.clone(), 60_000)).await;
    write(writer, "new", 1).await;
    t1.end().await;

    // The next term sends it at once; history stays unannounced.
    let t2 = fx.term("n2", &feed, config(url.clone(), 50)).await;
    until(&mut rx, &mut all, |d| delivered(d, "new", 1)).await;
    write(writer, "z", 1).await;
    until(&mut rx, &mut all, |d| delivered(d, "z", 1)).await;
    check_once_in_order(&all);
    assert!(!all.iter().any(|h| h.room == "old"), "{all:?}");
    t2.end().await;
}

#[tokio::test]
async fn a_deleted_and_recreated_room_gets_a_new_generation() {
    let fx = Fixture::new(&["d"]).await;
    let writer = &fx.writer;
    let (url, mut rx) = receiver(Arc::default()).await;
    let mut all = Vec::new();
    let t = fx
        .term("n1", &RoomFeedConfig::default(), config(url, 50))
        .await;
    write(writer, "d", 2).await;
    until(&mut rx, &mut all, |d| delivered(d, "d", 2)).await;
    writer.delete(room("d")).await.unwrap();
    writer.take_over(room("d"), 1, "w".into()).await.unwrap();
    write(writer, "d", 1).await;
    // Seqs continue after the tombstone; the generation moved on, so the id is new.
    until(&mut rx, &mut all, |d| delivered(d, "d", 3)).await;
    let last = all.iter().rfind(|h| h.ok).unwrap();
    assert_eq!(last.id, "msg_d_1_3", "{all:?}");
    assert_eq!(check_once_in_order(&all)["d"].last(), Some(&3));
    t.end().await;
}
