//! The scenarios: what each one asks the load generator to do, and how its raw outcome (client
//! timings + server samples at the marks) becomes the figures of one run. One call = one fresh
//! server process = one repetition for one server. Ordering, statistics and printing live in
//! main.rs / report.rs.

use crate::loadgen::{self, Outcome};
use crate::prom;
use crate::servers::{self, Env, Kind};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// Prometheus names of Weaver's durability figures (crates/relay/src/metrics.rs).
const PERSIST_HIST: &str = "weaver_persist_seconds";
const COMMIT_HIST: &str = "weaver_group_commit_seconds";
const OPS_HIST: &str = "weaver_group_commit_ops";
const SLOW_CLOSES: &str = "weaver_slow_consumer_closes_total";
const UPDATES_IN: &str = "weaver_updates_in_total";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    Fanout2,
    Fanout16,
    Fanout64,
    Burst64,
    Writers16,
    Rooms1000,
    Cold,
    BridgeLocal,
    BridgeHttp,
}

/// Whether smaller or larger is better for a figure (Info = not compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
    Info,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub key: &'static str,
    pub label: &'static str,
    pub better: Better,
    /// Counted figures (e.g. converged) are shown as `k/n`, not as median.
    pub count: bool,
}

impl MetricDef {
    /// A figure shown as median [min–max].
    pub const fn new(key: &'static str, label: &'static str, better: Better) -> MetricDef {
        MetricDef {
            key,
            label,
            better,
            count: false,
        }
    }

    /// A yes/no figure shown as `k/n` runs.
    pub const fn counted(key: &'static str, label: &'static str) -> MetricDef {
        MetricDef {
            key,
            label,
            better: Better::Higher,
            count: true,
        }
    }
}

const fn m(key: &'static str, label: &'static str, better: Better) -> MetricDef {
    MetricDef::new(key, label, better)
}
const fn c(key: &'static str, label: &'static str) -> MetricDef {
    MetricDef::counted(key, label)
}

/// Figures of one run of one scenario on one server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    pub scenario: &'static str,
    /// The server (`Kind::name`) or, for the cluster scenario, the configuration.
    pub server: String,
    pub rep: usize,
    pub values: BTreeMap<&'static str, f64>,
    pub notes: Vec<String>,
}

/// Sizes of a run; `quick` shrinks everything for a smoke run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub fanout_count: u64,
    pub burst_count: u64,
    pub writers_per: u64,
    pub rooms: u64,
    pub cold_updates: u64,
    pub idle_wait_ms: u64,
    pub bridge_paced: u64,
    pub bridge_burst: u64,
}

impl Sizes {
    pub fn new(quick: bool, idle_wait_ms: u64) -> Sizes {
        if quick {
            Sizes {
                fanout_count: 300,
                burst_count: 300,
                writers_per: 30,
                rooms: 50,
                cold_updates: 600,
                idle_wait_ms: idle_wait_ms.min(3000),
                bridge_paced: 20,
                bridge_burst: 50,
            }
        } else {
            Sizes {
                fanout_count: 2000,
                burst_count: 2000,
                writers_per: 250,
                rooms: 1000,
                cold_updates: 8_000,
                idle_wait_ms,
                bridge_paced: 100,
                bridge_burst: 500,
            }
        }
    }
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Fanout2,
        Scenario::Fanout16,
        Scenario::Fanout64,
        Scenario::Burst64,
        Scenario::Writers16,
        Scenario::Rooms1000,
        Scenario::Cold,
        Scenario::BridgeLocal,
        Scenario::BridgeHttp,
    ];

    /// Scenarios only Weaver can run (the anchors have no bridge).
    pub fn weaver_only(self) -> bool {
        matches!(self, Scenario::BridgeLocal | Scenario::BridgeHttp)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout2 => "fanout2",
            Scenario::Fanout16 => "fanout16",
            Scenario::Fanout64 => "fanout64",
            Scenario::Burst64 => "burst64",
            Scenario::Writers16 => "writers16",
            Scenario::Rooms1000 => "rooms1000",
            Scenario::Cold => "cold",
            Scenario::BridgeLocal => "bridge-local",
            Scenario::BridgeHttp => "bridge-http",
        }
    }

    pub fn title(self, s: &Sizes) -> String {
        match self {
            Scenario::Fanout2 => format!(
                "fanout2: 1 writer + 1 receiver, {} appends @500/s",
                s.fanout_count
            ),
            Scenario::Fanout16 => format!(
                "fanout16: 1 writer + 15 receivers, {} appends @500/s",
                s.fanout_count
            ),
            Scenario::Fanout64 => format!(
                "fanout64: 1 writer + 63 receivers, {} appends @250/s (paced)",
                s.fanout_count
            ),
            Scenario::Burst64 => format!(
                "burst64: 1 writer + 63 receivers, {} appends as fast as possible",
                s.burst_count
            ),
            Scenario::Writers16 => format!(
                "writers16: 16 clients x {} concurrent inserts at random positions",
                s.writers_per
            ),
            Scenario::Rooms1000 => format!(
                "rooms1000: {} rooms x 2 clients x 5 updates, then all clients close",
                s.rooms
            ),
            Scenario::Cold => format!(
                "cold: 5 clients write {} random inserts/deletions (non-compressible, random positions), restart, one fresh client loads",
                s.cold_updates
            ),
            Scenario::BridgeLocal => format!(
                "bridge-local: built-in `local` integration; {} triggers @20/s, then {} at once (weaver only)",
                s.bridge_paced, s.bridge_burst
            ),
            Scenario::BridgeHttp => format!(
                "bridge-http: HTTP integration to a stand-in API on loopback; {} triggers @20/s, then {} at once (weaver only)",
                s.bridge_paced, s.bridge_burst
            ),
        }
    }

    pub fn metrics(self) -> Vec<MetricDef> {
        use Better::*;
        match self {
            Scenario::Fanout2 | Scenario::Fanout16 | Scenario::Fanout64 => vec![
                m("p50_ms", "latency p50 ms", Lower),
                m("p99_ms", "latency p99 ms", Lower),
                m("cpu_us_per_delivery", "server CPU µs/delivery", Lower),
                m("peak_rss_mb", "server peak RSS MB", Lower),
                c("delivered_all", "every update delivered"),
            ],
            Scenario::Burst64 => vec![
                m("all_delivered_ms", "all delivered ms", Lower),
                m("deliveries_per_s", "deliveries/s", Higher),
                m("cpu_us_per_delivery", "server CPU µs/delivery", Lower),
                m("p99_ms", "latency p99 ms", Lower),
                c("delivered_all", "every update delivered"),
            ],
            Scenario::Writers16 => vec![
                c("converged", "identical replicas"),
                m("converged_ms", "all identical ms", Lower),
                m("written_ms", "all inserts made ms (load generator)", Info),
                m("p50_ms", "update latency p50 ms", Lower),
                m("p99_ms", "update latency p99 ms", Lower),
                m(
                    "msgs_per_client",
                    "update messages applied per client",
                    Info,
                ),
                m("cpu_us_per_delivery", "server CPU µs/delivery", Lower),
                m("min_fraction", "worst replica's share of content", Higher),
            ],
            Scenario::Rooms1000 => vec![
                m("connect_ms", "connect all clients ms", Lower),
                m("rss_base_mb", "RSS before MB", Lower),
                m("rss_loaded_mb", "RSS loaded MB", Lower),
                m("kb_per_room", "RSS per loaded room KB", Lower),
                m("rss_idle_mb", "RSS after idle wait MB", Lower),
                m("idle_over_base", "idle RSS / base RSS", Lower),
                m("cpu_ms", "server CPU ms (connect+updates)", Lower),
            ],
            Scenario::Cold => vec![
                m("full_ms", "time to full content ms", Lower),
                m("synced_ms", "time to first synced ms", Lower),
                c("full_at_first_sync", "full content at first synced"),
                m(
                    "load_cpu_ms",
                    "server CPU ms (client connect → full content)",
                    Lower,
                ),
                m("state_kb", "document state KB", Info),
            ],
            Scenario::BridgeLocal | Scenario::BridgeHttp => vec![
                m(
                    "paced_p50_ms",
                    "trigger → done seen by another client p50 ms (paced)",
                    Lower,
                ),
                m("paced_p99_ms", "trigger → done seen p99 ms (paced)", Lower),
                m("lifecycles_per_s", "APICall lifecycles/s (burst)", Higher),
                m("burst_p50_ms", "trigger → done seen p50 ms (burst)", Lower),
                m("burst_p99_ms", "trigger → done seen p99 ms (burst)", Lower),
                m(
                    "cpu_ms_per_lifecycle",
                    "server CPU ms per lifecycle (burst)",
                    Lower,
                ),
                c("converged", "every entry reached done/error"),
                m("errors", "entries ending in error", Lower),
            ],
        }
    }

    pub fn run(self, env: &Env, kind: Kind, rep: usize, s: &Sizes) -> Result<Option<Record>> {
        let tag = format!("{}-r{rep}", self.name());
        let mut rec = Record {
            scenario: self.name(),
            server: kind.name().to_string(),
            rep,
            values: BTreeMap::new(),
            notes: Vec::new(),
        };
        let data = tempfile::Builder::new()
            .prefix(&format!("{tag}-{}-", kind.name()))
            .tempdir_in(&env.work)?;
        let persist = kind.is_weaver();
        match self {
            Scenario::Fanout2 | Scenario::Fanout16 | Scenario::Fanout64 | Scenario::Burst64 => {
                let (clients, rate, count) = match self {
                    Scenario::Fanout2 => (2, 500, s.fanout_count),
                    Scenario::Fanout16 => (16, 500, s.fanout_count),
                    Scenario::Fanout64 => (64, 250, s.fanout_count),
                    _ => (64, 0, s.burst_count),
                };
                let srv = servers::start(env, kind, persist.then(|| data.path()), &[], &tag)?;
                let out = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "fanout", "room": format!("fan-{rep}"), "clients": clients,
                           "count": count, "rate": rate, "timeoutMs": 30000}),
                    Duration::from_secs(120),
                    &format!("{tag}-{}", kind.name()),
                );
                let dropped = srv.log_count("Error sending message");
                let end = srv.sample(env);
                srv.stop()?;
                let out = out?;
                let deliveries = out.num("deliveries").unwrap_or(0.0);
                let v = &mut rec.values;
                put(v, "p50_ms", out.num("p50_ms"));
                put(v, "p95_ms", out.num("p95_ms"));
                put(v, "p99_ms", out.num("p99_ms"));
                put(v, "all_delivered_ms", out.num("all_delivered_ms"));
                put(v, "deliveries_per_s", out.num("deliveries_per_s"));
                if deliveries > 0.0 {
                    put(
                        v,
                        "cpu_us_per_delivery",
                        out.cpu_between("start", "end")
                            .map(|c| c * 1e6 / deliveries),
                    );
                }
                v.insert("peak_rss_mb", end.hwm_kb / 1024.0);
                v.insert("delivered_all", bool_f(out.flag("converged")));
                if dropped > 0 {
                    rec.notes
                        .push(format!("server log: {dropped} dropped-message warnings"));
                }
                if kind.is_weaver() {
                    durability(&out, &mut rec);
                }
            }
            Scenario::Writers16 => {
                let srv = servers::start(env, kind, persist.then(|| data.path()), &[], &tag)?;
                let out = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "writers", "room": format!("w-{rep}"), "clients": 16,
                           "perWriter": s.writers_per, "timeoutMs": 30000}),
                    Duration::from_secs(120),
                    &format!("{tag}-{}", kind.name()),
                );
                let dropped = srv.log_count("Error sending message");
                srv.stop()?;
                let out = out?;
                let v = &mut rec.values;
                v.insert("converged", bool_f(out.flag("converged")));
                put(v, "converged_ms", out.num("converged_ms"));
                put(v, "min_fraction", out.num("min_fraction"));
                put(v, "p50_ms", out.num("p50_ms"));
                put(v, "p99_ms", out.num("p99_ms"));
                put(v, "msgs_per_client", out.num("msgs_per_client"));
                put(v, "written_ms", out.num("written_ms"));
                if let Some(d) = out.num("deliveries").filter(|d| *d > 0.0) {
                    put(
                        v,
                        "cpu_us_per_delivery",
                        out.cpu_between("start", "end").map(|c| c * 1e6 / d),
                    );
                }
                if dropped > 0 {
                    rec.notes
                        .push(format!("server log: {dropped} dropped-message warnings"));
                }
                if kind.is_weaver() {
                    durability(&out, &mut rec);
                }
            }
            Scenario::Rooms1000 => {
                let srv = servers::start(env, kind, persist.then(|| data.path()), &[], &tag)?;
                let out = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "rooms", "runId": format!("{rep}"), "rooms": s.rooms,
                           "perRoom": 2, "updates": 5, "idleWaitMs": s.idle_wait_ms,
                           "timeoutMs": 90000}),
                    Duration::from_secs(240),
                    &format!("{tag}-{}", kind.name()),
                );
                srv.stop()?;
                let out = out?;
                let (Some(base), Some(loaded), Some(idle)) = (
                    out.marks.get("base"),
                    out.marks.get("loaded"),
                    out.marks.get("idle"),
                ) else {
                    anyhow::bail!("rooms: missing marks");
                };
                let v = &mut rec.values;
                put(v, "connect_ms", out.num("connect_ms"));
                v.insert("rss_base_mb", base.rss_kb / 1024.0);
                v.insert("rss_loaded_mb", loaded.rss_kb / 1024.0);
                v.insert(
                    "kb_per_room",
                    (loaded.rss_kb - base.rss_kb) / s.rooms as f64,
                );
                v.insert("rss_idle_mb", idle.rss_kb / 1024.0);
                v.insert("idle_over_base", idle.rss_kb / base.rss_kb.max(1.0));
                v.insert("cpu_ms", (loaded.cpu_s - base.cpu_s) * 1e3);
                if !out.flag("converged") {
                    rec.notes.push("rooms did not all converge".into());
                }
            }
            Scenario::BridgeLocal | Scenario::BridgeHttp => {
                if kind != Kind::Weaver {
                    return Ok(None);
                }
                let help = std::process::Command::new(&env.weaver_bin)
                    .args(["serve", "--help"])
                    .output()?;
                if !String::from_utf8_lossy(&help.stdout).contains("--bridge-config") {
                    anyhow::bail!(
                        "skipped: this weaver build has no bridge (`weaver serve --help` lists no --bridge-config)"
                    );
                }
                // The project's own schema code, copied next to bench/node_modules so that it
                // binds to the same yjs instance as the load generator.
                let gen_dir = env.bench_dir().join(".gen");
                std::fs::create_dir_all(&gen_dir)?;
                let wd = gen_dir.join("weaver-doc.js");
                std::fs::copy(env.root.join("js/weaver-doc/weaver-doc.js"), &wd)
                    .context("copying js/weaver-doc/weaver-doc.js")?;
                let mut extra = Vec::new();
                let mut api_port = serde_json::Value::Null;
                if self == Scenario::BridgeHttp {
                    let port = servers::free_port()?;
                    let cfg = data.path().join("bridge.toml");
                    std::fs::write(
                        &cfg,
                        format!(
                            "[routes]\nsearch = \"standin\"\n\n[[integrations]]\nname = \"standin\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/index\"\ntimeout_ms = 10000\nconcurrency = 16\n"
                        ),
                    )?;
                    extra = vec!["--bridge-config".to_string(), cfg.display().to_string()];
                    api_port = port.into();
                }
                let store = data.path().join("store");
                let srv = servers::start(env, kind, Some(&store), &extra, &tag)?;
                let out = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "bridge", "room": format!("bridge-{rep}"), "runId": rep,
                           "paced": s.bridge_paced, "burst": s.bridge_burst, "rate": 20,
                           "apiPort": api_port, "weaverDocPath": wd, "timeoutMs": 60000}),
                    Duration::from_secs(180),
                    &format!("{tag}-{}", kind.name()),
                );
                srv.stop()?;
                let out = out?;
                let v = &mut rec.values;
                for k in [
                    "paced_p50_ms",
                    "paced_p99_ms",
                    "lifecycles_per_s",
                    "burst_p50_ms",
                    "burst_p99_ms",
                    "errors",
                ] {
                    put(v, k, out.num(k));
                }
                v.insert("converged", bool_f(out.flag("converged")));
                if s.bridge_burst > 0 {
                    put(
                        v,
                        "cpu_ms_per_lifecycle",
                        out.cpu_between("start", "end")
                            .map(|c| c * 1e3 / s.bridge_burst as f64),
                    );
                }
                if let Some(u) = out.num("unfinished").filter(|u| *u > 0.0) {
                    rec.notes
                        .push(format!("{u} entries never reached done/error"));
                }
            }
            Scenario::Cold => {
                if kind == Kind::Hocuspocus {
                    // Configured in memory, as in the anchors' measurement: nothing survives a restart.
                    return Ok(None);
                }
                let expect = data.path().join("expected.txt");
                let store = data.path().join("store");
                std::fs::create_dir_all(&store)?;
                let srv = servers::start(env, kind, Some(&store), &[], &format!("{tag}-pop"))?;
                // y-sweet writes its snapshot at most every ~10 s: let it, so it is not penalised.
                let settle = if kind == Kind::Ysweet { 12_000 } else { 1_500 };
                let pop = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "cold-populate", "room": "cold", "clients": 5,
                           "updates": s.cold_updates, "rate": 400, "settleMs": settle,
                           "expectFile": expect, "timeoutMs": 60000}),
                    Duration::from_secs(180),
                    &format!("{tag}-pop-{}", kind.name()),
                );
                let dropped = srv.log_count("Error sending message");
                srv.stop()?;
                if dropped > 0 {
                    rec.notes.push(format!(
                        "server log while populating: {dropped} dropped-message warnings"
                    ));
                }
                let pop = pop.context("cold: populating")?;
                if !pop.flag("converged") {
                    rec.notes.push("populating clients did not converge".into());
                }
                let srv = servers::start(env, kind, Some(&store), &[], &format!("{tag}-load"))?;
                let load = loadgen::run(
                    env,
                    Some(&srv),
                    kind.name(),
                    &srv.url(),
                    json!({"scenario": "cold-load", "room": "cold", "expectFile": expect,
                           "timeoutMs": 30000}),
                    Duration::from_secs(60),
                    &format!("{tag}-load-{}", kind.name()),
                );
                srv.stop()?;
                let load = load?;
                let v = &mut rec.values;
                put(v, "full_ms", load.num("full_ms"));
                put(v, "synced_ms", load.num("synced_ms"));
                v.insert(
                    "full_at_first_sync",
                    bool_f(load.flag("full_at_first_sync")),
                );
                put(
                    v,
                    "load_cpu_ms",
                    load.marks.get("end").map(|e| e.cpu_s * 1e3),
                );
                put(v, "state_kb", pop.num("state_bytes").map(|b| b / 1024.0));
                if load.num("full_ms").is_none() {
                    rec.notes.push(format!(
                        "never reached the full content ({} of {} chars at first sync)",
                        load.num("len_at_first_sync").unwrap_or(-1.0),
                        load.num("expected_len").unwrap_or(-1.0)
                    ));
                }
            }
        }
        Ok(Some(rec))
    }
}

pub fn put(v: &mut BTreeMap<&'static str, f64>, k: &'static str, x: Option<f64>) {
    if let Some(x) = x.filter(|x| x.is_finite()) {
        v.insert(k, x);
    }
}

pub fn bool_f(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Weaver only: receipt→fsync latency quantiles, commit (transaction + fsync) time, fsyncs/s,
/// requests folded per commit and slow-consumer closes over the measured window, from the
/// relay's own /metrics (names in crates/relay/src/metrics.rs).
pub fn durability(out: &Outcome, rec: &mut Record) {
    let (Some(a), Some(b)) = (out.marks.get("start"), out.marks.get("end")) else {
        return;
    };
    let (Some(ta), Some(tb)) = (a.metrics.as_deref(), b.metrics.as_deref()) else {
        rec.notes.push("no /metrics from weaver".into());
        return;
    };
    let v = &mut rec.values;
    for (hist, k50, k99) in [
        (PERSIST_HIST, "persist_p50_ms", "persist_p99_ms"),
        (COMMIT_HIST, "commit_p50_ms", "commit_p99_ms"),
    ] {
        let (ba, bb) = (prom::buckets(ta, hist), prom::buckets(tb, hist));
        put(v, k50, prom::delta_quantile(&ba, &bb, 0.5).map(|s| s * 1e3));
        put(
            v,
            k99,
            prom::delta_quantile(&ba, &bb, 0.99).map(|s| s * 1e3),
        );
    }
    let delta = |name: &str| Some(prom::sum(tb, name)? - prom::sum(ta, name).unwrap_or(0.0));
    let commits = delta(&format!("{COMMIT_HIST}_count"));
    if let (Some(n), Some(secs)) = (commits, out.secs_between("start", "end"))
        && secs > 0.0
    {
        v.insert("fsyncs_per_s", n / secs);
    }
    if let (Some(ops), Some(n)) = (delta(&format!("{OPS_HIST}_sum")), commits)
        && n > 0.0
    {
        v.insert("ops_per_commit", ops / n);
    }
    if let (Some(u), Some(n)) = (delta(UPDATES_IN), commits)
        && n > 0.0
    {
        v.insert("updates_per_commit", u / n);
    }
    put(v, "slow_consumer_closes", delta(SLOW_CLOSES));
}

/// The durability figures (weaver only), shown in their own table.
pub fn durability_metrics() -> Vec<MetricDef> {
    use Better::Info;
    vec![
        m("persist_p50_ms", "persist request → durable p50 ms", Info),
        m("persist_p99_ms", "persist request → durable p99 ms", Info),
        m(
            "commit_p50_ms",
            "one group commit (txn + fsync) p50 ms",
            Info,
        ),
        m(
            "commit_p99_ms",
            "one group commit (txn + fsync) p99 ms",
            Info,
        ),
        m("fsyncs_per_s", "group commits (fsyncs)/s", Info),
        m("ops_per_commit", "persist requests per commit", Info),
        m("updates_per_commit", "client updates per commit", Info),
        m("slow_consumer_closes", "slow-consumer closes (1013)", Info),
    ]
}
