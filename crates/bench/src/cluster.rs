//! The Weaver deployments the `cluster` scenario compares: one `weaver serve` on redb, or N
//! nodes in cluster mode on one nats-server (each node its own `--data` dir and port, every
//! process pinned to the server core). Starting them until every node is ready, sampling the
//! CPU of all of them at once, and stopping them. What is measured on them lives in
//! cluster_scenario.rs.

use crate::nats::Nats;
use crate::servers::{self, Env, Kind, Running, Sample};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// One deployment shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Plain `weaver serve` (the embedded redb store), the baseline.
    Redb1,
    /// One node in cluster mode on JetStream.
    Js1,
    /// Three nodes in cluster mode on one NATS.
    Js3,
}

impl Topology {
    pub const ALL: [Topology; 3] = [Topology::Redb1, Topology::Js1, Topology::Js3];

    pub fn name(self) -> &'static str {
        match self {
            Topology::Redb1 => "redb-1",
            Topology::Js1 => "js-1",
            Topology::Js3 => "js-3",
        }
    }

    pub fn nodes(self) -> usize {
        match self {
            Topology::Redb1 | Topology::Js1 => 1,
            Topology::Js3 => 3,
        }
    }

    pub fn clustered(self) -> bool {
        self != Topology::Redb1
    }
}

/// Running processes of one deployment. Dropping it kills whatever still runs.
#[derive(Debug)]
pub struct Deployment {
    /// `None` once a node was killed on purpose (failover).
    nodes: Vec<Option<Running>>,
    pids: Vec<u32>,
    ports: Vec<u16>,
    nats: Option<Nats>,
    _data: Vec<tempfile::TempDir>,
}

impl Deployment {
    /// Starts `nodes` weaver nodes: on redb when `nats_bin` is None (then `nodes` must be 1),
    /// else in cluster mode on a fresh nats-server with node ids n1…nN and `lease_ttl_ms`;
    /// `extra_args` go to every node.
    /// Returns once every node answers `/readyz` with 200 and, in cluster mode, node 1 lists
    /// every node as alive (so forwarding finds its owner from the first connection on).
    pub fn start(
        env: &Env,
        nats_bin: Option<&Path>,
        nodes: usize,
        lease_ttl_ms: u64,
        extra_args: &[String],
        tag: &str,
    ) -> Result<Deployment> {
        if nats_bin.is_none() && nodes != 1 {
            bail!("several nodes need cluster mode");
        }
        let nats = match nats_bin {
            Some(bin) => Some(Nats::start(env, bin, tag)?),
            None => None,
        };
        let mut dep = Deployment {
            nodes: Vec::new(),
            pids: Vec::new(),
            ports: Vec::new(),
            nats,
            _data: Vec::new(),
        };
        for i in 1..=nodes {
            let data = tempfile::Builder::new()
                .prefix(&format!("{tag}-n{i}-"))
                .tempdir_in(&env.work)?;
            let mut extra: Vec<String> = match &dep.nats {
                Some(n) => vec![
                    "--cluster".into(),
                    n.url(),
                    "--node-id".into(),
                    format!("n{i}"),
                    "--lease-ttl-ms".into(),
                    lease_ttl_ms.to_string(),
                ],
                None => Vec::new(),
            };
            extra.extend_from_slice(extra_args);
            // The advertised URL defaults to http:// + the bound loopback address: what the
            // other nodes need.
            let srv = servers::start(
                env,
                Kind::Weaver,
                Some(data.path()),
                &extra,
                &format!("{tag}-n{i}"),
            )?;
            dep.pids.push(srv.pid);
            dep.ports.push(srv.port);
            dep.nodes.push(Some(srv));
            dep._data.push(data);
        }
        dep.wait_ready(nodes)?;
        Ok(dep)
    }

    fn wait_ready(&self, nodes: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for &port in &self.ports {
            while servers::http_get(port, "/readyz").is_err() {
                if Instant::now() > deadline {
                    bail!("weaver on port {port} not ready within 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if self.nats.is_some() {
            let port = self.ports[0];
            loop {
                let listed = servers::http_get(port, "/api/cluster")
                    .ok()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
                    .and_then(|v| {
                        v.get("nodes")?
                            .as_array()
                            .map(|a| a.iter().filter(|n| n["alive"] == true).count())
                    })
                    .unwrap_or(0);
                if listed >= nodes {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("node 1 lists {listed} of {nodes} nodes alive after 30 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// WebSocket base URLs of the nodes, node 1 first.
    pub fn ws_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("ws://127.0.0.1:{p}"))
            .collect()
    }

    /// HTTP base URLs of the nodes, node 1 first.
    pub fn http_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// HTTP ports of the nodes, node 1 first.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// CPU of every weaver node (`cpu_s`) and of nats-server (`aux_cpu_s`) now, the summed
    /// RSS of the nodes, and node 1's `/metrics` (the owner of the fan-out room).
    pub fn sample(&self, env: &Env) -> Sample {
        let mut s = Sample {
            at: Some(Instant::now()),
            ..Sample::default()
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            let one = node.sample(env);
            s.cpu_s += one.cpu_s;
            s.rss_kb += one.rss_kb;
            s.hwm_kb += one.hwm_kb;
            if i == 0 {
                s.metrics = one.metrics;
            }
        }
        if let Some(n) = &self.nats {
            s.aux_cpu_s = n.cpu_s(env);
        }
        s
    }

    /// Stops every node (SIGTERM, as `Running::stop`), then nats-server.
    pub fn stop(mut self) -> Result<()> {
        let mut first_err = None;
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            if let Err(e) = node.stop() {
                first_err.get_or_insert(e);
            }
        }
        drop(self.nats.take());
        match first_err {
            Some(e) => Err(e).context("stopping a weaver node"),
            None => Ok(()),
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            let mut child = node.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
