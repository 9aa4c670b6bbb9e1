//! Benchmark: complete APICall lifecycles per second and trigger → `done`-visible latency
//! (p50/p99) through the real bridge (redb outbox, document mirrors, write-back) with the
//! in-memory document host and either the built-in `local` integration or a local sync HTTP
//! API (the fake API of the tests). Also reports outbox fsyncs (durable commits) per lifecycle.
//!
//! ```text
//! cargo run --release -p weaver-bridge --example bench -- [--calls 2000] [--integration local|http]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_api.rs"]
mod fake_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use weaver_bridge::{Bridge, BridgeConfig, DocumentHost, HostEvent, MemoryHost, Registry};
use weaver_doc::{Change, Status, Workspace};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = arg(&args, "--calls")
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let integration = arg(&args, "--integration").unwrap_or_else(|| "local".into());
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("bench.redb")).unwrap());
    let host = MemoryHost::new(1 << 16);
    let cfg_text = if integration == "http" {
        let api = fake_api::FakeApi::start().await;
        format!(
            "default_integration = \"api\"\n[[integrations]]\nname = \"api\"\nkind = \"http\"\nurl = \"{}\"\nconcurrency = 32\n",
            api.url("/sync")
        )
    } else {
        "local_concurrency = 32".to_owned()
    };
    let cfg = BridgeConfig::from_toml(&cfg_text).unwrap();
    let registry = Registry::from_config(&cfg).unwrap();
    let shutdown = CancellationToken::new();
    let bridge =
        Bridge::start_with_registry(cfg, registry, db, Arc::new(host.clone()), shutdown.clone())
            .unwrap();

    // Another replica watches for `done` and records when each block got it.
    let done_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = Workspace::new();
    let d2 = done_at.clone();
    let _sub = watcher
        .observe(move |cs| {
            for c in &cs.changes {
                if let Change::StatusChanged {
                    block_id,
                    status: Status::Done,
                    ..
                } = c
                {
                    d2.lock()
                        .unwrap()
                        .entry(block_id.clone())
                        .or_insert_with(Instant::now);
                }
            }
        })
        .unwrap();
    let mut stream = DocumentHost::subscribe(&host);
    tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            if let HostEvent::Update { update, .. } = ev {
                let _ = watcher.apply_update_v1(&update, "remote");
            }
        }
    });

    let commits0 = bridge.outbox().commits();
    let client = Workspace::new();
    let mut started = HashMap::new();
    let t0 = Instant::now();
    for i in 0..calls {
        let id = format!("b{i}");
        let ((), update) = client
            .transact("client", |t| {
                t.add_block(&id, "text", "some text\n\nto index").unwrap();
                t.request_index(&id, "search", &json!({})).unwrap();
            })
            .unwrap();
        started.insert(id, Instant::now());
        host.apply("bench", &update, "client").unwrap();
        if i % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while done_at.lock().unwrap().len() < calls {
        assert!(Instant::now() < deadline, "bench did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t0.elapsed();
    let commits = bridge.outbox().commits() - commits0;
    let done = done_at.lock().unwrap().clone();
    let mut lat: Vec<f64> = started
        .iter()
        .map(|(id, s)| done[id].duration_since(*s).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "integration={integration} calls={calls} elapsed={:.2}s lifecycles/s={:.0} latency_ms p50={:.1} p99={:.1} outbox_fsyncs_per_lifecycle={:.2}",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        commits as f64 / calls as f64
    );
    shutdown.cancel();
    bridge.join().await;
}
