//! `conns`: open connections 1k → 10k → 30k on one server, with `--per-room` clients per
//! room, against Weaver and the anchors interleaved. Clients are in-process (`wsclient.rs`,
//! one tokio thread pinned to the client CPU); each completes the sync handshake, then idles,
//! pinging the server every `ping_every`. Figures: RSS per connection (growth over the
//! server's RSS before the first client, divided by the connections open), connect rate, and
//! server CPU over a fixed idle window.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::plot::Series;
use crate::scenario::{Better, MetricDef, Record};
use crate::servers::{self, Env, Kind};
use crate::wsclient::{self, Framing, Target};

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct ConnsSizes {
    /// Connection counts (the curve's axis).
    pub points: Vec<usize>,
    /// Clients per room, one curve each.
    pub per_room: Vec<usize>,
    /// Handshakes in flight at once.
    pub in_flight: usize,
    /// Idle window the server's CPU is measured over.
    pub window: Duration,
    /// Each client pings the server this often.
    pub ping_every: Duration,
}

impl ConnsSizes {
    pub fn new(quick: bool, points: Option<Vec<usize>>, per_room: Option<Vec<usize>>) -> Self {
        ConnsSizes {
            points: points.unwrap_or(if quick {
                vec![100, 300]
            } else {
                vec![1_000, 10_000, 30_000]
            }),
            per_room: per_room.unwrap_or(vec![100, 1]),
            in_flight: 64,
            window: Duration::from_secs(if quick { 3 } else { 15 }),
            ping_every: Duration::from_secs(if quick { 1 } else { 10 }),
        }
    }
}

pub fn metrics() -> Vec<MetricDef> {
    use Better::*;
    vec![
        MetricDef::new("conns", "connections open", Info),
        MetricDef::new("rss_per_conn_kib", "RSS per connection KiB", Lower),
        MetricDef::new("rss_mb", "server RSS with all open MB", Lower),
        MetricDef::new("connect_per_s", "connect + sync rate /s", Higher),
        MetricDef::new("idle_cpu_pct", "server CPU while idle with pings %", Lower),
        MetricDef::new("failed", "connections failed or dropped", Lower),
    ]
}

/// The file-descriptor hard limit, after raising this process's soft limit to it (the
/// servers started afterwards inherit it). Safe code only: `prlimit` on our own pid.
pub fn raise_nofile() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse::<u64>().ok())
        .context("no hard limit of open files in /proc/self/limits")?;
    let st = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={hard}:{hard}"))
        .status()
        .context("running prlimit")?;
    if !st.success() {
        bail!("prlimit could not raise the open-files limit to {hard}");
    }
    Ok(hard)
}

/// Where client `i` of a run connects.
fn target(kind: Kind, port: u16, room: &str, i: usize) -> Target {
    let addr = format!("127.0.0.1:{port}");
    let source = wsclient::source_addr(i);
    match kind {
        Kind::Hocuspocus | Kind::WeaverHocus => Target {
            addr,
            source,
            path: "/".into(),
            doc: room.into(),
            framing: Framing::Hocuspocus,
        },
        Kind::Ysweet => Target {
            addr,
            source,
            path: format!("/d/{room}/ws/{room}"),
            doc: room.into(),
            framing: Framing::YWebsocket,
        },
        Kind::Weaver | Kind::Yws => Target {
            addr,
            source,
            path: format!("/{room}"),
            doc: room.into(),
            framing: Framing::YWebsocket,
        },
    }
}

/// One run: `n` clients, `per_room` per room, on a fresh `kind`.
pub fn run_one(
    env: &Env,
    rt: &tokio::runtime::Runtime,
    kind: Kind,
    n: usize,
    per_room: usize,
    sizes: &ConnsSizes,
    rep: usize,
) -> Result<Record> {
    let data = env
        .work
        .join(format!("conns-{}-{n}-{per_room}-{rep}", kind.name()));
    std::fs::create_dir_all(&data)?;
    let extra: Vec<String> = if kind.is_weaver() {
        vec![format!("--max-connections={}", n + 1000)]
    } else {
        vec![]
    };
    let server = servers::start(
        env,
        kind,
        kind.is_weaver().then_some(data.as_path()),
        &extra,
        &format!("conns-{n}-{per_room}-{rep}"),
    )?;
    let result = rt.block_on(measure(env, &server, n, per_room, sizes));
    let stopped = server.stop();
    let _ = std::fs::remove_dir_all(&data);
    let mut rec = result?;
    stopped?;
    rec.rep = rep;
    rec.server = kind.name().to_string();
    Ok(rec)
}

async fn measure(
    env: &Env,
    server: &servers::Running,
    n: usize,
    per_room: usize,
    sizes: &ConnsSizes,
) -> Result<Record> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = server.sample(env);
    let stop = CancellationToken::new();
    let mut holders = JoinSet::new();
    let mut connecting = JoinSet::new();
    let mut failed = 0usize;
    let per_room = per_room.max(1);
    let started = Instant::now();
    // Bounded in count (n) and time: each handshake has its own timeout.
    let mut next = 0usize;
    while next < n || !connecting.is_empty() {
        while next < n && connecting.len() < sizes.in_flight {
            let t = target(
                server.kind,
                server.port,
                &format!("c{}", next / per_room),
                next,
            );
            connecting.spawn(async move { wsclient::connect(&t, Duration::from_secs(20)).await });
            next += 1;
        }
        match connecting.join_next().await {
            Some(Ok(Ok(ws))) => {
                let offset = sizes
                    .ping_every
                    .mul_f64((holders.len() % 1000) as f64 / 1000.0);
                holders.spawn(wsclient::hold(ws, stop.clone(), sizes.ping_every, offset));
            }
            Some(_) => failed += 1,
            None => break,
        }
    }
    let connect_s = started.elapsed().as_secs_f64();
    let open = holders.len();
    // Let the server settle (allocations of the last handshakes, first pings).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = server.sample(env);
    tokio::time::sleep(sizes.window).await;
    let idle = server.sample(env);
    stop.cancel();
    let mut dropped = 0usize;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(r) = holders.join_next().await {
            if matches!(r, Ok(true) | Err(_)) {
                dropped += 1;
            }
        }
    })
    .await;
    if ended.is_err() {
        holders.abort_all();
    }
    let mut rec = Record {
        scenario: "conns",
        server: String::new(),
        rep: 0,
        values: Default::default(),
        notes: vec![],
    };
    let v = &mut rec.values;
    v.insert("conns", open as f64);
    v.insert("per_room", per_room as f64);
    v.insert(
        "rss_per_conn_kib",
        (loaded.rss_kb - base.rss_kb) / open.max(1) as f64,
    );
    v.insert("rss_mb", loaded.rss_kb / 1024.0);
    v.insert("base_rss_mb", base.rss_kb / 1024.0);
    v.insert("connect_per_s", open as f64 / connect_s.max(1e-9));
    v.insert(
        "idle_cpu_pct",
        (idle.cpu_s - loaded.cpu_s) / sizes.window.as_secs_f64() * 100.0,
    );
    v.insert("failed", (failed + dropped) as f64);
    if failed > 0 {
        rec.notes.push(format!("{failed} of {n} did not connect"));
    }
    if dropped > 0 {
        rec.notes.push(format!("{dropped} dropped by the server"));
    }
    Ok(rec)
}

/// Pins this process (the clients' thread) to `cpus`.
pub fn pin_self(cpus: &str) {
    let _ = Command::new("taskset")
        .arg("-pc")
        .arg(cpus)
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status();
}

/// Every point × per-room × repetition, servers interleaved (order rotated per repetition).
/// Returns the tables, the records and the plots written to `img`.
pub fn run(
    env: &Env,
    kinds: &[Kind],
    reps: usize,
    sizes: &ConnsSizes,
    img: &Path,
) -> Result<(String, Vec<Record>)> {
    let hard = raise_nofile()?;
    // Each side holds one descriptor per connection plus its own (files, listeners, pipes).
    let cap = usize::try_from(hard)
        .unwrap_or(usize::MAX)
        .saturating_sub(500);
    pin_self(&env.client_cpu);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut text = String::new();
    let mut all = Vec::new();
    let mut note = String::new();
    for &per_room in &sizes.per_room {
        let mut recs: Vec<Record> = Vec::new();
        for &want in &sizes.points {
            let n = want.min(cap);
            if n < want {
                note = format!(
                    "\n{want} connections asked, {n} run: the open-files hard limit is {hard} per process.\n"
                );
            }
            for rep in 0..reps {
                for i in 0..kinds.len() {
                    let kind = kinds[(i + rep) % kinds.len()];
                    eprint!(
                        "conns {n} ({per_room}/room) run {}/{reps} on {} … ",
                        rep + 1,
                        kind.name()
                    );
                    match run_one(env, &rt, kind, n, per_room, sizes, rep) {
                        Ok(r) => {
                            eprintln!(
                                "{:.1} KiB/conn, {:.0}/s, idle CPU {:.2} %",
                                r.values["rss_per_conn_kib"],
                                r.values["connect_per_s"],
                                r.values["idle_cpu_pct"]
                            );
                            recs.push(r);
                        }
                        Err(e) => eprintln!("FAILED: {e:#}"),
                    }
                }
            }
            let point: Vec<&Record> = recs.iter().filter(|r| point_of(r, n)).collect();
            text.push_str(&crate::report::table(
                &format!("conns: {n} connections, {per_room} per room"),
                &point,
                kinds,
                &metrics(),
            ));
        }
        for (key, label, file) in [
            ("rss_per_conn_kib", "RSS per connection (KiB)", "rss"),
            (
                "idle_cpu_pct",
                "server CPU while idle with pings (%)",
                "cpu",
            ),
            ("connect_per_s", "connect + sync per second", "rate"),
        ] {
            let series = curves(&recs, kinds, key);
            let svg = crate::plot::line_plot(
                &format!("{label}, {per_room} per room"),
                "open connections",
                label,
                &series,
                true,
            );
            let path = img.join(format!("scale-conns-{file}-{per_room}pr.svg"));
            std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
            if key != "connect_per_s" {
                text.push_str(&growth_line(key, per_room, &series));
            }
        }
        all.extend(recs);
    }
    text.push_str(&note);
    Ok((text, all))
}

/// Whether `r` ran at the point of `n` asked connections (a run that lost a few still counts).
fn point_of(r: &Record, n: usize) -> bool {
    let conns = r.values.get("conns").copied().unwrap_or(0.0) as usize;
    let failed = r.values.get("failed").copied().unwrap_or(0.0) as usize;
    conns + failed >= n && conns <= n
}

/// Per server: (asked connections, median of `key`) at each point.
pub fn curves(recs: &[Record], kinds: &[Kind], key: &str) -> Vec<Series> {
    kinds
        .iter()
        .map(|k| {
            let mut by_n: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
            for r in recs.iter().filter(|r| r.server == k.name()) {
                let n = (r.values.get("conns").copied().unwrap_or(0.0)
                    + r.values.get("failed").copied().unwrap_or(0.0))
                    as usize;
                if let Some(&v) = r.values.get(key) {
                    by_n.entry(n).or_default().push(v);
                }
            }
            Series {
                name: k.name().to_string(),
                points: by_n
                    .into_iter()
                    .map(|(n, mut xs)| {
                        xs.sort_by(f64::total_cmp);
                        (n as f64, xs[xs.len() / 2])
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One line per series: how the total behind a per-item figure grows (exponent of the
/// figure × count; ≤ 1 is at most linear).
pub fn growth_line(key: &str, per_room: usize, series: &[Series]) -> String {
    let mut s = format!("\n{key} ({per_room}/room), growth exponent of the total:");
    for ser in series {
        let total: Vec<(f64, f64)> = ser
            .points
            .iter()
            .map(|&(x, y)| {
                if key == "idle_cpu_pct" {
                    (x, y)
                } else {
                    (x, x * y)
                }
            })
            .collect();
        if let Some(k) = crate::plot::growth_exponent(&total) {
            s.push_str(&format!(" {} {k:.2};", ser.name));
        }
    }
    s.push('\n');
    s
}
