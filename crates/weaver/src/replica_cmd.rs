//! `weaver replica`: a command-line replica of one room over `weaver-client`. Edits land in
//! the local replica (`--dir`) first, durably, then go to the server if it answers within
//! `--sync-timeout-ms`. Exit codes: 0 done (for edits: whether or not they synced; stderr says
//! which), 1 local failure (replica, unknown block, bad arguments), 2 usage, 3 `sync`: the
//! server is unreachable, 4 `sync`: the server answered but did not take everything (read-only
//! or expired token, refused, or not confirmed in time).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use weaver_client::{Client, ClientOptions, ConnectionState};

/// `sync`: the server could not be reached within the timeout.
pub const EXIT_UNREACHABLE: u8 = 3;
/// `sync`: the server answered but the replica and the server do not hold the same state.
pub const EXIT_NOT_SYNCED: u8 = 4;

#[derive(Debug, clap::Args)]
pub struct ReplicaArgs {
    /// WebSocket URL of a Weaver node (ws://HOST:PORT).
    #[arg(long, env = "WEAVER_WS_URL", default_value = "ws://127.0.0.1:1234")]
    pub server: String,
    /// The room.
    #[arg(long)]
    pub room: String,
    /// The replica's directory (created if missing); keeps edits made offline.
    #[arg(long)]
    pub dir: PathBuf,
    /// An access token for the room (servers with an auth key).
    #[arg(long, env = "WEAVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long to wait for the server to answer and confirm.
    #[arg(long, default_value_t = 3000)]
    pub sync_timeout_ms: u64,
    #[command(subcommand)]
    pub command: ReplicaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReplicaCommand {
    /// Add a text block, then push it if the server answers.
    AddBlock { id: String, text: String },
    /// Append TEXT to a block's content, then push it if the server answers.
    Edit { id: String, text: String },
    /// Request indexing of a block (attempt 1, or the next attempt), then push it.
    RequestIndex { id: String, index: String },
    /// Pull if the server is reachable, then print the blocks as JSON.
    Show,
    /// Push and pull; exit 0 when the server and the replica hold the same state.
    Sync,
}

/// How waiting for the server ended.
#[derive(Debug, PartialEq, Eq)]
enum Settle {
    Done,
    Unreachable,
    ReadOnly,
    TokenExpired,
    Refused(String),
    NotConfirmed,
}

impl std::fmt::Display for Settle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Settle::Done => write!(f, "synced with the server"),
            Settle::Unreachable => write!(f, "not synced: the server is unreachable"),
            Settle::ReadOnly => write!(f, "not synced: the token is read-only"),
            Settle::TokenExpired => write!(f, "not synced: the token was refused or expired"),
            Settle::Refused(r) => write!(f, "not synced: refused ({r})"),
            Settle::NotConfirmed => write!(f, "not synced: the server did not confirm in time"),
        }
    }
}

pub fn run_cli(args: &ReplicaArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("weaver replica: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits until the server's state is pulled (and, with `push`, everything local is
/// acknowledged), a final refusal, or the deadline.
async fn settle(client: &Client, deadline: Instant, push: bool) -> Settle {
    let mut state = client.watch_state();
    let (mut reached, mut read_only) = (false, false);
    let done = async {
        client.pulled().await;
        if push {
            client.synced().await;
        }
    };
    tokio::pin!(done);
    loop {
        match state.borrow_and_update().clone() {
            ConnectionState::Online => reached = true,
            ConnectionState::ReadOnly => (reached, read_only) = (true, true),
            ConnectionState::TokenExpired => return Settle::TokenExpired,
            ConnectionState::Refused { reason } => return Settle::Refused(reason),
            _ => {}
        }
        tokio::select! {
            () = &mut done => return Settle::Done,
            r = state.changed() => if r.is_err() { return Settle::NotConfirmed },
            () = tokio::time::sleep_until(deadline) => {
                return match (reached, read_only) {
                    (false, _) => Settle::Unreachable,
                    (true, true) => Settle::ReadOnly,
                    (true, false) => Settle::NotConfirmed,
                };
            }
        }
    }
}

async fn run(args: &ReplicaArgs) -> anyhow::Result<u8> {
    let timeout = Duration::from_millis(args.sync_timeout_ms);
    let deadline = Instant::now() + timeout;
    let mut options = ClientOptions::new(&args.server, &args.room, &args.dir)
        .connect_timeout(timeout)
        .handshake_timeout(timeout)
        .backoff(Duration::from_millis(100), Duration::from_millis(500));
    if let Some(t) = &args.token {
        options = options.token(t);
    }
    let client = Client::open(options)
        .with_context(|| format!("opening the replica in {}", args.dir.display()))?;
    let code = command(&client, &args.command, deadline).await;
    client.close().await;
    code
}

async fn command(client: &Client, cmd: &ReplicaCommand, deadline: Instant) -> anyhow::Result<u8> {
    match cmd {
        ReplicaCommand::AddBlock { id, text } => {
            client.transact(|t| t.add_block(id, "text", text))??;
            push(client, deadline).await
        }
        ReplicaCommand::Edit { id, text } => {
            need_block(client, id, deadline).await?;
            client.transact(|t| {
                let end = t.content_len(id)?;
                t.insert_text(id, end, text)
            })??;
            push(client, deadline).await
        }
        ReplicaCommand::RequestIndex { id, index } => {
            need_block(client, id, deadline).await?;
            let attempt =
                client.transact(|t| t.request_index(id, index, &serde_json::json!({})))??;
            eprintln!("requested {index} on {id} (attempt {attempt})");
            push(client, deadline).await
        }
        ReplicaCommand::Show => {
            let s = settle(client, deadline, false).await;
            if s != Settle::Done {
                eprintln!("showing the local replica; {s}");
            }
            println!("{}", client.to_json()?);
            Ok(0)
        }
        ReplicaCommand::Sync => {
            let s = settle(client, deadline, true).await;
            eprintln!(
                "{s} ({} local update(s) not on the server)",
                client.unsynced()
            );
            Ok(match s {
                Settle::Done => 0,
                Settle::Unreachable => EXIT_UNREACHABLE,
                _ => EXIT_NOT_SYNCED,
            })
        }
    }
}

/// After a local edit: says it is saved, then tries to push it within the deadline.
async fn push(client: &Client, deadline: Instant) -> anyhow::Result<u8> {
    eprintln!("saved locally");
    let s = settle(client, deadline, true).await;
    eprintln!("{s}");
    Ok(0)
}

/// A block that may exist only on the server: pull first when the replica lacks it.
async fn need_block(client: &Client, id: &str, deadline: Instant) -> anyhow::Result<()> {
    if client.block(id)?.is_none() {
        let _ = settle(client, deadline, false).await;
    }
    if client.block(id)?.is_none() {
        anyhow::bail!("no block {id:?} in the replica or on the server");
    }
    Ok(())
}
