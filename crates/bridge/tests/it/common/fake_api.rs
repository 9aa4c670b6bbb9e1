//! A small real HTTP service standing in for an external indexing API (shared by the Rust
//! tests and `examples/fake_api.rs`). It counts requests per `Idempotency-Key`, replays the
//! stored answer for a repeated key (like Stripe), and can answer synchronously, accept jobs
//! and finish them by signed Standard Webhook and/or a pollable status URL, fail with a given
//! status (optionally only the first N times), answer slowly, or hang.
//!
//! Routes (POST takes the bridge's JSON request):
//!   POST /sync                       200 {"chunks_indexed", "chars", "call_id"}
//!   POST /async?delay_ms=&early=1    202 {"id"}; completes after delay (webhook + status)
//!   POST /fail/{code}?times=N&retry_after=S   answers `code` N times per key (all if no N), then 200
//!   POST /slow?ms=N                  sleeps, then like /sync
//!   POST /hang                       never answers
//!   POST /big?bytes=N                200 with an N-byte JSON body
//!   POST /redirect                   307 to /sync (must not be followed)
//!   GET  /jobs/{id}                  {"status": "processing"|"completed", "data"}
//!   GET  /stats                      {"requests", "keys": {key: count}, "webhooks_sent"}
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use weaver_bridge::WebhookSecret;

#[derive(Default)]
pub struct FakeState {
    pub requests: u64,
    pub keys: HashMap<String, u64>,
    /// Stored first answer per key (status, body).
    pub answers: HashMap<String, (u16, Value)>,
    pub jobs: HashMap<String, Value>,
    pub webhooks_sent: u64,
    pub webhook: Option<(String, Arc<WebhookSecret>)>,
    pub fail_counts: HashMap<String, u64>,
    pub in_flight: u64,
    pub max_in_flight: u64,
}

#[derive(Clone)]
pub struct FakeApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(listen: &str) -> FakeApi {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new()
            .route("/sync", post(sync))
            .route("/async", post(async_job))
            .route("/fail/{code}", post(fail))
            .route("/slow", post(slow))
            .route("/hang", post(hang))
            .route("/big", post(big))
            .route("/redirect", post(redirect))
            .route("/jobs/{id}", get(job))
            .route("/stats", get(stats))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Where to send completion webhooks, signed with `secret`.
    pub fn set_webhook(&self, url: &str, secret: WebhookSecret) {
        self.state.lock().unwrap().webhook = Some((url.to_owned(), Arc::new(secret)));
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    pub fn keys(&self) -> HashMap<String, u64> {
        self.state.lock().unwrap().keys.clone()
    }

    pub fn webhooks_sent(&self) -> u64 {
        self.state.lock().unwrap().webhooks_sent
    }
}

type St = State<Arc<Mutex<FakeState>>>;

fn key_of(h: &HeaderMap) -> String {
    h.get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn count(st: &Arc<Mutex<FakeState>>, key: &str) -> Option<(u16, Value)> {
    let mut s = st.lock().unwrap();
    s.requests += 1;
    *s.keys.entry(key.to_owned()).or_default() += 1;
    s.answers.get(key).cloned()
}

fn reply(code: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

fn sync_answer(body: &Value) -> Value {
    let content = body.get("content").and_then(Value::as_str).unwrap_or("");
    json!({
        "chunks_indexed": content.split("\n\n").filter(|p| !p.trim().is_empty()).count(),
        "chars": content.chars().count(),
        "call_id": body.get("call_id").cloned().unwrap_or(Value::Null),
        "index_name": body.get("index_name").cloned().unwrap_or(Value::Null),
    })
}

/// Answers a call synchronously and remembers the answer, so a retry with the same key gets
/// the same one.
fn answer_sync(st: &Arc<Mutex<FakeState>>, key: String, body: &Value) -> Response {
    let ans = sync_answer(body);
    st.lock().unwrap().answers.insert(key, (200, ans.clone()));
    reply(200, ans)
}

async fn sync(State(st): St, h: HeaderMap, Json(body): Json<Value>) -> Response {
    let key = key_of(&h);
    if let Some((c, b)) = count(&st, &key) {
        return reply(c, b);
    }
    answer_sync(&st, key, &body)
}

async fn slow(
    State(st): St,
    h: HeaderMap,
    Query(q): Query<HashMap<String, u64>>,
    Json(body): Json<Value>,
) -> Response {
    let key = key_of(&h);
    let prev = count(&st, &key);
    {
        let mut s = st.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
    }
    tokio::time::sleep(Duration::from_millis(q.get("ms").copied().unwrap_or(1000))).await;
    st.lock().unwrap().in_flight -= 1;
    if let Some((c, b)) = prev {
        return reply(c, b);
    }
    answer_sync(&st, key, &body)
}

async fn hang(State(st): St, h: HeaderMap) -> Response {
    count(&st, &key_of(&h));
    tokio::time::sleep(Duration::from_secs(3600)).await;
    reply(200, json!({}))
}

async fn fail(
    State(st): St,
    h: HeaderMap,
    Path(code): Path<u16>,
    Query(q): Query<HashMap<String, u64>>,
    Json(body): Json<Value>,
) -> Response {
    let key = key_of(&h);
    count(&st, &key);
    let n = {
        let mut s = st.lock().unwrap();
        let n = s.fail_counts.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    if q.get("times").is_none_or(|t| n <= *t) {
        let mut resp = reply(code, json!({"error": format!("fake failure {n}")}));
        if let Some(s) = q.get("retry_after") {
            resp.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return resp;
    }
    reply(200, sync_answer(&body))
}

async fn send_webhook(st: Arc<Mutex<FakeState>>, job_id: String, data: Value) {
    let Some((url, secret)) = st.lock().unwrap().webhook.clone() else {
        return;
    };
    let body =
        serde_json::to_vec(&json!({"type": "completed", "external_id": job_id, "data": data}))
            .unwrap();
    let msg_id = format!("msg_{job_id}");
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let sig = secret.sign(&msg_id, ts, &body);
    let client = http_client();
    // Deliver until acknowledged, like a real sender (bounded).
    for _ in 0..50 {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", &sig)
            .body(body.clone())
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            st.lock().unwrap().webhooks_sent += 1;
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn async_job(
    State(st): St,
    h: HeaderMap,
    Query(q): Query<HashMap<String, u64>>,
    Json(body): Json<Value>,
) -> Response {
    let key = key_of(&h);
    if let Some((c, b)) = count(&st, &key) {
        return reply(c, b);
    }
    let job_id = format!("job-{}", uuid::Uuid::new_v4());
    let ans = json!({"id": job_id});
    {
        let mut s = st.lock().unwrap();
        s.answers.insert(key, (202, ans.clone()));
        s.jobs
            .insert(job_id.clone(), json!({"status": "processing"}));
    }
    let delay = q.get("delay_ms").copied().unwrap_or(300);
    let data = sync_answer(&body);
    if q.get("early") == Some(&1) {
        // The webhook arrives before the 202 response: the bridge must park it.
        st.lock()
            .unwrap()
            .jobs
            .insert(job_id.clone(), json!({"status": "completed", "data": data}));
        send_webhook(st.clone(), job_id.clone(), data).await;
        return reply(202, ans);
    }
    let st2 = st.clone();
    let jid = job_id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        st2.lock().unwrap().jobs.insert(
            jid.clone(),
            json!({"status": "completed", "data": data.clone()}),
        );
        send_webhook(st2, jid, data).await;
    });
    reply(202, ans)
}

async fn job(State(st): St, Path(id): Path<String>) -> Response {
    match st.lock().unwrap().jobs.get(&id) {
        Some(j) => reply(200, j.clone()),
        None => reply(404, json!({"error": "no such job"})),
    }
}

async fn stats(State(st): St) -> Response {
    let s = st.lock().unwrap();
    reply(
        200,
        json!({"requests": s.requests, "keys": s.keys, "webhooks_sent": s.webhooks_sent}),
    )
}

async fn big(State(st): St, h: HeaderMap, Query(q): Query<HashMap<String, usize>>) -> Response {
    count(&st, &key_of(&h));
    let n = q.get("bytes").copied().unwrap_or(2 << 20);
    reply(200, json!({"pad": "x".repeat(n)}))
}

async fn redirect(State(st): St, h: HeaderMap) -> Response {
    count(&st, &key_of(&h));
    (StatusCode::TEMPORARY_REDIRECT, [("location", "/sync")]).into_response()
}

/// A plain reqwest client for test requests. reqwest is built without a bundled crypto
/// provider (workspace Cargo.toml), so install ring first, as the bridge itself does.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
