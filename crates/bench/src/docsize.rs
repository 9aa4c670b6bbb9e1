//! `weaver-bench docsize` (issue 23): how a server's cost grows with one document's size. For
//! each size: build the document through a stock client (bench/docsize.mjs), restart the server
//! (Weaver, and y-sweet with its store: a cold load from disk; the in-memory anchors keep the
//! room in memory, nothing to restart from), then a fresh client's load time, the server's
//! RSS, and the bytes the server wrote (`/proc/<pid>/io` write_bytes) per 2-byte text insert
//! over N paced inserts.
//! Bounded: N inserts or `max_s` seconds, whichever comes first, per size and server.

use anyhow::{Context, Result, anyhow, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::plot::Series;
use crate::prom;
use crate::scenario::Record;
use crate::servers::{self, Env, Kind, proc_cpu_s};

/// Sizes and pacing of one run.
pub struct Plan {
    pub sizes_mb: Vec<f64>,
    pub edits: usize,
    pub pace_ms: u64,
    pub max_s: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                sizes_mb: vec![0.1],
                edits: 100,
                pace_ms: 5,
                max_s: 20,
            }
        } else {
            Plan {
                sizes_mb: vec![0.1, 1.0, 10.0, 50.0],
                edits: 2000,
                pace_ms: 5,
                max_s: 120,
            }
        }
    }
}

/// One measured point.
struct Point {
    server: &'static str,
    size_mb: f64,
    load_s: f64,
    rss_mb: f64,
    edits: u64,
    bytes_per_edit: f64,
    /// Bytes written from the first insert until the server exited (SIGTERM), per insert: adds
    /// what a Weaver stop writes (its final journal checkpoint), so no deferred write escapes
    /// the figure however the inserts fell against the checkpoint cadence. `None` for servers
    /// that keep nothing.
    bytes_per_edit_with_stop: Option<f64>,
    cpu_s: f64,
    /// Journal frames and checkpoints Weaver wrote from its restart until after the inserts
    /// (its /metrics), to tell an insert's cost from how many inserts shared a commit.
    frames: Option<(f64, f64)>,
    note: &'static str,
}

/// Weaver's journal frames and checkpoints so far (`None` for the anchors or if unreadable).
fn journal_counts(server: &servers::Running) -> Option<(f64, f64)> {
    let text = servers::http_get(server.port, "/metrics").ok()?;
    // A counter appears at its first increment: absent from a readable page means zero so far.
    let count = |name: &str| prom::sum(&text, name).unwrap_or(0.0);
    Some((
        count("weaver_journal_frames_total"),
        count("weaver_journal_checkpoints_total"),
    ))
}

fn node(env: &Env, mode: &str, params: &serde_json::Value) -> Result<serde_json::Value> {
    // Bounded: a client that never sees what it waits for must not hang the run.
    let out = Command::new("timeout")
        .arg("900")
        .arg("taskset")
        .arg("-c")
        .arg(&env.client_cpu)
        .arg("node")
        .arg("docsize.mjs")
        .arg(mode)
        .arg(params.to_string())
        .current_dir(env.bench_dir())
        .output()
        .context("running bench/docsize.mjs")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
        // Node ends an uncaught error's report with its version line: name the error itself.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("Error"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("");
        bail!("docsize.mjs {mode} failed ({}): {reason}", out.status);
    };
    serde_json::from_str(line).context("docsize.mjs RESULT")
}

fn one(env: &Env, kind: Kind, size_mb: f64, plan: &Plan) -> Result<Point> {
    let bytes = (size_mb * 1_000_000.0) as u64;
    let data = env.work.join(format!("docsize-{}-{size_mb}", kind.name()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let params = |url: String, extra: serde_json::Value| {
        let mut p = serde_json::json!({
            "url": url, "server": kind.name(), "room": "docsize", "bytes": bytes,
        });
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    };
    let tag = format!("docsize-{size_mb}");
    // Weaver and y-sweet persist (y-sweet given a store directory, as it is deployed; without
    // one it is an in-memory server and its figures say nothing about writes or cold loads):
    // both are restarted after the build and measured loading from disk.
    let persistent = kind.is_weaver() || kind == Kind::Ysweet;
    let mut server = servers::start(env, kind, persistent.then_some(data.as_path()), &[], &tag)?;
    let edit = |server: &servers::Running| {
        serde_json::json!({
            "n": plan.edits, "paceMs": plan.pace_ms, "pid": server.pid, "maxS": plan.max_s,
        })
    };
    let mut cpu0 = 0.0;
    let mut frames0 = None;
    let edited = if persistent {
        let built = node(env, "build", &params(server.url(), serde_json::json!({})));
        if kind == Kind::Ysweet && built.is_ok() {
            // y-sweet writes a document's snapshot at most every 10 s (its default
            // --checkpoint-freq-seconds): give it time, or the restart would load a part.
            std::thread::sleep(std::time::Duration::from_secs(12));
        }
        server.stop()?;
        server = servers::start(env, kind, Some(&data), &[], &tag)?;
        cpu0 = proc_cpu_s(server.pid, env.clk_tck);
        frames0 = journal_counts(&server);
        built.and_then(|_| node(env, "edit", &params(server.url(), edit(&server))))
    } else {
        // In memory: the room lives only while a client holds it, so build and edit in one go
        // (the CPU figure then includes the build).
        node(env, "both", &params(server.url(), edit(&server)))
    };
    let cpu_s = proc_cpu_s(server.pid, env.clk_tck) - cpu0;
    let frames = match (frames0, journal_counts(&server)) {
        (Some((f0, c0)), Some((f1, c1))) => Some((f1 - f0, c1 - c0)),
        _ => None,
    };
    let lifetime_written = if persistent {
        server.stop_counting_writes()?
    } else {
        server.stop()?;
        None
    };
    let _ = std::fs::remove_dir_all(&data);
    let r = edited?;
    let f = |k: &str| {
        r.get(k)
            .and_then(|v| v.as_f64())
            .ok_or_else(|| anyhow!("docsize.mjs result has no {k}"))
    };
    let edits = f("edits")?;
    let bytes_per_edit_with_stop = match (lifetime_written, f("write_bytes_before")) {
        (Some(total), Ok(before)) if edits > 0.0 => Some((total as f64 - before) / edits),
        _ => None,
    };
    Ok(Point {
        server: kind.name(),
        size_mb,
        load_s: f("load_s")?,
        rss_mb: f("rss_mb")?,
        edits: edits as u64,
        bytes_per_edit: f("bytes_per_edit")?,
        bytes_per_edit_with_stop,
        cpu_s,
        frames,
        note: if kind == Kind::Ysweet {
            "cold load from its store (snapshots every 10 s)"
        } else if persistent {
            "cold load from disk"
        } else {
            "in memory: writes nothing, load from memory"
        },
    })
}

impl Point {
    fn record(&self) -> Record {
        let mut values = BTreeMap::new();
        values.insert("doc_mb", self.size_mb);
        values.insert("load_s", self.load_s);
        values.insert("rss_mb", self.rss_mb);
        values.insert("edits", self.edits as f64);
        values.insert("bytes_per_edit", self.bytes_per_edit);
        if let Some(b) = self.bytes_per_edit_with_stop {
            values.insert("bytes_per_edit_with_stop", b);
        }
        values.insert("cpu_s", self.cpu_s);
        if let Some((frames, checkpoints)) = self.frames {
            values.insert("journal_frames", frames);
            values.insert("journal_checkpoints", checkpoints);
        }
        Record {
            scenario: "docsize",
            server: self.server.to_string(),
            rep: 0,
            values,
            notes: vec![self.note.to_string()],
        }
    }
}

/// Runs every size on every server that can (y-sweet only when its binary is installed) and
/// returns the markdown table and one record per point (for the run's .jsonl).
pub fn run(env: &Env, kinds: &[Kind], plan: &Plan, img: &Path) -> Result<(String, Vec<Record>)> {
    let mut points = Vec::new();
    for &size in &plan.sizes_mb {
        for &kind in kinds {
            if kind == Kind::WeaverHocus || (kind == Kind::Ysweet && !env.ysweet_bin().exists()) {
                continue;
            }
            eprint!("docsize {size} MB on {} … ", kind.name());
            match one(env, kind, size, plan) {
                Ok(p) => {
                    eprintln!(
                        "load {:.2} s, {:.0} B/edit over {} edits",
                        p.load_s, p.bytes_per_edit, p.edits
                    );
                    points.push(p);
                }
                Err(e) => eprintln!("FAILED: {e:#}"),
            }
        }
    }
    let mut t = format!(
        "\n### document size: load, memory, bytes written per 2-byte insert ({} paced inserts every {} ms, at most {} s)\n\n",
        plan.edits, plan.pace_ms, plan.max_s
    );
    t.push_str("| server | document MB | load s | RSS MB | inserts | bytes written / insert | … incl. the stop's checkpoint | journal frames / checkpoints | server CPU s (load + inserts) | note |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &points {
        let with_stop = p
            .bytes_per_edit_with_stop
            .map_or_else(|| "n/a".to_string(), |b| format!("{b:.0}"));
        let frames = p
            .frames
            .map_or_else(|| "n/a".to_string(), |(f, c)| format!("{f:.0} / {c:.0}"));
        let _ = writeln!(
            t,
            "| {} | {} | {:.2} | {:.0} | {} | {:.0} | {} | {} | {:.2} | {} |",
            p.server,
            p.size_mb,
            p.load_s,
            p.rss_mb,
            p.edits,
            p.bytes_per_edit,
            with_stop,
            frames,
            p.cpu_s,
            p.note
        );
    }
    if points.is_empty() {
        bail!("no docsize point could be measured");
    }
    t.push_str(&plots(&points, kinds, img)?);
    Ok((t, points.iter().map(Point::record).collect()))
}

/// One plot per curve into `img` (docs/img by default), and the growth exponent of each
/// server's curve over the document size (≤ 1: at most linear in the document).
fn plots(points: &[Point], kinds: &[Kind], img: &Path) -> Result<String> {
    type Figure = fn(&Point) -> Option<f64>;
    let curves: [(&str, &str, Figure); 4] = [
        ("bytes", "bytes written per 2-byte insert", |p| {
            // A server that keeps the document in memory writes nothing: no curve to draw.
            p.bytes_per_edit_with_stop
                .or((p.bytes_per_edit > 0.0).then_some(p.bytes_per_edit))
        }),
        ("load", "load time (s)", |p| Some(p.load_s)),
        ("rss", "RSS after the inserts (MB)", |p| Some(p.rss_mb)),
        ("cpu", "server CPU, load + inserts (s)", |p| Some(p.cpu_s)),
    ];
    let mut text = String::new();
    for (file, label, figure) in curves {
        let series: Vec<Series> = kinds
            .iter()
            .map(|k| Series {
                name: k.name().to_string(),
                points: points
                    .iter()
                    .filter(|p| p.server == k.name())
                    .filter_map(|p| figure(p).map(|v| (p.size_mb, v)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        text.push_str(&crate::plot::write_curve(
            &img.join(format!("docsize-{file}.svg")),
            label,
            "document MB",
            &format!("{label}, over the document size"),
            &series,
        )?);
    }
    Ok(text)
}
