//! Runs one invocation of the Node load generator (bench/loadgen.mjs) pinned to the client
//! core, and samples the server at every `MARK <name>` line the load generator prints. What the
//! clients do lives in the JS file; what a figure means lives in scenario.rs.

use crate::servers::{Env, Running, Sample};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What one load-generator run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub result: Value,
    pub marks: BTreeMap<String, Sample>,
}

impl Outcome {
    pub fn num(&self, key: &str) -> Option<f64> {
        self.result.get(key).and_then(Value::as_f64)
    }
    pub fn flag(&self, key: &str) -> bool {
        self.result
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    /// Server CPU seconds between two marks.
    pub fn cpu_between(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.marks.get(b)?.cpu_s - self.marks.get(a)?.cpu_s)
    }
    /// CPU seconds of what the server depends on (nats-server) between two marks.
    pub fn aux_cpu_between(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.marks.get(b)?.aux_cpu_s - self.marks.get(a)?.aux_cpu_s)
    }
    pub fn secs_between(&self, a: &str, b: &str) -> Option<f64> {
        let (a, b) = (self.marks.get(a)?.at?, self.marks.get(b)?.at?);
        Some(b.duration_since(a).as_secs_f64())
    }
}

/// `params` must hold `scenario` and everything that scenario reads; `server`, `url` and
/// `hardLimitMs` are filled in here. `server` may be None for runs that need no sampling.
pub fn run(
    env: &Env,
    server: Option<&Running>,
    kind_name: &str,
    url: &str,
    params: Value,
    hard_limit: Duration,
    tag: &str,
) -> Result<Outcome> {
    let sample = || match server {
        Some(srv) => srv.sample(env),
        None => Sample {
            at: Some(std::time::Instant::now()),
            ..Sample::default()
        },
    };
    run_sampled(env, &sample, kind_name, url, params, hard_limit, tag)
}

/// [`run`] with the sampling at the marks left to the caller (several server processes).
pub fn run_sampled(
    env: &Env,
    sample: &dyn Fn() -> Sample,
    kind_name: &str,
    url: &str,
    mut params: Value,
    hard_limit: Duration,
    tag: &str,
) -> Result<Outcome> {
    let obj = params
        .as_object_mut()
        .ok_or_else(|| anyhow!("loadgen params must be an object"))?;
    obj.insert("server".into(), kind_name.into());
    obj.insert("url".into(), url.into());
    obj.insert("hardLimitMs".into(), (hard_limit.as_millis() as u64).into());
    let log = env.work.join(format!("{tag}-loadgen.log"));
    let err = File::create(&log)?;
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg(&env.client_cpu)
        .arg("node")
        .arg(env.bench_dir().join("loadgen.mjs"))
        .arg(params.to_string())
        .current_dir(env.bench_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .context("starting the load generator (node)")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no loadgen stdout"))?;
    let mut out = Outcome::default();
    let mut got_result = false;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(name) = line.strip_prefix("MARK ") {
            out.marks.insert(name.trim().to_string(), sample());
        } else if let Some(json) = line.strip_prefix("RESULT ") {
            out.result = serde_json::from_str(json).context("parsing loadgen RESULT")?;
            got_result = true;
        }
    }
    let status = child.wait()?;
    if let Some(e) = out.result.get("error").and_then(Value::as_str) {
        bail!("loadgen failed: {e}");
    }
    if !got_result || !status.success() {
        bail!(
            "loadgen exited with {status} and no result; see {}",
            log.display()
        );
    }
    Ok(out)
}
