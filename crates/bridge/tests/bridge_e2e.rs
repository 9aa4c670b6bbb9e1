//! The whole bridge against real parts: a real redb file, the in-memory document host with
//! real yrs replicas on both sides, real HTTP (the fake external API and the bridge's own
//! router on loopback). Each test adds entries as a client would and watches another replica
//! see `processing` then `done`/`error`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::fake_api::FakeApi;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weaver_bridge::webhook::WebhookSecret;
use weaver_bridge::{
    Bridge, BridgeConfig, BridgeHandle, DocumentHost, HostEvent, MemoryHost, Registry,
};
use weaver_doc::{Change, EntryView, Status, Workspace};

type Seen = Arc<Mutex<Vec<(String, u64, Status)>>>;

const SECRET_B64: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

struct Rig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    host: MemoryHost,
    bridge: Option<(BridgeHandle, CancellationToken)>,
    addr: SocketAddr,
    cfg: String,
}

fn env(k: &str) -> Option<String> {
    match k {
        "FAKE_SECRET" => Some(format!("whsec_{SECRET_B64}")),
        "FAKE_TOKEN" => Some("t0ken".into()),
        _ => None,
    }
}

impl Rig {
    async fn new(cfg: &str) -> Rig {
        Self::with_capacity(cfg, 4096).await
    }

    async fn with_capacity(cfg: &str, capacity: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weaver.redb");
        let mut rig = Rig {
            _dir: dir,
            path,
            host: MemoryHost::new(capacity),
            bridge: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            cfg: cfg.to_owned(),
        };
        rig.start().await;
        rig
    }

    async fn start(&mut self) {
        let cfg = BridgeConfig::from_toml(&self.cfg).unwrap();
        let registry = Registry::from_config_with_env(&cfg, &env).unwrap();
        // Retry opening: the previous incarnation's handle may still be closing.
        let db = {
            let mut n = 0;
            loop {
                match redb::Database::create(&self.path) {
                    Ok(db) => break db,
                    Err(e) if n < 100 => {
                        n += 1;
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        };
        let shutdown = CancellationToken::new();
        let handle = Bridge::start_with_registry(
            cfg,
            registry,
            Arc::new(db),
            Arc::new(self.host.clone()),
            shutdown.clone(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = handle.router();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { sd.cancelled().await })
                .await;
        });
        self.bridge = Some((handle, shutdown));
    }

    /// Simulates a crash: stop every bridge task abruptly (in-flight calls are dropped).
    async fn crash(&mut self) {
        if let Some((h, sd)) = self.bridge.take() {
            sd.cancel();
            h.join().await;
            drop(h);
        }
        // Give the HTTP server task time to release the port and the db handle.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn handle(&self) -> &BridgeHandle {
        &self.bridge.as_ref().unwrap().0
    }

    fn url(&self, p: &str) -> String {
        format!("http://{}{}", self.addr, p)
    }

    /// A client replica writes: sync from the host, run `f`, send the update.
    fn client_write(&self, room: &str, f: impl FnOnce(&mut weaver_doc::WriteTxn<'_>)) {
        let ws = Workspace::new();
        ws.apply_update_v1(&self.host.state(room).unwrap(), "load")
            .unwrap();
        let ((), update) = ws.transact("client", f).unwrap();
        if !update.is_empty() {
            self.host.apply(room, &update, "client").unwrap();
        }
    }

    fn add_entry(&self, room: &str, block: &str, content: &str, index: &str) {
        self.client_write(room, |t| {
            if !t.has_block(block) {
                t.add_block(block, "text", content).unwrap();
            }
            t.request_index(block, index, &json!({"dim": 3})).unwrap();
        });
    }

    fn entry(&self, room: &str, block: &str, index: &str) -> Option<EntryView> {
        let ws = Workspace::from_update_v1(&self.host.state(room).unwrap()).unwrap();
        ws.block(block)
            .unwrap()
            .and_then(|b| b.entry(index).cloned())
    }

    async fn wait_entry(
        &self,
        room: &str,
        block: &str,
        index: &str,
        what: &str,
        pred: impl Fn(&EntryView) -> bool,
    ) -> EntryView {
        let start = Instant::now();
        loop {
            if let Some(e) = self.entry(room, block, index)
                && pred(&e)
            {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}; entry = {:?}",
                self.entry(room, block, index)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Another replica following the host's broadcasts, recording every effective status it saw.
fn watch(host: &MemoryHost, room: &str) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ws = Workspace::new();
    ws.apply_update_v1(&host.state(room).unwrap(), "load")
        .unwrap();
    let s2 = seen.clone();
    let sub = ws
        .observe(move |cs| {
            for c in &cs.changes {
                if let Change::StatusChanged {
                    index_name,
                    attempt,
                    status,
                    ..
                } = c
                {
                    s2.lock()
                        .unwrap()
                        .push((index_name.clone(), *attempt, *status));
                }
            }
        })
        .unwrap();
    let mut stream = DocumentHost::subscribe(host);
    let room = room.to_owned();
    tokio::spawn(async move {
        let _sub = sub;
        while let Some(ev) = stream.next().await {
            if let HostEvent::Update {
                room: r, update, ..
            } = ev
                && r == room
            {
                ws.apply_update_v1(&update, "remote").unwrap();
            }
        }
    });
    seen
}

fn statuses(seen: &Seen, index: &str) -> Vec<(u64, Status)> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(i, _, _)| i == index)
        .map(|(_, a, s)| (*a, *s))
        .collect()
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn post_json(url: &str) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn http_cfg(api: &FakeApi, path: &str, extra: &str) -> String {
    format!(
        r#"
[retry]
max_attempts = 3
initial_interval_ms = 50
max_interval_ms = 200
lease_ms = 3000
[debounce]
quiet_ms = 200
max_wait_ms = 1000
[routes]
search = "ext"
[[integrations]]
name = "ext"
kind = "http"
url = "{url}"
headers = {{ Authorization = "Bearer ${{FAKE_TOKEN}}" }}
timeout_ms = 1500
webhook_secrets = ["FAKE_SECRET"]
{extra}
"#,
        url = api.url(path)
    )
}

fn secret() -> WebhookSecret {
    WebhookSecret::from_bytes(
        &base64::engine::general_purpose::STANDARD
            .decode(SECRET_B64)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_integration_end_to_end() {
    let rig = Rig::new("").await;
    rig.host
        .apply(
            "room1",
            &Workspace::new().encode_state_v1().unwrap(),
            "client",
        )
        .unwrap();
    let seen = watch(&rig.host, "room1");
    rig.add_entry("room1", "b1", "para one\n\npara two", "search");
    let e = rig
        .wait_entry("room1", "b1", "search", "done", |e| {
            e.status == Status::Done
        })
        .await;
    assert_eq!(e.attempt, 1);
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 2);
    assert!(e.api_call_id.is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = statuses(&seen, "search");
    assert_eq!(st.first(), Some(&(1, Status::NotStarted)));
    assert!(st.contains(&(1, Status::Processing)), "{st:?}");
    assert_eq!(st.last(), Some(&(1, Status::Done)));
    // The API shows the call and its event log.
    let (code, body) = get_json(&rig.url("/api/calls?room=room1")).await;
    assert_eq!(code, 200);
    let calls = body["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["status"], "completed");
    assert_eq!(calls[0]["integration"], "local");
    let id = calls[0]["id"].as_str().unwrap();
    let (code, one) = get_json(&rig.url(&format!("/api/calls/{id}"))).await;
    assert_eq!(code, 200);
    let types: Vec<&str> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "created",
            "claimed",
            "initialized",
            "processing",
            "completed"
        ]
    );
    assert_eq!(one["events"][0]["seq"], 1);
    assert_eq!(get_json(&rig.url("/api/calls/nope")).await.0, 400);
    assert_eq!(
        get_json(&rig.url("/api/calls/0193a8f0-0000-7000-8000-000000000000"))
            .await
            .0,
        404
    );
    assert_eq!(get_json(&rig.url("/api/calls?status=bogus")).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sync_api() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/sync", "")).await;
    rig.add_entry("r", "b", "hello\n\nworld\n\n!", "search");
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 3);
    assert_eq!(e.result.as_ref().unwrap()["index_name"], "search");
    assert_eq!(api.requests(), 1);
    let keys = api.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys.keys().next().unwrap().starts_with("weaver-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_async_completed_by_webhook() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/async?delay_ms=200", "")).await;
    api.set_webhook(&rig.url("/api/webhooks/ext"), secret());
    let seen = watch(&rig.host, "r");
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    assert_eq!(api.webhooks_sent(), 1);
    assert_eq!(api.requests(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = statuses(&seen, "search");
    assert!(st.contains(&(1, Status::Processing)), "{st:?}");
    let (_, body) = get_json(&rig.url("/api/calls?room=r")).await;
    assert!(
        body["calls"][0]["external_id"]
            .as_str()
            .unwrap()
            .starts_with("job-")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_async_webhook_before_initialized_is_parked() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/async?early=1", "")).await;
    api.set_webhook(&rig.url("/api/webhooks/ext"), secret());
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    assert_eq!(api.webhooks_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_async_completed_by_polling() {
    let api = FakeApi::start().await;
    let extra = format!(
        "status_url = \"{}\"\npoll_interval_ms = 100",
        api.url("/jobs/{external_id}")
    );
    let rig = Rig::new(&http_cfg(&api, "/async?delay_ms=300", &extra)).await;
    // No webhook target: only polling can finish the job.
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    assert_eq!(api.webhooks_sent(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_failed_visible_and_manual_retry() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/fail/503", "")).await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(e.error.as_deref().unwrap().contains("503"), "{e:?}");
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("gave up after 3 tries"),
        "{e:?}"
    );
    assert_eq!(api.requests(), 3);
    assert_eq!(
        api.keys().len(),
        1,
        "every retry of one attempt carries the same key"
    );
    // Manual retry = a new attempt with a new call (and key).
    let (_, body) = get_json(&rig.url("/api/calls?room=r&status=failed")).await;
    let id = body["calls"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        post_json(&rig.url(&format!("/api/calls/{id}/refresh")))
            .await
            .0,
        200
    );
    let (code, r) = post_json(&rig.url(&format!("/api/calls/{id}/retry"))).await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(r["call"]["attempt"], 2);
    rig.wait_entry("r", "b", "search", "attempt 2 error", |e| {
        e.attempt == 2 && e.status == Status::Error
    })
    .await;
    assert_eq!(api.keys().len(), 2);
    // Retrying the old attempt again is refused: a newer one exists.
    assert_eq!(
        post_json(&rig.url(&format!("/api/calls/{id}/retry")))
            .await
            .0,
        409
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_tried_once() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/fail/422", "")).await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(e.error.as_deref().unwrap().contains("422"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_then_success() {
    let api = FakeApi::start().await;
    let rig = Rig::new(
        &http_cfg(&api, "/fail/429?times=1&retry_after=1", "")
            .replace("max_interval_ms = 200", "max_interval_ms = 5000"),
    )
    .await;
    let t0 = Instant::now();
    rig.add_entry("r", "b", "text", "search");
    rig.wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 honoured"
    );
    assert_eq!(api.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_call_resumes_with_same_key() {
    let api = FakeApi::start().await;
    let mut rig = Rig::new(&http_cfg(&api, "/slow?ms=800", "")).await;
    rig.add_entry("r", "b", "text", "search");
    // Wait until the external API received the request, then "kill" the bridge.
    let t0 = Instant::now();
    while api.requests() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.crash().await;
    rig.start().await;
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.attempt, 1);
    assert!(api.requests() >= 2);
    assert_eq!(
        api.keys().len(),
        1,
        "one idempotency key for the attempt across the crash"
    );
    // Exactly one done record was written for the attempt.
    let calls = rig.handle().outbox().list(&Default::default()).unwrap();
    assert_eq!(calls.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_sweep_creates_missing_calls() {
    let mut rig = Rig::new("").await;
    rig.crash().await;
    // Entries requested while the bridge was down are found from document state.
    rig.add_entry("r", "b1", "x", "search");
    rig.add_entry("r", "b2", "y", "search");
    rig.start().await;
    rig.wait_entry("r", "b1", "search", "done", |e| e.status == Status::Done)
        .await;
    rig.wait_entry("r", "b2", "search", "done", |e| e.status == Status::Done)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_edit_reindexes_after_debounce() {
    let rig = Rig::new("[debounce]\nquiet_ms = 150\nmax_wait_ms = 1000").await;
    rig.add_entry("r", "b", "one", "search");
    rig.wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    rig.client_write("r", |t| t.insert_text("b", 3, "\n\ntwo").unwrap());
    let e = rig
        .wait_entry("r", "b", "search", "re-indexed", |e| {
            e.attempt == 2 && e.status == Status::Done
        })
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 2);
    // No further attempts without further edits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.entry("r", "b", "search").unwrap().attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_entry_cancels_call() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/hang", "")).await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_entry("r", "b", "search", "processing", |e| {
        e.status == Status::Processing
    })
    .await;
    rig.client_write("r", |t| {
        t.remove_index("b", "search");
    });
    let t0 = Instant::now();
    loop {
        let calls = rig.handle().outbox().list(&Default::default()).unwrap();
        if calls[0].status == weaver_bridge::CallStatus::Cancelled {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoint_security() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/async?delay_ms=100000", "")).await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_entry("r", "b", "search", "processing", |e| {
        e.status == Status::Processing
    })
    .await;
    let t0 = Instant::now();
    let ext = loop {
        let calls = rig.handle().outbox().list(&Default::default()).unwrap();
        if let Some(x) = calls[0].external_id.clone() {
            break x;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = serde_json::to_vec(
        &json!({"type": "completed", "external_id": ext, "data": {"chunks_indexed": 9}}),
    )
    .unwrap();
    let send = |path: &str, id: &str, ts: i64, sig: String, body: Vec<u8>| {
        client
            .post(rig.url(path))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    let s = secret();
    let wrong = WebhookSecret::from_bytes(b"another secret entirely......").unwrap();
    // Unknown integration, integration without webhooks.
    assert_eq!(
        send(
            "/api/webhooks/nope",
            "m1",
            now,
            s.sign("m1", now, &body),
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        404
    );
    assert_eq!(
        send(
            "/api/webhooks/local",
            "m1",
            now,
            s.sign("m1", now, &body),
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        404
    );
    // Bad signature, tampered body, expired timestamp → 401.
    assert_eq!(
        send(
            "/api/webhooks/ext",
            "m1",
            now,
            wrong.sign("m1", now, &body),
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        401
    );
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    assert_eq!(
        send(
            "/api/webhooks/ext",
            "m1",
            now,
            s.sign("m1", now, &body),
            tampered
        )
        .await
        .unwrap()
        .status(),
        401
    );
    assert_eq!(
        send(
            "/api/webhooks/ext",
            "m1",
            now - 400,
            s.sign("m1", now - 400, &body),
            body.clone()
        )
        .await
        .unwrap()
        .status(),
        401
    );
    // Malformed: missing headers, non-JSON body (correctly signed).
    let r = client
        .post(rig.url("/api/webhooks/ext"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let junk = b"not json".to_vec();
    assert_eq!(
        send(
            "/api/webhooks/ext",
            "m0",
            now,
            s.sign("m0", now, &junk),
            junk
        )
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        rig.entry("r", "b", "search").unwrap().status,
        Status::Processing,
        "nothing applied yet"
    );
    // Rotation: old + new signatures in one header; only the configured secret matters.
    let both = format!(
        "{} {}",
        wrong.sign("m1", now, &body),
        s.sign("m1", now, &body)
    );
    let r = send("/api/webhooks/ext", "m1", now, both, body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 9);
    // Duplicate delivery: 2xx, no second effect.
    let r = send(
        "/api/webhooks/ext",
        "m1",
        now,
        s.sign("m1", now, &body),
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["duplicate"], true);
    let calls = rig.handle().outbox().list(&Default::default()).unwrap();
    let events = rig.handle().outbox().events(&calls[0].id).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.event.kind.type_name() == "completed")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_call_without_completion_fails_at_deadline() {
    let api = FakeApi::start().await;
    // Webhook-only integration, the job never finishes: failed after async_timeout_ms.
    let rig = Rig::new(&http_cfg(
        &api,
        "/async?delay_ms=100000",
        "async_timeout_ms = 400",
    ))
    .await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(
        e.error.as_deref().unwrap().contains("no completion within"),
        "{e:?}"
    );
    assert_eq!(api.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_and_redirect_are_final() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(
        &api,
        "/big?bytes=2000000",
        "max_response_bytes = 100000",
    ))
    .await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .contains("larger than 100000 bytes"),
        "{e:?}"
    );
    assert_eq!(api.requests(), 1);

    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/redirect", "")).await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(e.error.as_deref().unwrap().contains("307"), "{e:?}");
    assert!(
        e.error.as_deref().unwrap().contains("not followed"),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.requests(), 1, "the redirect target was never requested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_api_times_out_and_is_retried_then_failed() {
    let api = FakeApi::start().await;
    let cfg = http_cfg(&api, "/hang", "").replace("timeout_ms = 1500", "timeout_ms = 300");
    let rig = Rig::new(&cfg).await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig
        .wait_entry("r", "b", "search", "error", |e| e.status == Status::Error)
        .await;
    assert!(e.error.as_deref().unwrap().contains("timeout"), "{e:?}");
    assert_eq!(api.requests(), 3, "max_attempts = 3");
    assert_eq!(api.keys().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_edited_while_down_is_reindexed_at_start() {
    let mut rig = Rig::new("[debounce]\nquiet_ms = 100\nmax_wait_ms = 500").await;
    rig.add_entry("r", "b", "one", "search");
    rig.wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    rig.crash().await;
    rig.client_write("r", |t| t.insert_text("b", 3, "\n\ntwo\n\nthree").unwrap());
    rig.start().await;
    let e = rig
        .wait_entry("r", "b", "search", "re-indexed", |e| {
            e.attempt == 2 && e.status == Status::Done
        })
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 3);
    // An unchanged done block is not re-indexed by a restart.
    rig.crash().await;
    rig.start().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.entry("r", "b", "search").unwrap().attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_behind_the_host_loses_nothing() {
    // A tiny broadcast buffer: a burst of client updates overflows it and the bridge must
    // rebuild from stored state instead of missing entries.
    let rig = Rig::with_capacity("", 2).await;
    rig.add_entry("warm", "b", "x", "search");
    rig.wait_entry("warm", "b", "search", "warm-up done", |e| {
        e.status == Status::Done
    })
    .await;
    for i in 0..40 {
        rig.add_entry(
            &format!("room{}", i % 4),
            &format!("b{i}"),
            "text",
            "search",
        );
    }
    for i in 0..40 {
        rig.wait_entry(
            &format!("room{}", i % 4),
            &format!("b{i}"),
            "search",
            "done after lag",
            |e| e.status == Status::Done,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_attempt_supersedes_running_one() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/slow?ms=700", "")).await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_entry("r", "b", "search", "processing", |e| {
        e.status == Status::Processing
    })
    .await;
    // The user asks again while attempt 1 runs: attempt 2 supersedes it.
    rig.client_write("r", |t| {
        t.request_index("b", "search", &json!({})).unwrap();
    });
    let e = rig
        .wait_entry("r", "b", "search", "attempt 2 done", |e| {
            e.attempt == 2 && e.status == Status::Done
        })
        .await;
    tokio::time::sleep(Duration::from_millis(900)).await; // attempt 1's late answer has arrived
    let calls = rig.handle().outbox().list(&Default::default()).unwrap();
    let a1 = calls.iter().find(|c| c.attempt == 1).unwrap();
    let a2 = calls.iter().find(|c| c.attempt == 2).unwrap();
    assert_eq!(a1.status, weaver_bridge::CallStatus::Cancelled);
    assert_eq!(a2.status, weaver_bridge::CallStatus::Completed);
    assert_eq!(e.api_call_id.as_deref(), Some(a2.id.to_string().as_str()));
    let after = rig.entry("r", "b", "search").unwrap();
    assert_eq!(
        (after.attempt, after.status),
        (2, Status::Done),
        "the late attempt-1 result changed nothing"
    );
    assert_ne!(a1.idempotency_key, a2.idempotency_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_integration_concurrency_is_respected() {
    let api = FakeApi::start().await;
    let cfg = http_cfg(&api, "/slow?ms=150", "concurrency = 2");
    let rig = Rig::new(&cfg).await;
    for i in 0..8 {
        rig.add_entry("r", &format!("b{i}"), "text", "search");
    }
    for i in 0..8 {
        rig.wait_entry("r", &format!("b{i}"), "search", "done", |e| {
            e.status == Status::Done
        })
        .await;
    }
    let max = api.state.lock().unwrap().max_in_flight;
    assert!(max <= 2, "at most 2 requests in flight, saw {max}");
    assert_eq!(max, 2, "and the limit is used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_block_cancels_its_calls() {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, "/hang", "")).await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_entry("r", "b", "search", "processing", |e| {
        e.status == Status::Processing
    })
    .await;
    rig.client_write("r", |t| {
        t.remove_block("b");
    });
    let t0 = Instant::now();
    loop {
        let calls = rig.handle().outbox().list(&Default::default()).unwrap();
        if calls[0].status == weaver_bridge::CallStatus::Cancelled {
            assert!(calls[0].error.as_deref().unwrap().contains("block removed"));
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_refresh_polls_now() {
    let api = FakeApi::start().await;
    // Polling every minute: only a manual refresh can finish this call within the test.
    let extra = format!(
        "status_url = \"{}\"\npoll_interval_ms = 60000",
        api.url("/jobs/{external_id}")
    );
    let rig = Rig::new(&http_cfg(&api, "/async?delay_ms=100", &extra)).await;
    rig.add_entry("r", "b", "text", "search");
    let t0 = Instant::now();
    let id = loop {
        let calls = rig.handle().outbox().list(&Default::default()).unwrap();
        if let Some(c) = calls.first().filter(|c| c.external_id.is_some()) {
            break c.id;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // the job finished on the API side
    let (code, body) = post_json(&rig.url(&format!("/api/calls/{id}/refresh"))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["call"]["status"], "completed");
    let e = rig
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    // Refreshing a call that cannot be polled is a conflict.
    let local = Rig::new("").await;
    local.add_entry("r", "b", "x", "search");
    local
        .wait_entry("r", "b", "search", "done", |e| e.status == Status::Done)
        .await;
    let calls = local.handle().outbox().list(&Default::default()).unwrap();
    let (code, _) = post_json(&local.url(&format!("/api/calls/{}/refresh", calls[0].id))).await;
    assert_eq!(code, 200, "a finished call is returned as is");
    assert_eq!(
        post_json(&local.url("/api/calls/not-a-uuid/refresh"))
            .await
            .0,
        400
    );
}
