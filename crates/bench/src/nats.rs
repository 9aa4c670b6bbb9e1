//! The nats-server the `cluster` scenario runs Weaver's cluster mode on: finding the binary
//! (`scripts/nats.sh` installs the pinned one), starting it like tests/js/lib/nats.mjs does
//! (JetStream with `sync_interval: always`, loopback only, its store in a temp dir, pinned to
//! the server core), sampling its CPU and stopping it. What Weaver does with it lives in
//! cluster.rs.

use crate::servers::{Env, free_port, proc_cpu_s};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Oldest nats-server Weaver's cluster mode runs on (`sync_interval`, the KV API it uses).
const MIN_VERSION: (u32, u32) = (2, 11);

/// The nats-server binary: `$WEAVER_NATS_SERVER`, then `.tools/nats/bin/nats-server` under the
/// workspace (where scripts/nats.sh puts it), then `nats-server` on the PATH; each only if
/// its version is at least 2.11. `Err` says why none fits and how to install one.
pub fn find(root: &Path) -> Result<PathBuf> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WEAVER_NATS_SERVER") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(root.join(".tools/nats/bin/nats-server"));
    candidates.push(PathBuf::from("nats-server"));
    for bin in candidates {
        match version(&bin) {
            Some(v) if v >= MIN_VERSION => return Ok(bin),
            Some((major, minor)) => {
                tried.push(format!("{} is {major}.{minor}", bin.display()));
            }
            None => tried.push(format!("{} not found", bin.display())),
        }
    }
    bail!(
        "no nats-server ≥ {}.{} ({}): run scripts/nats.sh and export WEAVER_NATS_SERVER=<the path it prints>",
        MIN_VERSION.0,
        MIN_VERSION.1,
        tried.join("; ")
    )
}

/// `nats-server: v2.15.1` → (2, 15).
fn version(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let v = text.split_whitespace().last()?.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// A running nats-server; killed when dropped, its store removed with the temp dir.
#[derive(Debug)]
pub struct Nats {
    child: Child,
    pub pid: u32,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts `bin` on a free loopback port, pinned to the server core; returns once the
    /// monitoring `/healthz` (which includes JetStream) answers 200.
    pub fn start(env: &Env, bin: &Path, tag: &str) -> Result<Nats> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{tag}-nats-"))
            .tempdir_in(&env.work)?;
        let port = free_port()?;
        let monitor = free_port()?;
        let conf = dir.path().join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                dir.path().join("jetstream").display().to_string()
            ),
        )?;
        let log = env.work.join(format!("{tag}-nats.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(&env.server_cpu)
            .arg(bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting nats-server")?;
        // taskset execs nats-server, so the child's pid is the server's.
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "nats-server exited during start-up ({status}); log: {}",
                    log.display()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && crate::servers::http_get(monitor, "/healthz").is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "nats-server not healthy within 15 s; log: {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nats {
            child,
            pid,
            port,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// utime + stime so far, seconds.
    pub fn cpu_s(&self, env: &Env) -> f64 {
        proc_cpu_s(self.pid, env.clk_tck)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        // Nothing of its store is kept: SIGKILL is enough and never hangs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_version;

    #[test]
    fn versions_of_nats_server() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
        assert_eq!(parse_version("nats-server: v2.9.25"), Some((2, 9)));
        assert_eq!(parse_version(""), None);
    }
}
