//! The `cluster` scenario (issue 16), weaver only: fan-out latency and server CPU per delivery
//! of one room on `redb-1` (plain `weaver serve`), `js-1` (one node on JetStream) and `js-3`
//! (three nodes on one NATS, the writer on node 1 = the room's owner, the receivers round-robin
//! over the nodes, so 2/3 of the deliveries are forwarded), and failover time after `kill -9`
//! of a room's owner, with lost updates counted, and APICall lifecycles through the bridge
//! (one bridge leader per cluster) next to the single node. Configurations are interleaved across
//! repetitions like the other scenarios; the load generator's side is bench/loadgen.mjs
//! (`fanout` with `urls`, `failover`, `bridge` with `urls`).

use crate::cluster::{Deployment, Topology};
use crate::loadgen;
use crate::report;
use crate::scenario::{self, Better, MetricDef, Record};
use crate::servers::{self, Env};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The lease TTL of the fan-out runs in cluster mode: Weaver's default.
const FANOUT_TTL_MS: u64 = 10_000;

/// Sizes of one invocation.
#[derive(Debug, Clone)]
pub struct ClusterSizes {
    /// Appends of the fan-out writer.
    pub fanout_count: u64,
    /// Fan-out rate, appends/s (as fanout16).
    pub fanout_rate: u64,
    /// Clients of the fan-out room: 1 writer + the receivers.
    pub fanout_clients: u64,
    /// Updates/s of each of the two failover writers.
    pub failover_rate: u64,
    /// How long the failover writers write before the owner is killed.
    pub failover_pre_ms: u64,
    /// Lease TTLs to measure failover at, one configuration each.
    pub ttls: Vec<u64>,
    /// Bridge triggers at 20/s (latency), then at once (lifecycles/s).
    pub bridge_paced: u64,
    pub bridge_burst: u64,
}

impl ClusterSizes {
    pub fn new(quick: bool, ttls: &[u64]) -> ClusterSizes {
        ClusterSizes {
            fanout_count: if quick { 300 } else { 2000 },
            fanout_rate: 500,
            // 15 receivers: 5 per node on js-3, so exactly 2/3 of deliveries are forwarded.
            fanout_clients: 16,
            failover_rate: 50,
            failover_pre_ms: if quick { 1000 } else { 2000 },
            ttls: ttls.to_vec(),
            bridge_paced: if quick { 20 } else { 100 },
            bridge_burst: if quick { 50 } else { 500 },
        }
    }

    fn failover_column(ttl: u64) -> String {
        format!("js-3, lease TTL {ttl} ms")
    }
}

fn fanout_metrics() -> Vec<MetricDef> {
    use Better::*;
    vec![
        MetricDef::new("p50_ms", "latency p50 ms", Lower),
        MetricDef::new("p99_ms", "latency p99 ms", Lower),
        MetricDef::new(
            "p50_forwarded_ms",
            "latency p50 ms, receivers on other nodes than the writer (forwarded)",
            Lower,
        ),
        MetricDef::new(
            "p50_local_ms",
            "latency p50 ms, receivers on the writer's node",
            Lower,
        ),
        MetricDef::new(
            "cpu_us_per_delivery",
            "weaver CPU µs/delivery (all nodes)",
            Lower,
        ),
        MetricDef::new(
            "cpu_nats_us_per_delivery",
            "weaver + nats-server CPU µs/delivery",
            Lower,
        ),
        MetricDef::new("persist_p50_ms", "owner: persist → durable p50 ms", Info),
        MetricDef::new("persist_p99_ms", "owner: persist → durable p99 ms", Info),
        MetricDef::new("peak_rss_mb", "peak RSS MB (all nodes)", Info),
        MetricDef::counted("delivered_all", "every update delivered"),
    ]
}

fn failover_metrics() -> Vec<MetricDef> {
    use Better::*;
    vec![
        MetricDef::new(
            "failover_ms",
            "kill -9 → first new update seen across nodes ms",
            Lower,
        ),
        MetricDef::new(
            "owner_ms",
            "kill -9 → a client retrying every 100 ms synced again (new owner) ms",
            Lower,
        ),
        MetricDef::new("moved_ms", "kill -9 → moved clients synced ms", Lower),
        MetricDef::new("written", "updates written", Info),
        MetricDef::new("written_after_kill", "of them after the kill", Info),
        MetricDef::new("lost", "updates lost", Lower),
        MetricDef::new("shown_lost", "shown before the kill and lost", Lower),
        MetricDef::counted("converged", "every client got every update"),
    ]
}

/// Runs the scenario; returns its tables (markdown) and records.
pub fn run(env: &Env, nats_bin: &Path, reps: usize, sizes: &ClusterSizes) -> (String, Vec<Record>) {
    let mut text = String::new();
    let mut fan: Vec<Record> = Vec::new();
    for rep in 0..reps {
        for i in 0..Topology::ALL.len() {
            let topo = Topology::ALL[(i + rep) % Topology::ALL.len()];
            let r = step("cluster-fanout", topo.name(), rep, reps, || {
                fanout(env, nats_bin, topo, rep, sizes)
            });
            fan.push(r);
        }
    }
    let columns: Vec<&str> = Topology::ALL.iter().map(|t| t.name()).collect();
    let refs: Vec<&Record> = fan.iter().collect();
    text.push_str(&report::table_vs(
        &format!(
            "cluster fan-out: 1 writer + {} receivers in one room, {} appends @{}/s; js-3: writer on the owner (node 1), receivers round-robin over 3 nodes (ratio to redb-1)",
            sizes.fanout_clients - 1,
            sizes.fanout_count,
            sizes.fanout_rate
        ),
        &refs,
        &columns,
        Some(Topology::Redb1.name()),
        &fanout_metrics(),
    ));
    let mut fo: Vec<Record> = Vec::new();
    for rep in 0..reps {
        for i in 0..sizes.ttls.len() {
            let ttl = sizes.ttls[(i + rep) % sizes.ttls.len()];
            let col = ClusterSizes::failover_column(ttl);
            let r = step("cluster-failover", &col, rep, reps, || {
                failover(env, nats_bin, ttl, rep, sizes)
            });
            fo.push(r);
        }
    }
    let cols: Vec<String> = sizes
        .ttls
        .iter()
        .map(|t| ClusterSizes::failover_column(*t))
        .collect();
    let cols: Vec<&str> = cols.iter().map(String::as_str).collect();
    let refs: Vec<&Record> = fo.iter().collect();
    if !cols.is_empty() {
        text.push_str(&report::table_vs(
            &format!(
                "cluster failover: 3 nodes, the room owned by node A; 2 writers on B and C @{}/s each, 2 clients on A, 1 more on B and C; kill -9 A after {} ms (+ 0, 1/3, 2/3 of the lease renewal period in repetitions 1, 2, 3), A's clients move to B",
                sizes.failover_rate, sizes.failover_pre_ms
            ),
            &refs,
            &cols,
            None,
            &failover_metrics(),
        ));
    }
    let mut br: Vec<Record> = Vec::new();
    for rep in 0..reps {
        for i in 0..Topology::ALL.len() {
            let topo = Topology::ALL[(i + rep) % Topology::ALL.len()];
            let r = step("cluster-bridge", topo.name(), rep, reps, || {
                bridge(env, nats_bin, topo, rep, sizes)
            });
            br.push(r);
        }
    }
    let refs: Vec<&Record> = br.iter().collect();
    text.push_str(&report::table_vs(
        &format!(
            "cluster bridge: HTTP integration to a stand-in API; {} triggers @20/s, then {} at once; writer on node 1 (the room's owner), watcher on the last node (ratio to redb-1)",
            sizes.bridge_paced, sizes.bridge_burst
        ),
        &refs,
        &columns,
        Some(Topology::Redb1.name()),
        &bridge_metrics(),
    ));
    fan.extend(fo);
    fan.extend(br);
    (text, fan)
}

/// One run with its progress line; a failure becomes a record with a note.
fn step(
    scenario: &'static str,
    column: &str,
    rep: usize,
    reps: usize,
    f: impl FnOnce() -> Result<Record>,
) -> Record {
    use std::io::Write;
    eprint!("{scenario} run {}/{reps} on {column} … ", rep + 1);
    let _ = std::io::stderr().flush();
    match f() {
        Ok(r) => {
            eprintln!("{}", brief(&r));
            r
        }
        Err(e) => {
            eprintln!("FAILED: {e:#}");
            Record {
                scenario,
                server: column.to_string(),
                rep,
                values: BTreeMap::new(),
                notes: vec![format!("failed: {e:#}")],
            }
        }
    }
}

fn brief(r: &Record) -> String {
    let mut parts: Vec<String> = r
        .values
        .iter()
        .map(|(k, v)| format!("{k}={}", report::fmt_num(*v)))
        .collect();
    parts.extend(r.notes.iter().cloned());
    parts.join(" ")
}

fn fanout(
    env: &Env,
    nats_bin: &Path,
    topo: Topology,
    rep: usize,
    s: &ClusterSizes,
) -> Result<Record> {
    let tag = format!("cluster-fanout-r{rep}-{}", topo.name());
    let dep = Deployment::start(
        env,
        topo.clustered().then_some(nats_bin),
        topo.nodes(),
        FANOUT_TTL_MS,
        &[],
        &tag,
    )?;
    let urls = dep.ws_urls();
    let sample = || dep.sample(env);
    let out = loadgen::run_sampled(
        env,
        &sample,
        "weaver",
        &urls[0],
        json!({"scenario": "fanout", "room": format!("cfan-{rep}"), "clients": s.fanout_clients,
               "count": s.fanout_count, "rate": s.fanout_rate, "urls": urls, "timeoutMs": 30000}),
        Duration::from_secs(120),
        &tag,
    );
    let end = dep.sample(env);
    dep.stop()?;
    let out = out?;
    let mut rec = Record {
        scenario: "cluster-fanout",
        server: topo.name().to_string(),
        rep,
        values: BTreeMap::new(),
        notes: Vec::new(),
    };
    let deliveries = out.num("deliveries").unwrap_or(0.0);
    let v = &mut rec.values;
    scenario::put(v, "p50_ms", out.num("p50_ms"));
    scenario::put(v, "p99_ms", out.num("p99_ms"));
    if topo.nodes() > 1 {
        scenario::put(v, "p50_local_ms", out.num("p50_local_ms"));
        scenario::put(v, "p50_forwarded_ms", out.num("p50_forwarded_ms"));
    }
    if deliveries > 0.0 {
        let weaver = out.cpu_between("start", "end");
        let nats = out.aux_cpu_between("start", "end");
        scenario::put(
            v,
            "cpu_us_per_delivery",
            weaver.map(|c| c * 1e6 / deliveries),
        );
        scenario::put(
            v,
            "cpu_nats_us_per_delivery",
            weaver.zip(nats).map(|(w, n)| (w + n) * 1e6 / deliveries),
        );
    }
    v.insert("peak_rss_mb", end.hwm_kb / 1024.0);
    v.insert("delivered_all", scenario::bool_f(out.flag("converged")));
    scenario::durability(&out, &mut rec);
    Ok(rec)
}

fn failover(env: &Env, nats_bin: &Path, ttl: u64, rep: usize, s: &ClusterSizes) -> Result<Record> {
    let tag = format!("cluster-failover-r{rep}-ttl{ttl}");
    // What is left of the lease at the kill depends on when the owner last renewed it (every
    // TTL/3): repetitions kill at three phases of that period.
    let pre_ms = s.failover_pre_ms + (rep as u64 % 3) * ttl / 9;
    let dep = Deployment::start(env, Some(nats_bin), 3, ttl, &[], &tag)?;
    let sample = || dep.sample(env);
    let urls = dep.ws_urls();
    let out = loadgen::run_sampled(
        env,
        &sample,
        "weaver",
        &urls[0],
        json!({"scenario": "failover", "room": format!("cfo-{rep}-{ttl}"), "urls": urls,
               "httpUrls": dep.http_urls(), "killPid": dep.pids()[0], "rate": s.failover_rate,
               "preMs": pre_ms, "postMs": 1000, "maxOutageMs": ttl + 20_000,
               "settleMs": 30_000}),
        Duration::from_millis(ttl + 120_000),
        &tag,
    );
    dep.stop()?;
    let out = out?;
    let mut rec = Record {
        scenario: "cluster-failover",
        server: ClusterSizes::failover_column(ttl),
        rep,
        values: BTreeMap::new(),
        notes: Vec::new(),
    };
    let v = &mut rec.values;
    for k in [
        "failover_ms",
        "owner_ms",
        "moved_ms",
        "written",
        "written_after_kill",
        "lost",
        "shown_lost",
    ] {
        scenario::put(v, k, out.num(k));
    }
    v.insert("converged", scenario::bool_f(out.flag("converged")));
    if out.num("failover_ms").is_none() {
        rec.notes
            .push("no update written after the kill crossed nodes".into());
    }
    if !out.flag("fresh_synced") {
        rec.notes
            .push("the fresh client after the run did not sync".into());
    }
    Ok(rec)
}

fn bridge_metrics() -> Vec<MetricDef> {
    use Better::*;
    vec![
        MetricDef::new(
            "paced_p50_ms",
            "trigger → done seen by a client on another node p50 ms (paced)",
            Lower,
        ),
        MetricDef::new("paced_p99_ms", "… p99 ms (paced)", Lower),
        MetricDef::new("lifecycles_per_s", "APICall lifecycles/s (burst)", Higher),
        MetricDef::new("burst_p99_ms", "trigger → done p99 ms (burst)", Lower),
        MetricDef::new(
            "cpu_ms_per_lifecycle",
            "CPU ms per lifecycle, weaver nodes + nats-server (burst)",
            Lower,
        ),
        MetricDef::counted("converged", "every trigger reached done"),
    ]
}

/// APICall lifecycles through the bridge with an HTTP integration answered by a stand-in API
/// in the load generator: the writer on node 1 (the room's owner), the watcher on the last
/// node; on js-3 the bridge leader is whichever node won the role, so write-backs may cross
/// nodes too.
fn bridge(
    env: &Env,
    nats_bin: &Path,
    topo: Topology,
    rep: usize,
    s: &ClusterSizes,
) -> Result<Record> {
    let tag = format!("cluster-bridge-r{rep}-{}", topo.name());
    let port = servers::free_port()?;
    let cfg_dir = tempfile::Builder::new()
        .prefix(&tag)
        .tempdir_in(&env.work)?;
    let cfg = cfg_dir.path().join("bridge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[routes]\nsearch = \"standin\"\n\n[[integrations]]\nname = \"standin\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/index\"\ntimeout_ms = 10000\nconcurrency = 16\n"
        ),
    )?;
    let gen_dir = env.bench_dir().join(".gen");
    std::fs::create_dir_all(&gen_dir)?;
    let wd = gen_dir.join("weaver-doc.js");
    std::fs::copy(env.root.join("js/weaver-doc/weaver-doc.js"), &wd)
        .context("copying js/weaver-doc/weaver-doc.js")?;
    let extra = vec!["--bridge-config".to_string(), cfg.display().to_string()];
    let dep = Deployment::start(
        env,
        topo.clustered().then_some(nats_bin),
        topo.nodes(),
        FANOUT_TTL_MS,
        &extra,
        &tag,
    )?;
    if topo.clustered() {
        wait_for_bridge_leader(&dep)?;
    }
    let urls = dep.ws_urls();
    let sample = || dep.sample(env);
    let out = loadgen::run_sampled(
        env,
        &sample,
        "weaver",
        &urls[0],
        json!({"scenario": "bridge", "room": format!("cbridge-{rep}"), "runId": rep,
               "paced": s.bridge_paced, "burst": s.bridge_burst, "rate": 20, "urls": urls,
               "apiPort": port, "weaverDocPath": wd, "timeoutMs": 60000}),
        Duration::from_secs(180),
        &tag,
    );
    dep.stop()?;
    let out = out?;
    let mut rec = Record {
        scenario: "cluster-bridge",
        server: topo.name().to_string(),
        rep,
        values: BTreeMap::new(),
        notes: Vec::new(),
    };
    let v = &mut rec.values;
    for k in [
        "paced_p50_ms",
        "paced_p99_ms",
        "lifecycles_per_s",
        "burst_p99_ms",
    ] {
        scenario::put(v, k, out.num(k));
    }
    v.insert("converged", scenario::bool_f(out.flag("converged")));
    let weaver = out.cpu_between("start", "end");
    let nats = out.aux_cpu_between("start", "end").unwrap_or(0.0);
    scenario::put(
        v,
        "cpu_ms_per_lifecycle",
        weaver.map(|w| (w + nats) * 1e3 / s.bridge_burst as f64),
    );
    if let Some(u) = out.num("unfinished").filter(|u| *u > 0.0) {
        rec.notes
            .push(format!("{u} entries never reached done/error"));
    }
    Ok(rec)
}

/// Cluster mode starts the bridge once a node won the role: wait for `GET /api/calls` to
/// answer 200 on node 1 (non-leaders proxy it to the leader, 503 while there is none).
fn wait_for_bridge_leader(dep: &Deployment) -> Result<()> {
    let port = dep.ports()[0];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while servers::http_get(port, "/api/calls").is_err() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("no bridge leader answered /api/calls within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
