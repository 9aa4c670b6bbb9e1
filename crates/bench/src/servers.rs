//! The servers under test: how each one is installed, started (pinned to the server core with
//! `taskset`), recognised as ready, sampled (`/proc/<pid>/stat` CPU, `/proc/<pid>/status` RSS,
//! Weaver's `/metrics`) and stopped. Scenario logic and statistics live elsewhere.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server implementation the benchmark knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Weaver,
    /// The same weaver binary, driven by `@hocuspocus/provider` clients at `/` (its Hocuspocus
    /// framing), to compare with the real Hocuspocus server under the same clients.
    WeaverHocus,
    Yws,
    Hocuspocus,
    Ysweet,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Weaver,
        Kind::WeaverHocus,
        Kind::Yws,
        Kind::Hocuspocus,
        Kind::Ysweet,
    ];

    /// The name used on the command line, in the loadgen parameters and in result files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Weaver => "weaver",
            Kind::WeaverHocus => "weaver-hp",
            Kind::Yws => "yws",
            Kind::Hocuspocus => "hocuspocus",
            Kind::Ysweet => "ysweet",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Weaver => "weaver",
            Kind::WeaverHocus => "weaver (Hocuspocus clients)",
            Kind::Yws => "reference (yws)",
            Kind::Hocuspocus => "Hocuspocus",
            Kind::Ysweet => "y-sweet",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                anyhow!("unknown server `{s}` (weaver, weaver-hp, yws, hocuspocus, ysweet)")
            })
    }

    pub fn is_anchor(self) -> bool {
        !self.is_weaver()
    }

    /// Whether this runs the weaver binary (with either kind of client).
    pub fn is_weaver(self) -> bool {
        matches!(self, Kind::Weaver | Kind::WeaverHocus)
    }
}

/// Where things are and how to pin them; fixed for one benchmark invocation.
#[derive(Debug, Clone)]
pub struct Env {
    /// Workspace root (holds bench/ and target/).
    pub root: PathBuf,
    pub weaver_bin: PathBuf,
    /// Extra arguments appended to `weaver serve` (e.g. a short idle-unload grace).
    pub weaver_args: Vec<String>,
    pub server_cpu: String,
    pub client_cpu: String,
    /// Directory for server logs and data of this invocation.
    pub work: PathBuf,
    pub clk_tck: f64,
}

impl Env {
    pub fn bench_dir(&self) -> PathBuf {
        self.root.join("bench")
    }
    pub fn ysweet_bin(&self) -> PathBuf {
        self.bench_dir().join(".tools/bin/y-sweet")
    }
}

/// A started server process.
#[derive(Debug)]
pub struct Running {
    pub kind: Kind,
    pub child: Child,
    pub port: u16,
    pub pid: u32,
    pub log: PathBuf,
}

/// What `/proc` and `/metrics` said at one instant.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at: Option<Instant>,
    pub cpu_s: f64,
    /// CPU of what the server depends on, counted apart (nats-server in cluster mode).
    pub aux_cpu_s: f64,
    pub rss_kb: f64,
    pub hwm_kb: f64,
    pub metrics: Option<String>,
}

pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket on loopback")?;
    Ok(l.local_addr()?.port())
}

/// Starts `kind` with an optional persistent data directory (required for Weaver, which always
/// persists; anchors run in memory unless `data` is given, as in the anchors' measurements).
pub fn start(
    env: &Env,
    kind: Kind,
    data: Option<&Path>,
    extra: &[String],
    tag: &str,
) -> Result<Running> {
    let port = free_port()?;
    let log = env.work.join(format!("{tag}-{}.log", kind.name()));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(&env.server_cpu);
    let bench = env.bench_dir();
    match kind {
        Kind::Weaver | Kind::WeaverHocus => {
            let data = data.ok_or_else(|| anyhow!("weaver needs a data dir"))?;
            cmd.arg(&env.weaver_bin)
                .arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data")
                .arg(data)
                .args(&env.weaver_args)
                .args(extra)
                .env(
                    "RUST_LOG",
                    std::env::var("WEAVER_BENCH_LOG").unwrap_or("warn".into()),
                );
        }
        Kind::Yws => {
            cmd.arg("node")
                .arg(bench.join("node_modules/@y/websocket-server/src/server.js"))
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string());
            if let Some(d) = data {
                cmd.env("YPERSISTENCE", d);
            }
        }
        Kind::Hocuspocus => {
            cmd.arg("node")
                .arg(bench.join("servers/hocuspocus.mjs"))
                .env("HOST", "127.0.0.1")
                .env("PORT", port.to_string());
        }
        Kind::Ysweet => {
            cmd.arg(env.ysweet_bin())
                .arg("serve")
                .arg("--host")
                .arg("127.0.0.1")
                .arg("--port")
                .arg(port.to_string());
            if let Some(d) = data {
                cmd.arg(d);
            }
        }
    }
    cmd.current_dir(&bench)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    // taskset execs the server, so the child's pid is the server's pid.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{} exited during start-up ({status}); log: {}",
                kind.name(),
                log.display()
            );
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "{} did not listen within 30 s; log: {}",
                kind.name(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Running {
        kind,
        child,
        port,
        pid,
        log,
    })
}

impl Running {
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Asks the server to stop (a failure to signal shows up as the wait timing out).
    fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
    }

    /// SIGTERM, then SIGKILL after 10 s: every server gets the chance to flush what it keeps.
    pub fn stop(mut self) -> Result<()> {
        self.sigterm();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Like `stop`, and returns the server's lifetime `write_bytes` (`/proc/<pid>/io`) read
    /// while it is a zombie (exited, not yet reaped), so what it wrote while stopping (Weaver's
    /// final journal checkpoint) is counted too. `None` if it had to be killed or `/proc` said
    /// nothing.
    pub fn stop_counting_writes(mut self) -> Result<Option<u64>> {
        self.sigterm();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if proc_state(self.pid) == Some('Z') {
                let written = proc_write_bytes(self.pid);
                self.child.wait()?;
                return Ok(written);
            }
            if self.child.try_wait()?.is_some() {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(None)
    }

    pub fn sample(&self, env: &Env) -> Sample {
        let mut s = Sample {
            at: Some(Instant::now()),
            ..Sample::default()
        };
        s.cpu_s = proc_cpu_s(self.pid, env.clk_tck);
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) {
            for line in status.lines() {
                let kb = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                if line.starts_with("VmRSS:") {
                    s.rss_kb = kb(line);
                } else if line.starts_with("VmHWM:") {
                    s.hwm_kb = kb(line);
                }
            }
        }
        if self.kind.is_weaver() {
            s.metrics = http_get(self.port, "/metrics").ok();
        }
        s
    }

    /// Lines of the server's log that contain `needle` (e.g. y-sweet's dropped-message warning).
    pub fn log_count(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().filter(|l| l.contains(needle)).count())
            .unwrap_or(0)
    }
}

/// utime + stime of `pid` in seconds from `/proc/<pid>/stat` (0 once the process is gone).
pub fn proc_cpu_s(pid: u32, clk_tck: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is index 0, utime 11, stime 12.
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let st = f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ut + st) / clk_tck
}

/// The process state letter of `/proc/<pid>/stat` (`Z`: exited, not reaped).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// `write_bytes` of `/proc/<pid>/io`: bytes the process (all its threads) caused to be sent to
/// the storage layer.
pub fn proc_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Minimal HTTP/1.0 GET on loopback; enough for a Prometheus text page.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let (head, body) = buf
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// Clock ticks per second for `/proc/<pid>/stat` (100 on every Linux we know, but ask).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
