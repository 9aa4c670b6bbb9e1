//! `stored-rooms`: Weaver started on a store of 10k → 100k → 300k rooms (written by
//! `populate.rs`), bridge on as by default. Figures: time from spawn to `/readyz`, rooms loaded
//! after start-up (must be 0: rooms load lazily, the bridge's sweep only reads stored bytes),
//! idle RSS, time to page through `GET /api/rooms`, disk bytes per room. Weaver only: the
//! anchors keep no listing of stored rooms to compare with. Each point also runs once with
//! `--skip-store-check`, to show what the page-checksum check at open costs.

use anyhow::{Result, anyhow, bail};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::plot::Series;
use crate::populate;
use crate::scenario::Record;
use crate::servers::{self, Env, Kind};

#[derive(Debug, Clone)]
pub struct StoredSizes {
    pub points: Vec<usize>,
    /// How long after ready the idle figures are read (the sweep runs meanwhile).
    pub settle: Duration,
}

impl StoredSizes {
    pub fn new(quick: bool, points: Option<Vec<usize>>) -> Self {
        StoredSizes {
            points: points.unwrap_or(if quick {
                vec![1_000, 3_000]
            } else {
                vec![10_000, 100_000, 300_000]
            }),
            settle: Duration::from_secs(if quick { 1 } else { 5 }),
        }
    }
}

const CONFIGS: [(&str, &[&str]); 2] = [
    ("weaver", &[]),
    ("weaver --skip-store-check", &["--skip-store-check"]),
];

const FIGURES: [(&str, &str); 8] = [
    ("ready_ms", "spawn → /readyz ms"),
    ("loaded", "rooms loaded after start"),
    ("idle_rss_mb", "idle RSS MB"),
    ("list_ms", "GET /api/rooms, every page, ms"),
    ("listed", "rooms listed"),
    ("disk_bytes_per_room", "disk bytes per room"),
    ("sweep_cpu_ms", "server CPU until idle figures ms"),
    ("populate_s", "writing the store s (bench side)"),
];

pub fn run(
    env: &Env,
    reps: usize,
    sizes: &StoredSizes,
    img: &Path,
) -> Result<(String, Vec<Record>)> {
    let mut recs = Vec::new();
    for &n in &sizes.points {
        let data = env.work.join(format!("stored-{n}"));
        let _ = std::fs::remove_dir_all(&data);
        let t = Instant::now();
        populate::populate(&data, "s", n, &[])?;
        let populate_s = t.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(data.join(weaver_relay::store::redb::DB_FILE_NAME))?.len();
        for rep in 0..reps {
            for (ci, &(label, args)) in CONFIGS.iter().enumerate() {
                // The check-skipping run once per point: it only says what the check costs.
                if ci > 0 && rep > 0 {
                    continue;
                }
                eprint!("stored-rooms {n} run {}/{reps} ({label}) … ", rep + 1);
                let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
                match run_one(env, &data, n, &args, sizes.settle) {
                    Ok(mut r) => {
                        r.server = label.to_owned();
                        r.rep = rep;
                        r.values.insert("populate_s", populate_s);
                        r.values
                            .insert("disk_bytes_per_room", bytes as f64 / n as f64);
                        eprintln!(
                            "ready {:.0} ms, loaded {}, list {:.0} ms",
                            r.values["ready_ms"], r.values["loaded"], r.values["list_ms"]
                        );
                        recs.push(r);
                    }
                    Err(e) => eprintln!("FAILED: {e:#}"),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&data);
    }
    let text = table(&recs, &sizes.points);
    let mut plots = String::new();
    for (key, label, file) in [
        ("ready_ms", "spawn → ready (ms)", "ready"),
        ("list_ms", "GET /api/rooms, all pages (ms)", "list"),
        ("idle_rss_mb", "idle RSS (MB)", "rss"),
    ] {
        let series: Vec<Series> = CONFIGS
            .iter()
            .map(|(label, _)| Series {
                name: (*label).to_owned(),
                points: median_points(&recs, label, key),
            })
            .collect();
        plots.push_str(&crate::plot::write_curve(
            &img.join(format!("scale-stored-{file}.svg")),
            label,
            "stored rooms",
            key,
            &series,
        )?);
    }
    Ok((text + &plots, recs))
}

fn median_points(recs: &[Record], server: &str, key: &str) -> Vec<(f64, f64)> {
    let mut by_n: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    for r in recs.iter().filter(|r| r.server == server) {
        if let (Some(&n), Some(&v)) = (r.values.get("rooms"), r.values.get(key)) {
            by_n.entry(n as usize).or_default().push(v);
        }
    }
    by_n.into_iter()
        .map(|(n, mut xs)| {
            xs.sort_by(f64::total_cmp);
            (n as f64, xs[xs.len() / 2])
        })
        .collect()
}

fn table(recs: &[Record], points: &[usize]) -> String {
    let mut s = String::from(
        "\n### stored-rooms (weaver; median [min–max] over repetitions)\n\n| figure |",
    );
    for &n in points {
        for (label, _) in CONFIGS {
            let _ = write!(s, " {n} rooms, {label} |");
        }
    }
    s.push_str("\n|---|");
    for _ in 0..points.len() * CONFIGS.len() {
        s.push_str("---|");
    }
    s.push('\n');
    for (key, label) in FIGURES {
        let _ = write!(s, "| {label} |");
        for &n in points {
            for (cfg, _) in CONFIGS {
                let at: Vec<&Record> = recs
                    .iter()
                    .filter(|r| r.values.get("rooms").is_some_and(|&x| x as usize == n))
                    .collect();
                match crate::report::stats_of(&at, cfg, key) {
                    Some((med, lo, hi, k)) if k > 1 => {
                        let _ = write!(
                            s,
                            " {} [{}–{}] |",
                            crate::report::fmt_num(med),
                            crate::report::fmt_num(lo),
                            crate::report::fmt_num(hi)
                        );
                    }
                    Some((med, ..)) => {
                        let _ = write!(s, " {} |", crate::report::fmt_num(med));
                    }
                    None => s.push_str(" n/a |"),
                }
            }
        }
        s.push('\n');
    }
    s
}

fn run_one(env: &Env, data: &Path, n: usize, args: &[String], settle: Duration) -> Result<Record> {
    let spawned = Instant::now();
    let server = servers::start(env, Kind::Weaver, Some(data), args, &format!("stored-{n}"))?;
    let result = measure(env, &server, n, spawned, settle);
    let stopped = server.stop();
    let rec = result?;
    stopped?;
    Ok(rec)
}

fn measure(
    env: &Env,
    server: &servers::Running,
    n: usize,
    spawned: Instant,
    settle: Duration,
) -> Result<Record> {
    let deadline = spawned + Duration::from_secs(120);
    while servers::http_get(server.port, "/readyz").is_err() {
        if Instant::now() > deadline {
            bail!("not ready within 120 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready_ms = spawned.elapsed().as_secs_f64() * 1e3;
    std::thread::sleep(settle);
    let idle = server.sample(env);
    let loaded_gauge = idle
        .metrics
        .as_deref()
        .and_then(|m| crate::prom::sum(m, "weaver_rooms_loaded"))
        .unwrap_or(f64::NAN);
    let t = Instant::now();
    let (listed, loaded_listed) = list_all(server.port)?;
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut rec = Record {
        scenario: "stored-rooms",
        server: String::new(),
        rep: 0,
        values: Default::default(),
        notes: vec![],
    };
    let v = &mut rec.values;
    v.insert("rooms", n as f64);
    v.insert("ready_ms", ready_ms);
    v.insert("loaded", loaded_gauge.max(loaded_listed as f64));
    v.insert("idle_rss_mb", idle.rss_kb / 1024.0);
    v.insert("list_ms", list_ms);
    v.insert("listed", listed as f64);
    v.insert("sweep_cpu_ms", idle.cpu_s * 1e3);
    if listed != n {
        rec.notes.push(format!("listed {listed} of {n} rooms"));
    }
    Ok(rec)
}

/// Pages through `GET /api/rooms` (1,000 per page); returns (rooms listed, of them loaded).
/// Bounded: never more pages than rooms could fill, plus one.
fn list_all(port: u16) -> Result<(usize, usize)> {
    let mut after: Option<String> = None;
    let (mut listed, mut loaded) = (0usize, 0usize);
    for _ in 0..10_000 {
        let path = match &after {
            Some(a) => format!("/api/rooms?limit=1000&after={a}"),
            None => "/api/rooms?limit=1000".to_owned(),
        };
        let body = servers::http_get(port, &path)?;
        let page: serde_json::Value = serde_json::from_str(&body)?;
        let rooms = page["rooms"]
            .as_array()
            .ok_or_else(|| anyhow!("no rooms in the page"))?;
        listed += rooms.len();
        loaded += rooms.iter().filter(|r| r["loaded"] == true).count();
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok((listed, loaded)),
        }
    }
    bail!("more than 10,000 pages")
}
