//! The whole bridge against real parts: a real redb file, the in-memory document host with
//! real yrs replicas on both sides, real HTTP (the fake external API and the bridge's own
//! router on loopback). Each test adds entries as a client would and watches another replica
//! see `processing` then `done`/`error`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fake_api::FakeApi;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use weaver_bridge::WebhookSecret;
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

    /// Waits until the `search` entry of `block` in `room` has `status` (any attempt).
    async fn wait_status(&self, room: &str, block: &str, status: Status) -> EntryView {
        self.wait_entry(room, block, "search", &format!("{status:?}"), |e| {
            e.status == status
        })
        .await
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
    let r = crate::common::fake_api::http_client()
        .get(url)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn post_json(url: &str) -> (u16, Value) {
    let r = crate::common::fake_api::http_client()
        .post(url)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Asserts that `e` has an error naming each of `parts`.
fn assert_error(e: &EntryView, parts: &[&str]) {
    let error = e.error.as_deref().unwrap();
    for part in parts {
        assert!(error.contains(part), "{part:?} not in {e:?}");
    }
}

/// A fake API and a bridge whose `ext` integration calls it at `path` (see [`http_cfg`]).
async fn http_rig(path: &str, extra: &str) -> (FakeApi, Rig) {
    let api = FakeApi::start().await;
    let rig = Rig::new(&http_cfg(&api, path, extra)).await;
    (api, rig)
}

/// Like [`http_rig`], and the bridge polls the fake API's job status every `interval_ms`.
async fn polling_rig(path: &str, interval_ms: u64) -> (FakeApi, Rig) {
    let api = FakeApi::start().await;
    let extra = format!(
        "status_url = \"{}\"\npoll_interval_ms = {interval_ms}",
        api.url("/jobs/{external_id}")
    );
    let rig = Rig::new(&http_cfg(&api, path, &extra)).await;
    (api, rig)
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
    let e = rig.wait_status("room1", "b1", Status::Done).await;
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
    let (api, rig) = http_rig("/sync", "").await;
    rig.add_entry("r", "b", "hello\n\nworld\n\n!", "search");
    let e = rig.wait_status("r", "b", Status::Done).await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 3);
    assert_eq!(e.result.as_ref().unwrap()["index_name"], "search");
    assert_eq!(api.requests(), 1);
    let keys = api.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys.keys().next().unwrap().starts_with("weaver-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_async_completed_by_webhook() {
    let (api, rig) = http_rig("/async?delay_ms=200", "").await;
    api.set_webhook(&rig.url("/api/webhooks/ext"), secret());
    let seen = watch(&rig.host, "r");
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Done).await;
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
    let (api, rig) = http_rig("/async?early=1", "").await;
    api.set_webhook(&rig.url("/api/webhooks/ext"), secret());
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Done).await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    assert_eq!(api.webhooks_sent(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_async_completed_by_polling() {
    let (api, rig) = polling_rig("/async?delay_ms=300", 100).await;
    // No webhook target: only polling can finish the job.
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Done).await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    assert_eq!(api.webhooks_sent(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_then_failed_visible_and_manual_retry() {
    let (api, rig) = http_rig("/fail/503", "").await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["503", "gave up after 3 tries"]);
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
    let (api, rig) = http_rig("/fail/422", "").await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["422"]);
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
    rig.wait_status("r", "b", Status::Done).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 honoured"
    );
    assert_eq!(api.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_mid_call_resumes_with_same_key() {
    let (api, mut rig) = http_rig("/slow?ms=800", "").await;
    rig.add_entry("r", "b", "text", "search");
    // Wait until the external API received the request, then "kill" the bridge.
    let t0 = Instant::now();
    while api.requests() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.crash().await;
    rig.start().await;
    let e = rig.wait_status("r", "b", Status::Done).await;
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
    rig.wait_status("r", "b1", Status::Done).await;
    rig.wait_status("r", "b2", Status::Done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_edit_reindexes_after_debounce() {
    let rig = Rig::new("[debounce]\nquiet_ms = 150\nmax_wait_ms = 1000").await;
    rig.add_entry("r", "b", "one", "search");
    rig.wait_status("r", "b", Status::Done).await;
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
    let (_api, rig) = http_rig("/hang", "").await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_status("r", "b", Status::Processing).await;
    rig.client_write("r", |t| {
        t.remove_index("b", "search");
    });
    wait_call(&rig, "cancelled", |c| {
        c.status == weaver_bridge::CallStatus::Cancelled
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoint_security() {
    let (_api, rig) = http_rig("/async?delay_ms=100000", "").await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_status("r", "b", Status::Processing).await;
    let ext = wait_call(&rig, "external id", |c| c.external_id.is_some())
        .await
        .external_id
        .unwrap();
    let client = crate::common::fake_api::http_client();
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
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    let junk = b"not json".to_vec();
    let (good, bad) = (s.sign("m1", now, &body), wrong.sign("m1", now, &body));
    let (old, junk_sig) = (s.sign("m1", now - 400, &body), s.sign("m0", now, &junk));
    let ext = "/api/webhooks/ext";
    let (nope, local) = ("/api/webhooks/nope", "/api/webhooks/local");
    // (what, path, webhook-id, timestamp, signature, body, expected status)
    let refused = [
        ("unknown integration", nope, "m1", now, &good, &body, 404),
        ("no webhooks", local, "m1", now, &good, &body, 404),
        ("bad signature", ext, "m1", now, &bad, &body, 401),
        ("tampered body", ext, "m1", now, &good, &tampered, 401),
        ("expired timestamp", ext, "m1", now - 400, &old, &body, 401),
        ("non-JSON, signed", ext, "m0", now, &junk_sig, &junk, 400),
    ];
    for (what, path, id, ts, sig, body, want) in refused {
        let r = send(path, id, ts, sig.clone(), body.clone()).await.unwrap();
        assert_eq!(r.status(), want, "{what}");
    }
    let r = client
        .post(rig.url(ext))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "missing headers");
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
    let e = rig.wait_status("r", "b", Status::Done).await;
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
    // Webhook-only integration, the job never finishes: failed after async_timeout_ms.
    let (api, rig) = http_rig("/async?delay_ms=100000", "async_timeout_ms = 400").await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["no completion within"]);
    assert_eq!(api.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_and_redirect_are_final() {
    let (api, rig) = http_rig("/big?bytes=2000000", "max_response_bytes = 100000").await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["larger than 100000 bytes"]);
    assert_eq!(api.requests(), 1);

    let (api, rig) = http_rig("/redirect", "").await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["307", "not followed"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(api.requests(), 1, "the redirect target was never requested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_api_times_out_and_is_retried_then_failed() {
    let api = FakeApi::start().await;
    let cfg = http_cfg(&api, "/hang", "").replace("timeout_ms = 1500", "timeout_ms = 300");
    let rig = Rig::new(&cfg).await;
    rig.add_entry("r", "b", "text", "search");
    let e = rig.wait_status("r", "b", Status::Error).await;
    assert_error(&e, &["timeout"]);
    assert_eq!(api.requests(), 3, "max_attempts = 3");
    assert_eq!(api.keys().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_edited_while_down_is_reindexed_at_start() {
    let mut rig = Rig::new("[debounce]\nquiet_ms = 100\nmax_wait_ms = 500").await;
    rig.add_entry("r", "b", "one", "search");
    rig.wait_status("r", "b", Status::Done).await;
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
    let (_api, rig) = http_rig("/slow?ms=700", "").await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_status("r", "b", Status::Processing).await;
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
    let (_api, rig) = http_rig("/hang", "").await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_status("r", "b", Status::Processing).await;
    rig.client_write("r", |t| {
        t.remove_block("b");
    });
    let call = wait_call(&rig, "cancelled", |c| {
        c.status == weaver_bridge::CallStatus::Cancelled
    })
    .await;
    assert!(call.error.as_deref().unwrap().contains("block removed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_refresh_polls_now() {
    // Polling every minute: only a manual refresh can finish this call within the test.
    let (_api, rig) = polling_rig("/async?delay_ms=100", 60_000).await;
    rig.add_entry("r", "b", "text", "search");
    let id = wait_call(&rig, "external id", |c| c.external_id.is_some())
        .await
        .id;
    tokio::time::sleep(Duration::from_millis(300)).await; // the job finished on the API side
    let (code, body) = post_json(&rig.url(&format!("/api/calls/{id}/refresh"))).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["call"]["status"], "completed");
    let e = rig.wait_status("r", "b", Status::Done).await;
    assert_eq!(e.result.as_ref().unwrap()["chunks_indexed"], 1);
    // Refreshing a call that cannot be polled is a conflict.
    let local = Rig::new("").await;
    local.add_entry("r", "b", "x", "search");
    local.wait_status("r", "b", Status::Done).await;
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

/// Polls the outbox until `pred` holds for the first call listed (or fails after 10 s);
/// returns that call.
async fn wait_call(
    rig: &Rig,
    what: &str,
    pred: impl Fn(&weaver_bridge::ApiCall) -> bool,
) -> weaver_bridge::ApiCall {
    let t0 = Instant::now();
    loop {
        let calls = rig.handle().outbox().list(&Default::default()).unwrap();
        if let Some(call) = calls.first().filter(|c| pred(c)) {
            return call.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: {calls:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn block_count(host: &MemoryHost, room: &str) -> usize {
    Workspace::from_update_v1(&host.state(room).unwrap())
        .unwrap()
        .blocks()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_room_cancels_calls_and_is_never_written_again() {
    let (api, mut rig) = http_rig("/slow?ms=700", "").await;
    rig.add_entry("r", "b", "text", "search");
    rig.wait_status("r", "b", Status::Processing).await;
    rig.host.delete("r").unwrap();
    wait_call(&rig, "cancelled after deletion", |c| {
        c.status == weaver_bridge::CallStatus::Cancelled
            && c.error.as_deref() == Some("room deleted")
    })
    .await;
    // The API answers after the deletion: the late result is ignored, nothing is written.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(api.requests() >= 1);
    assert_eq!(block_count(&rig.host, "r"), 0, "deleted room re-created");
    let calls = rig.handle().outbox().list(&Default::default()).unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, weaver_bridge::CallStatus::Cancelled);
    let events = rig.handle().outbox().events(&calls[0].id).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.kind.type_name() == "late_result_ignored"),
        "{events:?}"
    );
    // A restart (start-up sweep, queued write-backs) does not resurrect it either.
    rig.crash().await;
    rig.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(block_count(&rig.host, "r"), 0);
    // The room can be used afresh, even with the same block id and attempt: a new client's
    // entry gets a new call and is indexed normally.
    rig.add_entry("r", "b", "new", "search");
    let e = rig.wait_status("r", "b", Status::Done).await;
    assert_eq!(e.attempt, 1);
    let calls = rig.handle().outbox().list(&Default::default()).unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        e.api_call_id.as_deref(),
        Some(calls[0].id.to_string().as_str())
    );
}

/// A `DocumentHost` (real `MemoryHost` underneath) whose durable apply refuses the bridge's
/// writes to one room, as a relay refusing an update would.
#[derive(Clone)]
struct RefusingHost {
    inner: MemoryHost,
    refuse_room: String,
    refused: Arc<std::sync::atomic::AtomicU64>,
}

impl DocumentHost for RefusingHost {
    fn stored_rooms(
        &self,
    ) -> weaver_bridge::BoxFuture<'_, Result<Vec<String>, weaver_bridge::HostError>> {
        self.inner.stored_rooms()
    }
    fn room_state<'a>(
        &'a self,
        room: &'a str,
    ) -> weaver_bridge::BoxFuture<'a, Result<Vec<u8>, weaver_bridge::HostError>> {
        self.inner.room_state(room)
    }
    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> weaver_bridge::BoxFuture<'a, Result<(), weaver_bridge::HostError>> {
        if room == self.refuse_room {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Box::pin(async { Err(weaver_bridge::HostError::Refused("refused".into())) });
        }
        self.inner.apply_update(room, update, origin)
    }
    fn subscribe(&self) -> Box<dyn weaver_bridge::UpdateStream> {
        DocumentHost::subscribe(&self.inner)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writebacks_back_off_then_give_up_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("w.redb")).unwrap());
    let host = RefusingHost {
        inner: MemoryHost::new(1024),
        refuse_room: "bad".into(),
        refused: Arc::new(std::sync::atomic::AtomicU64::new(0)),
    };
    // 3 tries, 100 ms then 200 ms apart: given up after ≈ 300 ms.
    let cfg = BridgeConfig::from_toml(
        "[retry]\nmax_attempts = 3\ninitial_interval_ms = 100\nmax_interval_ms = 200",
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let handle = Bridge::start(cfg, db, Arc::new(host.clone()), shutdown.clone()).unwrap();
    for room in ["bad", "good"] {
        let ws = Workspace::new();
        let ((), u) = ws
            .transact("client", |t| {
                t.add_block("b", "text", "x").unwrap();
                t.request_index("b", "search", &json!({})).unwrap();
            })
            .unwrap();
        host.inner.apply(room, &u, "client").unwrap();
    }
    // The good room is not held up by the bad one.
    let t0 = Instant::now();
    loop {
        let ws = Workspace::from_update_v1(&host.inner.state("good").unwrap()).unwrap();
        if ws
            .block("b")
            .unwrap()
            .unwrap()
            .entry("search")
            .unwrap()
            .status
            == Status::Done
        {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bad_call = loop {
        let calls = handle
            .outbox()
            .list(&weaver_bridge::outbox::CallFilter {
                room: Some("bad".into()),
                ..Default::default()
            })
            .unwrap();
        let c = calls.into_iter().next();
        if let Some(c) = c {
            let ev = handle.outbox().events(&c.id).unwrap();
            if ev
                .iter()
                .any(|e| e.event.kind.type_name() == "writeback_failed")
            {
                break (c, ev);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no writeback_failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(bad_call.0.status, weaver_bridge::CallStatus::Completed);
    let failed = bad_call
        .1
        .iter()
        .find_map(|e| match &e.event.kind {
            weaver_bridge::EventKind::WritebackFailed { error } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert!(failed.contains("refused 3 times"), "{failed}");
    // Given up: no more tries, however long we wait.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let n = host.refused.load(std::sync::atomic::Ordering::SeqCst);
    // One apply per try; `processing` and `done` may be given up in one round (3) or, if the
    // call finished after the first round started, in two (6).
    assert!(n == 3 || n == 6, "refused {n} times");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(host.refused.load(std::sync::atomic::Ordering::SeqCst), n);
    assert_eq!(handle.outbox().writebacks(10).unwrap().len(), 0);
    shutdown.cancel();
    handle.join().await;
}

/// A host that counts `room_state` reads: the bridge reads a room's state exactly when it
/// (re)builds its mirror of the room.
/// A bridge with the default config over a [`CountingHost`] (the temp dir must outlive it).
async fn start_counting() -> (
    tempfile::TempDir,
    MemoryHost,
    Arc<CountingHost>,
    CancellationToken,
    BridgeHandle,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("weaver.redb")).unwrap());
    let memory = MemoryHost::new(1024);
    let host = Arc::new(CountingHost {
        inner: memory.clone(),
        state_reads: Default::default(),
    });
    let cfg = BridgeConfig::from_toml("").unwrap();
    let registry = Registry::from_config_with_env(&cfg, &env).unwrap();
    let shutdown = CancellationToken::new();
    let handle =
        Bridge::start_with_registry(cfg, registry, db, host.clone(), shutdown.clone()).unwrap();
    (dir, memory, host, shutdown, handle)
}

struct CountingHost {
    inner: MemoryHost,
    state_reads: std::sync::atomic::AtomicUsize,
}

impl DocumentHost for CountingHost {
    fn stored_rooms(
        &self,
    ) -> weaver_bridge::BoxFuture<'_, Result<Vec<String>, weaver_bridge::HostError>> {
        self.inner.stored_rooms()
    }
    fn room_state<'a>(
        &'a self,
        room: &'a str,
    ) -> weaver_bridge::BoxFuture<'a, Result<Vec<u8>, weaver_bridge::HostError>> {
        self.state_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.room_state(room)
    }
    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> weaver_bridge::BoxFuture<'a, Result<(), weaver_bridge::HostError>> {
        self.inner.apply_update(room, update, origin)
    }
    fn subscribe(&self) -> Box<dyn weaver_bridge::UpdateStream> {
        self.inner.subscribe()
    }
}

/// Writes a block into room "warm-up" and waits for the bridge's one state read of it (by the
/// start-up sweep or on first sight, never both): from then on the bridge is past its start-up
/// sweep, which would otherwise race the test's first writes.
async fn warm_up(memory: &MemoryHost, host: &CountingHost) {
    let ws = Workspace::new();
    let ((), update) = ws
        .transact("client", |t| t.add_block("w", "text", "").unwrap())
        .unwrap();
    memory.apply("warm-up", &update, "client").unwrap();
    let start = Instant::now();
    while host.state_reads.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: warm-up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When the host unloads a room, the bridge drops its mirror with it (so unloaded rooms cost
/// the bridge no memory): the room's next update makes the bridge rebuild the mirror from the
/// host's state. Without the notice the mirror would stay for `MIRROR_IDLE` (10 minutes) and
/// the next update would be applied to it without a state read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_unload_notice_drops_the_mirror() {
    let (_dir, memory, host, shutdown, handle) = start_counting().await;
    let reads = || host.state_reads.load(std::sync::atomic::Ordering::SeqCst);
    let wait_reads = |n: usize, what: &'static str| async move {
        let start = Instant::now();
        while reads() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let write = |text: &str| {
        let ws = Workspace::new();
        ws.apply_update_v1(&memory.state("r").unwrap(), "load")
            .unwrap();
        let ((), update) = ws
            .transact("client", |t| {
                if !t.has_block("b") {
                    t.add_block("b", "text", "").unwrap();
                }
                t.insert_text("b", 0, text).unwrap();
            })
            .unwrap();
        memory.apply("r", &update, "client").unwrap();
    };

    warm_up(&memory, &host).await;
    // First sight of the room: the mirror is built from the host's state.
    write("one");
    wait_reads(2, "the first mirror build").await;
    // The notice and the update after it travel on the same stream, so the bridge has
    // dropped the mirror when the update arrives and must rebuild it.
    memory.unload("r");
    write("two");
    wait_reads(3, "the mirror rebuilt after the unload notice").await;
    // A mirrored room's updates are applied to the mirror: no further state read.
    write("three");
    write("four");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reads(), 3, "one rebuild per unload");
    shutdown.cancel();
    handle.join().await;
}

/// The bridge mirrors only rooms with something under `blocks`: a room edited through other
/// shared types never costs it a state read or a mirror, and the same room is picked up the
/// moment an update adds a block with an index entry (the marker is in that update), with the
/// call created as for any other room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_without_blocks_are_not_mirrored_until_they_get_one() {
    use yrs::{Text, Transact};
    let (_dir, memory, host, shutdown, handle) = start_counting().await;
    let reads = || host.state_reads.load(std::sync::atomic::Ordering::SeqCst);
    warm_up(&memory, &host).await;

    // A plain Yjs text room (what rooms1000 of the benchmark writes), a few updates.
    let plain = yrs::Doc::new();
    let text = plain.get_or_insert_text("t");
    for s in ["a", "b", "c"] {
        let mut txn = plain.transact_mut();
        text.push(&mut txn, s);
        let update = txn.encode_update_v1();
        drop(txn);
        memory.apply("plain", &update, "client").unwrap();
    }
    // A room with a block: mirrored (one state read). The stream is ordered, so once this
    // read happened every update of "plain" was handled.
    let ws = Workspace::new();
    let ((), update) = ws
        .transact("client", |t| t.add_block("b", "text", "hi").unwrap())
        .unwrap();
    memory.apply("doc", &update, "client").unwrap();
    let start = Instant::now();
    while reads() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: room with a block"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(reads(), 2, "a room without blocks was read");

    // The plain room gets a block with an index entry: picked up, and its call created.
    let ws = Workspace::new();
    ws.apply_update_v1(&memory.state("plain").unwrap(), "load")
        .unwrap();
    let (attempt, update) = ws
        .transact("client", |t| {
            t.add_block("b", "text", "indexed")?;
            t.request_index("b", "search", &json!({"dim": 3}))
        })
        .unwrap();
    assert_eq!(attempt.unwrap(), 1);
    memory.apply("plain", &update, "client").unwrap();
    let outbox = handle.outbox().clone();
    let start = Instant::now();
    loop {
        let calls = outbox.list(&Default::default()).unwrap();
        if calls
            .iter()
            .any(|c| c.room == "plain" && c.block_id == "b" && c.index_name == "search")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no call for the plain room: {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reads(), 3, "one read for the room that got a block");
    shutdown.cancel();
    handle.join().await;
}
