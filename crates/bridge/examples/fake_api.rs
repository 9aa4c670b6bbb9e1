//! A small external "indexing API" to try the bridge's HTTP integration by hand (see
//! docs/bridge.md). It is the same service the bridge's Rust tests use
//! (crates/bridge/tests/it/common/fake_api.rs).
//!
//! ```text
//! cargo run -p weaver-bridge --example fake_api -- [--listen 127.0.0.1:8787] [--mode sync|async]
//!     [--webhook-url http://127.0.0.1:1234/api/webhooks/fake] [--secret whsec_...]
//! ```
//! Prints a matching `--bridge-config` snippet, then serves until Ctrl-C.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/it/common/fake_api.rs"]
mod fake_api;

use base64::Engine as _;
use weaver_bridge::WebhookSecret;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: fake_api [--listen ADDR] [--mode sync|async] [--webhook-url URL] [--secret whsec_...]"
        );
        return;
    }
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:8787".into());
    let mode = arg(&args, "--mode").unwrap_or_else(|| "sync".into());
    let webhook_url = arg(&args, "--webhook-url")
        .unwrap_or_else(|| "http://127.0.0.1:1234/api/webhooks/fake".into());
    let secret_text = arg(&args, "--secret").unwrap_or_else(|| {
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"weaver-demo-webhook-secret-32b!!")
        )
    });
    let secret = match WebhookSecret::parse(&secret_text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bad --secret: {e}");
            std::process::exit(2);
        }
    };
    let api = fake_api::FakeApi::start_on(&listen).await;
    api.set_webhook(&webhook_url, secret);
    let path = if mode == "async" {
        "/async?delay_ms=1500"
    } else {
        "/sync"
    };
    println!("fake API listening on http://{}", api.addr);
    println!("webhooks go to {webhook_url}");
    println!();
    println!(
        "# weaver-bridge.toml  (run: FAKE_WEBHOOK_SECRET='{secret_text}' weaver serve --bridge-config weaver-bridge.toml)"
    );
    println!("[routes]\nsearch = \"fake\"\n");
    println!(
        "[[integrations]]\nname = \"fake\"\nkind = \"http\"\nurl = \"{}\"",
        api.url(path)
    );
    println!("webhook_secrets = [\"FAKE_WEBHOOK_SECRET\"]");
    if mode == "async" {
        println!(
            "# optional: also poll\nstatus_url = \"{}\"",
            api.url("/jobs/{external_id}")
        );
    }
    println!();
    println!(
        "request counts per Idempotency-Key: curl http://{}/stats",
        api.addr
    );
    let _ = tokio::signal::ctrl_c().await;
}
