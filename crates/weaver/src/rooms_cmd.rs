//! `weaver rooms`: the rooms of a running server (`GET /api/rooms`, every page), as a table or
//! as JSON lines, for operators and scripts.

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct RoomsArgs {
    /// Base URL of the running server.
    #[arg(long, env = "WEAVER_URL", default_value = "http://127.0.0.1:1234")]
    pub server: String,
    /// A token that may list the rooms under `--prefix` (a prefix token for it, or one for
    /// every room), needed when the server has an auth key.
    #[arg(long, env = "WEAVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Only rooms whose name starts with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// One JSON object per room and line, as the API returns it, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A number of the answer (`?` when the server sent something else).
fn num(v: &serde_json::Value) -> String {
    v.as_u64().map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// Rooms per request.
const PAGE: usize = 1000;

/// Runs `weaver rooms`: prints the rooms, or the reason on stderr and fails.
pub fn run_cli(args: &RoomsArgs) -> std::process::ExitCode {
    crate::run_client("weaver rooms", list(args), |()| {})
}

async fn list(args: &RoomsArgs) -> anyhow::Result<()> {
    let base = format!("{}/api/rooms", args.server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .context("building the HTTP client")?;
    if !args.json {
        println!(
            "{:<40} {:>10} {:>12} {:>8} {:>7} {:>11}",
            "ROOM", "LAST_SEQ", "STORED_B", "LOG_UPD", "LOADED", "CONNECTIONS"
        );
    }
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("prefix", args.prefix.clone()), ("limit", PAGE.to_string())];
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let mut req = client.get(&base).query(&query);
        if let Some(t) = &args.token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.with_context(|| format!("GET {base}"))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .with_context(|| format!("reading {base}"))?;
        if !status.is_success() {
            anyhow::bail!("GET {base}: {status}: {}", body.trim());
        }
        let page: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("GET {base}: not JSON"))?;
        let rooms = page["rooms"]
            .as_array()
            .with_context(|| format!("GET {base}: no `rooms` in the answer"))?;
        for r in rooms {
            if args.json {
                println!("{r}");
            } else {
                println!(
                    "{:<40} {:>10} {:>12} {:>8} {:>7} {:>11}",
                    r["name"].as_str().unwrap_or("?"),
                    num(&r["last_seq"]),
                    num(&r["stored_bytes"]),
                    num(&r["log_updates"]),
                    if r["loaded"].as_bool().unwrap_or(false) {
                        "yes"
                    } else {
                        "no"
                    },
                    num(&r["connections"])
                );
            }
        }
        // Cluster mode: nodes that did not answer; their rooms' counts are missing.
        if let Some(silent) = page["unreachable"].as_array().filter(|a| !a.is_empty()) {
            let ids: Vec<&str> = silent.iter().filter_map(|v| v.as_str()).collect();
            eprintln!(
                "warning: nodes {} did not answer: `loaded` and `connections` of rooms running there are missing",
                ids.join(", ")
            );
        }
        match page["next"].as_str() {
            // The cursor must move on, or a misbehaving server would keep us here for ever.
            Some(n) if after.as_deref().is_none_or(|a| n > a) => after = Some(n.to_owned()),
            Some(n) => anyhow::bail!("GET {base}: the page cursor did not advance ({n:?})"),
            None => return Ok(()),
        }
    }
}
