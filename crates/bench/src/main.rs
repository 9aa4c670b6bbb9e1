//! `weaver-bench`: the reproducible benchmark of the Weaver relay against the anchor servers
//! (reference `@y/websocket-server`, Hocuspocus, y-sweet). This file holds the command line,
//! installation of the anchors, and the repetition loop (fresh server per run, server order
//! rotated each repetition); scenarios, sampling and tables live in the other modules. It is a
//! measuring tool, not a test: the test command runs at most its `--quick` smoke run.

mod cluster;
mod cluster_scenario;
mod conns;
mod docsize;
mod loadgen;
mod nats;
mod plot;
mod populate;
mod prom;
mod report;
mod scenario;
mod servers;
mod stored_rooms;
mod wsclient;
mod yrs_split;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use scenario::{Record, Scenario, Sizes};
use servers::{Env, Kind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark Weaver against the reference y-websocket server, Hocuspocus and y-sweet on loopback"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Servers to run, comma separated: weaver,yws,hocuspocus,ysweet, and weaver-hp (opt-in: the
    /// weaver binary driven by Hocuspocus-provider clients).
    #[arg(long, global = true, default_value = "weaver,yws,hocuspocus,ysweet")]
    servers: String,
    /// Repetitions per scenario and server (interleaved; default 3, 1 with --quick).
    #[arg(long, global = true)]
    reps: Option<usize>,
    /// Smoke run: small sizes, one repetition (well under a minute per scenario).
    #[arg(long, global = true)]
    quick: bool,
    /// The weaver binary (default: target/release/weaver, built if missing).
    #[arg(long, global = true)]
    weaver_bin: Option<PathBuf>,
    /// Extra argument for `weaver serve` (repeatable). Default: --idle-unload-secs=2, so that
    /// rooms1000 sees rooms unloaded within its idle wait (the anchors have no such knob).
    #[arg(long = "weaver-arg", global = true, allow_hyphen_values = true)]
    weaver_args: Vec<String>,
    /// CPU list the servers are pinned to (taskset).
    #[arg(long, global = true, default_value = "0")]
    server_cpu: String,
    /// CPU list the load generator is pinned to.
    #[arg(long, global = true, default_value = "1")]
    client_cpu: String,
    /// How long rooms1000 waits after the last client closed before reading idle RSS.
    #[arg(long, global = true, default_value_t = 5000)]
    idle_wait_ms: u64,
    /// Lease TTLs (ms) the cluster failover is measured at, comma separated (default
    /// 2000,10000; 2000 with --quick).
    #[arg(long, global = true, value_delimiter = ',')]
    failover_ttl_ms: Option<Vec<u64>>,
    /// Document sizes (MB) of `docsize`, comma separated (default 0.1,1,10,50; 0.1 with --quick).
    #[arg(long, global = true, value_delimiter = ',')]
    doc_mb: Option<Vec<f64>>,
    /// Paced inserts per `docsize` point (default 2000; 100 with --quick).
    #[arg(long, global = true)]
    doc_edits: Option<usize>,
    /// conns: clients per room, comma separated, one curve each (default 100,1).
    #[arg(long, global = true, value_delimiter = ',')]
    per_room: Option<Vec<usize>>,
    /// conns / stored-rooms: the points of the curve, comma separated (default 1000,10000,30000
    /// connections; 10000,100000,300000 rooms).
    #[arg(long, global = true, value_delimiter = ',')]
    points: Option<Vec<usize>>,
    /// populate: the data directory to write.
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// populate: `ROOM=FILE`, a room holding the v1 update in FILE (repeatable).
    #[arg(long = "room-update", global = true)]
    room_updates: Vec<String>,
    /// Where result tables (.md), raw records (.jsonl) and logs go (default bench/results).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
    /// Workspace root (default: derived from this crate's location).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    /// Every scenario.
    All,
    /// Fan-out latency: 1 writer, 2 / 16 / 64 clients at a fixed rate.
    Fanout,
    /// Server CPU per delivery at 64 clients, paced and as fast as possible.
    Cpu,
    /// 16 writers x 250 concurrent inserts: time to identical replicas.
    Writers,
    /// 1,000 rooms x 2 clients: RSS per room loaded and after idle.
    Rooms,
    /// Cold start of a long non-compressible history after a restart.
    Cold,
    /// Weaver's receipt→fsync latency and fsyncs/s under load (weaver only).
    Durability,
    /// APICall lifecycles (the bridge).
    Bridge,
    /// Cluster mode (weaver only, needs nats-server ≥ 2.11, see scripts/nats.sh): fan-out on
    /// redb-1 / js-1 / js-3, failover after kill -9 of a room's owner, bridge lifecycles.
    Cluster,
    /// One document of 0.1 / 1 / 10 / 50 MB (0.1 with --quick): load time, RSS, bytes written
    /// per 2-byte insert (`/proc/<pid>/io`) over 2,000 paced inserts (issue 23).
    Docsize,
    /// Open connections 1k → 10k → 30k (RSS per connection, idle CPU with pings, connect
    /// rate), `--per-room` clients per room; plots into docs/img.
    Conns,
    /// Weaver on 10k → 100k → 300k stored rooms: start-up to ready, rooms loaded, idle RSS,
    /// `GET /api/rooms` paging, disk bytes per room; plots into docs/img.
    StoredRooms,
    /// Write `--points N` (one number) small stored rooms (`s0000000`…) and each
    /// `--room-update ROOM=FILE` into a new store at `--data` (fixtures, by hand).
    Populate,
    /// Only install the anchors (npm packages, y-sweet) and build weaver.
    Install,
    /// Pure yrs, no server: µs per 2-byte forward-walking insert into a text of `--doc-mb`
    /// MB (default 1,10,50) built by appending, over `--doc-edits` inserts (default 200), on
    /// the writer and on a replica applying its updates (issue 23, bounded string blocks).
    YrsSplit,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("weaver-bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    if cli.cmd == Cmd::Populate {
        return populate_cmd(&cli);
    }
    if cli.cmd == Cmd::YrsSplit {
        return yrs_split_cmd(&cli);
    }
    let root = match &cli.root {
        Some(r) => r.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    let root = root.canonicalize().context("workspace root")?;
    let mut kinds: Vec<Kind> = cli
        .servers
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Kind::parse(s.trim()))
        .collect::<Result<_>>()?;
    if matches!(cli.cmd, Cmd::Durability | Cmd::Cluster | Cmd::StoredRooms) {
        kinds.retain(|k| *k == Kind::Weaver);
        if kinds.is_empty() {
            kinds.push(Kind::Weaver);
        }
    }
    // Known before anything is installed or measured: `cluster` without nats-server fails at
    // once, `all` skips the cluster part with the reason.
    let nats_bin = (matches!(cli.cmd, Cmd::Cluster | Cmd::All) && kinds.contains(&Kind::Weaver))
        .then(|| nats::find(&root));
    let nats_bin = match nats_bin {
        Some(Err(e)) if cli.cmd == Cmd::Cluster => return Err(e),
        other => other,
    };
    let scenarios: Vec<Scenario> = match cli.cmd {
        Cmd::All => Scenario::ALL.to_vec(),
        Cmd::Fanout => vec![Scenario::Fanout2, Scenario::Fanout16, Scenario::Fanout64],
        Cmd::Cpu => vec![Scenario::Fanout64, Scenario::Burst64],
        Cmd::Writers => vec![Scenario::Writers16],
        Cmd::Rooms => vec![Scenario::Rooms1000],
        Cmd::Cold => vec![Scenario::Cold],
        Cmd::Durability => vec![Scenario::Fanout64, Scenario::Burst64, Scenario::Writers16],
        Cmd::Bridge => vec![Scenario::BridgeLocal, Scenario::BridgeHttp],
        Cmd::Install
        | Cmd::Cluster
        | Cmd::Conns
        | Cmd::StoredRooms
        | Cmd::Populate
        | Cmd::YrsSplit
        | Cmd::Docsize => vec![],
    };
    let out_dir = cli.out.clone().unwrap_or(root.join("bench/results"));
    let stamp = timestamp();
    let work = out_dir.join(format!("logs-{stamp}"));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let weaver_bin = cli
        .weaver_bin
        .clone()
        .unwrap_or(root.join("target/release/weaver"));
    let env = Env {
        root: root.clone(),
        weaver_bin,
        weaver_args: if cli.weaver_args.is_empty() {
            vec!["--idle-unload-secs=2".to_string()]
        } else {
            cli.weaver_args.clone()
        },
        server_cpu: cli.server_cpu.clone(),
        client_cpu: cli.client_cpu.clone(),
        work,
        clk_tck: servers::clk_tck(),
    };
    install(
        &env,
        &mut kinds,
        cli.cmd == Cmd::Install || cli.weaver_bin.is_none(),
    )?;
    if cli.cmd == Cmd::Install {
        eprintln!("installed: {}", names(&kinds));
        return Ok(());
    }
    let mut all: Vec<Record> = Vec::new();
    let mut text = String::new();
    // The machine's state decides the durable figures: say what fsync cost and how busy the
    // machine was when this run started (and again at its end).
    let probe = fsync_probe(&env.work);
    let machine = format!(
        "machine at start: load average {} · fsync of a 100-byte append in the data filesystem: {}",
        loadavg(),
        probe
    );
    let sizes = Sizes::new(cli.quick, cli.idle_wait_ms);
    let reps = cli.reps.unwrap_or(if cli.quick { 1 } else { 3 });
    let img = root.join("docs/img");
    if matches!(cli.cmd, Cmd::Conns | Cmd::StoredRooms) {
        std::fs::create_dir_all(&img)?;
    }
    let _ = writeln_s(
        &mut text,
        &format!(
            "## weaver-bench run {stamp}\n\nservers: {} · repetitions: {reps} (interleaved, order rotated) · server CPU {} / load generator CPU {} · {}\n\nCells: median [min–max] over the repetitions, (ratio to the best anchor's median). `n/a`: not measured for that server.",
            names(&kinds),
            env.server_cpu,
            env.client_cpu,
            if cli.quick {
                "QUICK smoke sizes"
            } else {
                "full sizes"
            }
        ),
    );
    let _ = writeln_s(&mut text, &format!("\n{machine}"));
    print!("{text}");
    for sc in &scenarios {
        let mut recs: Vec<Record> = Vec::new();
        let run_kinds: Vec<Kind> = if sc.weaver_only() {
            kinds
                .iter()
                .copied()
                .filter(|k| *k == Kind::Weaver)
                .collect()
        } else {
            kinds.clone()
        };
        for rep in 0..reps {
            for i in 0..run_kinds.len() {
                let kind = run_kinds[(i + rep) % run_kinds.len()];
                eprint!(
                    "[{}] {} run {}/{} on {} … ",
                    clock(),
                    sc.name(),
                    rep + 1,
                    reps,
                    kind.name()
                );
                let _ = std::io::stderr().flush();
                match sc.run(&env, kind, rep, &sizes) {
                    Ok(Some(r)) => {
                        eprintln!("{}", brief(&r));
                        recs.push(r);
                    }
                    Ok(None) => eprintln!("n/a"),
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        recs.push(Record {
                            scenario: sc.name(),
                            server: kind.name().to_string(),
                            rep,
                            values: Default::default(),
                            notes: vec![format!("failed: {e:#}")],
                        });
                    }
                }
            }
        }
        let refs: Vec<&Record> = recs.iter().collect();
        let t = report::table(&sc.title(&sizes), &refs, &run_kinds, &sc.metrics());
        print!("{t}");
        text.push_str(&t);
        if kinds.contains(&Kind::Weaver)
            && refs.iter().any(|r| {
                r.values.contains_key("persist_p50_ms") || r.values.contains_key("fsyncs_per_s")
            })
        {
            let t = report::table(
                &format!("durability during {} (weaver's /metrics)", sc.name()),
                &refs
                    .iter()
                    .copied()
                    .filter(|r| r.server == "weaver")
                    .collect::<Vec<_>>(),
                &[Kind::Weaver],
                &scenario::durability_metrics(),
            );
            print!("{t}");
            text.push_str(&t);
        }
        all.extend(recs);
    }
    let scale = match cli.cmd {
        Cmd::Conns => Some(conns::run(
            &env,
            &kinds,
            reps,
            &conns::ConnsSizes::new(cli.quick, cli.points.clone(), cli.per_room.clone()),
            &img,
        )?),
        Cmd::StoredRooms => Some(stored_rooms::run(
            &env,
            reps,
            &stored_rooms::StoredSizes::new(cli.quick, cli.points.clone()),
            &img,
        )?),
        Cmd::Docsize => {
            let mut plan = docsize::Plan::new(cli.quick);
            if let Some(sizes) = &cli.doc_mb {
                plan.sizes_mb = sizes.clone();
            }
            if let Some(n) = cli.doc_edits {
                plan.edits = n;
            }
            Some(docsize::run(&env, &kinds, &plan, &img)?)
        }
        _ => None,
    };
    if let Some((t, recs)) = scale {
        print!("{t}");
        text.push_str(&t);
        all.extend(recs);
    }
    if let Some(found) = nats_bin {
        match found {
            Ok(bin) => {
                let ttls = cli.failover_ttl_ms.clone().unwrap_or(if cli.quick {
                    vec![2000]
                } else {
                    vec![2000, 10_000]
                });
                let sizes = cluster_scenario::ClusterSizes::new(cli.quick, &ttls);
                let (t, recs) = cluster_scenario::run(&env, &bin, reps, &sizes);
                print!("{t}");
                text.push_str(&t);
                all.extend(recs);
            }
            Err(e) => {
                let t = format!("\n### cluster: SKIPPED\n\n{e:#}\n");
                eprint!("{t}");
                text.push_str(&t);
            }
        }
    }
    let end = format!(
        "\nmachine at end: load average {} · fsync {}\n",
        loadavg(),
        fsync_probe(&env.work)
    );
    print!("{end}");
    text.push_str(&end);
    let md = out_dir.join(format!("run-{stamp}.md"));
    std::fs::write(&md, &text)?;
    let mut jl = String::new();
    for r in &all {
        jl.push_str(&serde_json::to_string(r)?);
        jl.push('\n');
    }
    std::fs::write(out_dir.join(format!("run-{stamp}.jsonl")), jl)?;
    eprintln!(
        "\nwritten: {} (+ .jsonl, logs in {})",
        md.display(),
        env.work.display()
    );
    Ok(())
}

/// `weaver-bench populate`: a store of small rooms for fixtures, written by hand.
fn populate_cmd(cli: &Cli) -> Result<()> {
    let data = cli.data.clone().context("populate needs --data DIR")?;
    let rooms = match cli.points.as_deref() {
        None => 0,
        Some([n]) => *n,
        Some(_) => bail!("populate takes one --points N"),
    };
    let mut extra = Vec::new();
    for spec in &cli.room_updates {
        let (room, file) = spec
            .split_once('=')
            .context("--room-update takes ROOM=FILE")?;
        let bytes = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        extra.push((room.to_owned(), bytes));
    }
    populate::populate(&data, "s", rooms, &extra)?;
    eprintln!(
        "wrote {} rooms into {}",
        rooms + extra.len(),
        data.display()
    );
    Ok(())
}

/// `weaver-bench yrs-split`: in process, no server or install needed.
fn yrs_split_cmd(cli: &Cli) -> Result<()> {
    let sizes = cli.doc_mb.clone().unwrap_or(if cli.quick {
        vec![0.1, 1.0]
    } else {
        vec![1.0, 10.0, 50.0]
    });
    let inserts = cli.doc_edits.unwrap_or(if cli.quick { 50 } else { 200 });
    let table = yrs_split::run(&sizes, inserts).map_err(anyhow::Error::msg)?;
    print!("{table}");
    Ok(())
}

fn writeln_s(s: &mut String, t: &str) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(s, "{t}")
}

fn names(kinds: &[Kind]) -> String {
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn brief(r: &Record) -> String {
    let mut parts: Vec<String> = r
        .values
        .iter()
        .take(6)
        .map(|(k, v)| format!("{k}={}", report::fmt_num(*v)))
        .collect();
    parts.extend(r.notes.iter().cloned());
    parts.join(" ")
}

/// npm packages into bench/node_modules (from bench/package-lock.json), y-sweet 0.9.1 into
/// bench/.tools, weaver release build. A missing y-sweet that cannot be built drops y-sweet from
/// the run with a loud message rather than failing everything.
fn install(env: &Env, kinds: &mut Vec<Kind>, build_weaver: bool) -> Result<()> {
    let bench = env.bench_dir();
    if !bench.join("node_modules/@hocuspocus/server").exists()
        || !bench.join("node_modules/@y/websocket-server").exists()
    {
        eprintln!(
            "installing the load generator and anchors: npm ci in {}",
            bench.display()
        );
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&bench)
            .status()
            .context("running npm ci")?;
        if !st.success() {
            bail!("npm ci in {} failed ({st})", bench.display());
        }
    }
    if kinds.contains(&Kind::Ysweet) && !env.ysweet_bin().exists() {
        eprintln!(
            "building y-sweet 0.9.1 into {} (cargo install --locked; takes a long while once)",
            bench.join(".tools").display()
        );
        let st = Command::new("cargo")
            .args([
                "install",
                "y-sweet",
                "--version",
                "0.9.1",
                "--locked",
                "--root",
            ])
            .arg(bench.join(".tools"))
            .status();
        if !matches!(st, Ok(s) if s.success()) || !env.ysweet_bin().exists() {
            eprintln!("WARNING: y-sweet could not be installed; running without it");
            kinds.retain(|k| *k != Kind::Ysweet);
        }
    }
    if kinds.iter().any(|k| k.is_weaver()) && build_weaver && !env.weaver_bin.exists() {
        eprintln!("building weaver (cargo build --release -p weaver)");
        let st = Command::new("cargo")
            .args(["build", "--release", "-p", "weaver"])
            .current_dir(&env.root)
            .status()
            .context("running cargo build")?;
        if !st.success() {
            bail!("cargo build --release -p weaver failed");
        }
    }
    if kinds.iter().any(|k| k.is_weaver()) && !env.weaver_bin.exists() {
        bail!("no weaver binary at {}", env.weaver_bin.display());
    }
    Ok(())
}

/// p50/p99 of 200 fsyncs of small appends in `dir` (the filesystem Weaver's data lives on),
/// back to back and then 2 ms apart. The paced figure is the floor a fan-out commit sees: at
/// fanout16's 500 updates/s the disk is idle between fsyncs, and on a virtual disk an fsync
/// after a pause costs more than one in a stream.
fn fsync_probe(dir: &Path) -> String {
    let path = dir.join("fsync-probe");
    let run = |gap: Option<std::time::Duration>| -> std::io::Result<String> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut ts = Vec::with_capacity(200);
        for _ in 0..200 {
            f.write_all(&[b'x'; 100])?;
            let t = std::time::Instant::now();
            f.sync_all()?;
            ts.push(t.elapsed().as_secs_f64() * 1e3);
            if let Some(gap) = gap {
                std::thread::sleep(gap);
            }
        }
        ts.sort_by(f64::total_cmp);
        Ok(format!("p50 {:.3} ms, p99 {:.3} ms", ts[100], ts[197]))
    };
    let fail = |e: std::io::Error| format!("probe failed: {e}");
    let streamed = run(None).unwrap_or_else(fail);
    let paced = run(Some(std::time::Duration::from_millis(2))).unwrap_or_else(fail);
    let _ = std::fs::remove_file(&path);
    format!("{streamed} back to back; {paced} 2 ms apart")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn timestamp() -> String {
    Command::new("date")
        .args(["-u", "+%Y%m%dT%H%M%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "now".into())
}

fn clock() -> String {
    Command::new("date")
        .args(["-u", "+%H:%M:%S"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
