//! Two Rust peers syncing through a running relay (`weaver serve`): both connect to one room,
//! do the y-websocket handshake, peer A adds a block, peer B sees it and answers. The protocol
//! and document code is in `weaver_examples` (src/lib.rs), shared with its test.
//!
//! ```sh
//! cargo run -p weaver -- serve --listen 127.0.0.1:1234 &
//! cargo run -p weaver-examples --example two_peers -- --url ws://127.0.0.1:1234 --room demo
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Two Rust peers syncing a block through a running Weaver relay")]
struct Args {
    /// WebSocket base URL of the relay (the room is appended as the path).
    #[arg(long, default_value = "ws://127.0.0.1:1234")]
    url: String,
    /// Room to join.
    #[arg(long, default_value = "two-peers")]
    room: String,
    /// Seconds to wait for each step.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut log = |line: &str| println!("{line}");
    match weaver_examples::two_peers(
        &args.url,
        &args.room,
        Duration::from_secs(args.timeout_secs),
        &mut log,
    )
    .await
    {
        Ok(_) => {
            println!("ok: both peers converged");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("two_peers failed: {e}");
            ExitCode::FAILURE
        }
    }
}
