//! The `weaver` binary: parses flags, installs tracing and the Prometheus recorder, opens the
//! store, runs the relay (and whatever routers other parts merge in) until SIGINT/SIGTERM.
//! Deliberately thin: every behaviour lives in the library crates.

#[cfg(not(target_env = "msvc"))]
mod alloc;
mod backup;
mod bridge_args;
mod bridge_host;
mod bridge_leader;
mod cluster;
mod cluster_backup;
mod cluster_host;
mod cors;
mod demo;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use clap::{Parser, Subcommand, ValueEnum};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weaver_relay::{Relay, RelayConfig};

mod keygen_cmd;
mod notify_args;
mod notify_leader;
mod replica_cmd;
mod restore_cmd;
mod rooms_cmd;
mod token_cmd;

#[derive(Debug, Parser)]
#[command(
    name = "weaver",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("WEAVER_COMMIT"), ")"),
    about = "Offline-first sync engine: a durable Yjs relay with a bridge to external APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (WebSocket rooms, HTTP API, health and metrics).
    // Boxed: the serve flags dwarf the other commands' (clippy::large_enum_variant).
    Serve(Box<ServeArgs>),
    /// Print a signed access token for a room (see docs/security.md).
    Token(token_cmd::TokenArgs),
    /// Save a consistent copy of a running server's store to a file (see docs/operations.md).
    Backup(backup::BackupArgs),
    /// Load a backup file (a cluster's or a single node's) into a new cluster's JetStream
    /// (see docs/cluster.md, "Backup and restore").
    Restore(restore_cmd::RestoreArgs),
    /// List a running server's rooms: stored content, memory, connections (GET /api/rooms).
    Rooms(rooms_cmd::RoomsArgs),
    /// Print a new random token key (hex) for `--auth-key` / WEAVER_AUTH_KEY.
    Keygen,
    /// An offline-first replica of one room in a local directory (weaver-client): edit, show,
    /// sync. Exit codes: 3 unreachable, 4 not in sync (see `weaver replica --help`).
    Replica(replica_cmd::ReplicaArgs),
}

/// Runs a client subcommand (`weaver backup`, `weaver rooms`) on a one-thread runtime: `done`
/// reports its result on stdout; a failure is one line on stderr (`<name>: <reason>`) and
/// exit status 1.
pub(crate) fn run_client<T>(
    name: &str,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
    done: impl FnOnce(T),
) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(work));
    match result {
        Ok(v) => {
            done(v);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CommitArg {
    TwoPhase,
    OnePhase,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound address is logged).
    #[arg(
        help_heading = "Network",
        long,
        env = "WEAVER_LISTEN",
        default_value = "127.0.0.1:1234"
    )]
    listen: SocketAddr,
    /// Data directory; the database is `<data>/weaver.redb`, its journal `<data>/weaver.journal`.
    #[arg(
        help_heading = "Storage",
        long,
        env = "WEAVER_DATA",
        default_value = "./weaver-data"
    )]
    data: PathBuf,
    /// Largest WebSocket message / HTTP update body; bigger messages close with 1009.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_MESSAGE_BYTES", default_value_t = weaver_relay::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Seconds a room stays loaded after its last connection leaves.
    #[arg(help_heading = "Storage", long, env = "WEAVER_IDLE_UNLOAD_SECS", default_value_t = weaver_relay::DEFAULT_IDLE_UNLOAD.as_secs())]
    idle_unload_secs: u64,
    /// Frames queued per connection before it is closed as a slow consumer (1013).
    #[arg(help_heading = "Limits", long, env = "WEAVER_CONN_QUEUE_FRAMES", default_value_t = weaver_relay::DEFAULT_CONN_QUEUE_FRAMES)]
    conn_queue_frames: usize,
    /// Seconds between WebSocket pings; silent connections close after two intervals (4408).
    #[arg(help_heading = "Network", long, env = "WEAVER_PING_INTERVAL_SECS", default_value_t = weaver_relay::DEFAULT_PING_INTERVAL.as_secs())]
    ping_interval_secs: u64,
    /// Compact a room's log into a snapshot after this many updates (or snapshot bytes / 256
    /// when larger, so big documents are not rewritten every few edits)...
    #[arg(help_heading = "Storage", long, env = "WEAVER_COMPACT_AFTER_UPDATES", default_value_t = weaver_relay::DEFAULT_COMPACT_AFTER_UPDATES)]
    compact_after_updates: u64,
    /// ...or after this many logged bytes (or snapshot bytes / 2 when larger).
    #[arg(help_heading = "Storage", long, env = "WEAVER_COMPACT_AFTER_BYTES", default_value_t = weaver_relay::DEFAULT_COMPACT_AFTER_BYTES)]
    compact_after_bytes: u64,
    /// Open WebSocket connections accepted at once; more get HTTP 503 before the upgrade.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_CONNECTIONS", default_value_t = weaver_relay::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Change feeds (`GET /api/rooms/{room}/changes`, Server-Sent Events) open at once; more get
    /// HTTP 503.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_CHANGE_FEEDS", default_value_t = weaver_relay::DEFAULT_MAX_CHANGE_FEEDS)]
    max_change_feeds: usize,
    /// Approximate stored size a room may reach; writes beyond it are refused (1008 / 413).
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_DOC_BYTES", default_value_t = weaver_relay::DEFAULT_MAX_DOC_BYTES)]
    max_doc_bytes: u64,
    /// Bytes of causally incomplete ("pending") updates a room may park; more → 1008.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_PENDING_BYTES", default_value_t = weaver_relay::DEFAULT_MAX_PENDING_BYTES)]
    max_pending_bytes: usize,
    /// redb commit protocol for the relay's writes: `one-phase` (one fsync + checksums) or
    /// `two-phase` (two fsyncs; see docs/storage.md for the one attack it adds defence against).
    /// Both are fully durable.
    #[arg(
        help_heading = "Storage",
        long,
        env = "WEAVER_COMMIT",
        value_enum,
        default_value = "one-phase"
    )]
    commit: CommitArg,
    /// Milliseconds a room under a write storm holds a batch of updates to commit and broadcast
    /// more of them at once (0: never hold). Ordinary editing is never held (see
    /// `--hold-above-rate`).
    #[arg(help_heading = "Storage", long, env = "WEAVER_HOLD_WINDOW_MS", default_value_t = weaver_relay::DEFAULT_HOLD_WINDOW.as_millis() as u64)]
    hold_window_ms: u64,
    /// Updates per second in one room (smoothed over ~20 ms) from which its batches are held.
    #[arg(help_heading = "Storage", long, env = "WEAVER_HOLD_ABOVE_RATE", default_value_t = weaver_relay::DEFAULT_HOLD_ABOVE_RATE)]
    hold_above_rate: u32,
    /// Seconds between automatic versions of a room while it is edited (at most one per
    /// period; 0: no automatic versions). Versions survive compaction (docs/operations.md).
    #[arg(help_heading = "Storage", long, env = "WEAVER_VERSION_EVERY_SECS", default_value_t = weaver_relay::DEFAULT_VERSION_EVERY.as_secs())]
    version_every_secs: u64,
    /// Automatic and pre-restore versions kept per room, newest first (0: no count limit).
    /// Explicit versions and a room's newest version are always kept.
    #[arg(help_heading = "Storage", long, env = "WEAVER_KEEP_VERSIONS", default_value_t = weaver_relay::DEFAULT_KEEP_VERSIONS)]
    keep_versions: usize,
    /// Days automatic and pre-restore versions are kept (0: no age limit).
    #[arg(help_heading = "Storage", long, env = "WEAVER_KEEP_VERSIONS_DAYS", default_value_t = weaver_relay::DEFAULT_KEEP_VERSIONS_DAYS)]
    keep_versions_days: u64,
    /// MiB of database pages kept in memory (redb's page cache): bounds what the store adds to
    /// the server's memory as the database grows.
    #[arg(help_heading = "Storage", long, env = "WEAVER_STORE_CACHE_MB", default_value_t = weaver_relay::DEFAULT_STORE_CACHE_BYTES / (1024 * 1024))]
    store_cache_mb: usize,
    /// Open the database without verifying every page's checksum first. The check refuses a
    /// damaged file with a clear error instead of trusting it (redb may then panic on the
    /// first damaged read); it reads the whole file once at start (~0.3 s per 500 MB cached).
    #[arg(help_heading = "Storage", long, env = "WEAVER_SKIP_STORE_CHECK")]
    skip_store_check: bool,
    /// Seconds a client has to send a complete HTTP request head (also the idle limit of a
    /// kept-alive HTTP connection); slower or silent connections are closed (slowloris).
    #[arg(help_heading = "Network", long, env = "WEAVER_HANDSHAKE_TIMEOUT_SECS", default_value_t = weaver_relay::DEFAULT_HANDSHAKE_TIMEOUT.as_secs())]
    handshake_timeout_secs: u64,
    /// HTTP connections that are not (yet) WebSockets, open at once; more are closed at accept
    /// (bounds what a flood of silent sockets costs within the handshake deadline).
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_HTTP_CONNECTIONS", default_value_t = weaver_relay::DEFAULT_MAX_HTTP_CONNECTIONS)]
    max_http_connections: usize,
    /// The same, per client IP address, so one client cannot take them all.
    #[arg(help_heading = "Limits", long, env = "WEAVER_MAX_HTTP_CONNECTIONS_PER_IP", default_value_t = weaver_relay::DEFAULT_MAX_HTTP_CONNECTIONS_PER_IP)]
    max_http_connections_per_ip: usize,
    /// Seconds shutdown waits for rooms to flush and close.
    #[arg(help_heading = "Network", long, env = "WEAVER_SHUTDOWN_TIMEOUT_SECS", default_value_t = weaver_relay::DEFAULT_SHUTDOWN_TIMEOUT.as_secs())]
    shutdown_timeout_secs: u64,
    /// Tokens and abuse limits (token_cmd.rs).
    #[command(flatten)]
    security: token_cmd::SecurityArgs,
    #[command(flatten)]
    notify: notify_args::NotifyArgs,
    /// Cluster mode (cluster.rs, docs/cluster.md).
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    #[command(flatten)]
    cors: cors::CorsArgs,
    /// Bridge configuration (TOML, see docs/bridge.md); without it every index uses the
    /// built-in `local` integration.
    #[arg(help_heading = "Bridge", long, env = "WEAVER_BRIDGE_CONFIG")]
    bridge_config: Option<PathBuf>,
    #[command(flatten)]
    bridge_failure: bridge_args::BridgeFailureArgs,
    /// Log output format (logs go to stderr; filter with RUST_LOG, default `info`).
    #[arg(
        help_heading = "Logging",
        long,
        env = "WEAVER_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

impl ServeArgs {
    /// How the redb room store commits (`--commit`).
    fn commit_mode(&self) -> weaver_relay::CommitMode {
        match self.commit {
            CommitArg::TwoPhase => weaver_relay::CommitMode::TwoPhase,
            CommitArg::OnePhase => weaver_relay::CommitMode::OnePhase,
        }
    }

    fn relay_config(&self) -> anyhow::Result<RelayConfig> {
        RelayConfig {
            max_message_bytes: self.max_message_bytes,
            idle_unload: Duration::from_secs(self.idle_unload_secs),
            conn_queue_frames: self.conn_queue_frames,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            compact_after_updates: self.compact_after_updates,
            compact_after_bytes: self.compact_after_bytes,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            max_http_connections: self.max_http_connections,
            max_http_connections_per_ip: self.max_http_connections_per_ip,
            max_connections: self.max_connections,
            max_change_feeds: self.max_change_feeds,
            max_doc_bytes: self.max_doc_bytes,
            max_pending_bytes: self.max_pending_bytes,
            hold_window: Duration::from_millis(self.hold_window_ms),
            hold_above_rate: self.hold_above_rate,
            ws_allowed_origins: self.cors.ws_allowed_origins.clone(),
            versions: weaver_relay::VersionConfig {
                every: Duration::from_secs(self.version_every_secs),
                keep: self.keep_versions,
                keep_days: self.keep_versions_days,
            },
            ..RelayConfig::default()
        }
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }
}

fn main() -> std::process::ExitCode {
    // reqwest is built without a bundled crypto provider (workspace Cargo.toml): `weaver backup`
    // and `weaver rooms` use ring, like the bridge and the notifier. Errs only if one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => token_cmd::run(&args),
        Command::Backup(args) => backup::run_cli(&args),
        Command::Restore(args) => restore_cmd::run_cli(&args),
        Command::Rooms(args) => rooms_cmd::run_cli(&args),
        Command::Keygen => match keygen_cmd::new_key_hex() {
            Ok(key) => {
                println!("{key}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("keygen: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Replica(args) => replica_cmd::run_cli(&args),
        Command::Serve(args) => {
            init_tracing(args.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_keep_alive(Duration::from_secs(1))
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "cannot start the async runtime");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(serve(*args));
            // Dropping the runtime would wait for every blocking task without limit (a read
            // stuck on a failing disk); `serve` already waited what shutdown allows.
            runtime.shutdown_timeout(Duration::from_secs(1));
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = format!("{e:#}"), "weaver failed");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // `log_internal_errors(false)`: by default a failed log write (stderr on a full disk:
    // ENOSPC) is reported with `eprintln!`, which panics when stderr fails too, killing the task
    // or thread that logged, e.g. the signal task before it starts the shutdown (issue 21).
    // A lost log line is better than a dead task.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for name in weaver_relay::metrics::HISTOGRAMS {
        let buckets: &[f64] = if name.ends_with("_seconds") {
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]
        } else {
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
            ]
        };
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .context("metric buckets")?;
    }
    for (name, buckets) in weaver_bridge::metrics::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .context("metric buckets")?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    Ok(handle)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.security.apply(args.relay_config()?, args.listen)?;
    let auth_enabled = config.auth.key.is_some();
    let http_limits = config.http_limits();
    let metrics = install_metrics()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    #[cfg(unix)]
    tokio::spawn(survive_file_size_limit(shutdown.clone()));
    {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => metrics.run_upkeep(),
                }
            }
        });
    }

    let cluster_plan = args.cluster.plan()?;
    let notify_config = args.notify.config()?;
    let mut bridge_config = match &args.bridge_config {
        Some(p) => weaver_bridge::BridgeConfig::load(p)
            .with_context(|| format!("bridge config {}", p.display()))?,
        None => weaver_bridge::BridgeConfig::default(),
    };
    bridge_config.failure_webhook = args.bridge_failure.config()?;
    let data = args.data.clone();
    let cache_bytes = args.store_cache_mb.saturating_mul(1024 * 1024);
    let skip_store_check = args.skip_store_check;
    let db = tokio::task::spawn_blocking(move || {
        weaver_relay::open_database_with_cache(&data, cache_bytes, !skip_store_check)
    })
    .await
    .context("opening the store")?
    .with_context(|| format!("opening the store in {}", args.data.display()))?;
    // The relay has its own token, cancelled only after the bridge drained: the bridge's last
    // write-backs still need a serving relay, and WebSocket clients stay connected meanwhile.
    let relay_stop = CancellationToken::new();
    // In cluster mode rooms live on JetStream; the redb file keeps only node-local data.
    let (joining, rooms): (Option<cluster::Joining>, Arc<dyn weaver_relay::RoomStore>) =
        match cluster_plan {
            Some(plan) => {
                let (joining, rooms) = plan.start().await?;
                (Some(joining), rooms)
            }
            None => (
                None,
                // Journaled: an edit's durability costs one appended journal page, not a redb
                // commit's rewritten B-tree pages (docs/storage.md, "Journal").
                weaver_relay::RedbRoomStore::start_journaled(
                    db.clone(),
                    args.commit_mode(),
                    &args.data,
                )
                .context("starting the relay's room store")?,
            ),
        };
    // Bound before the relay starts: a cluster node is announced at its bound address
    // (`--listen` may say port 0), and its room placement needs the node registry.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if !addr.ip().is_loopback() && !auth_enabled {
        warn!(%addr, "listening on a non-loopback address without authentication");
    }
    let node = match joining {
        Some(joining) => Some(joining.announce(addr).await?),
        None => None,
    };
    let mut config = config;
    if let Some(node) = &node {
        config.placement = node.placement();
    }
    // Forwarded write-backs to a room's owner carry a token signed with this key.
    let auth_key = config.auth.key.clone();
    let relay = Relay::start(rooms, config, relay_stop).context("starting the relay")?;
    let store = db.clone();
    let bridge = match &node {
        // One bridge per cluster, on the node holding the `bridge` role (bridge_leader.rs).
        Some(node) => {
            let (client, outbox) = node.outbox();
            let outbox = bridge_leader::jetstream_outbox(client, outbox, &bridge_config);
            Bridge::Cluster(Box::new(bridge_leader::BridgeLeader::start(
                bridge_leader::Deps {
                    cfg: bridge_config,
                    outbox,
                    relay: relay.handle(),
                    log: node.reading_log().await?,
                    key: auth_key,
                    leadership: node.leadership("bridge"),
                    directory: node.directory(),
                    node_id: node.node_id().to_owned(),
                },
                shutdown.child_token(),
            )?))
        }
        None => Bridge::Single(
            weaver_bridge::Bridge::start(
                bridge_config,
                db,
                Arc::new(bridge_host::RelayHost(relay.handle())),
                shutdown.child_token(),
            )
            .context("starting the bridge")?,
        ),
    };
    let notifier = match (notify_config, &node) {
        (None, _) => None,
        // One notifier per cluster, on the node holding the `notifier` role (notify_leader.rs).
        (Some(cfg), Some(node)) => Some(Notify::Cluster(notify_leader::NotifyLeader::start(
            cfg,
            node.reading_log().await?,
            node.leadership("notifier"),
            shutdown.child_token(),
        )?)),
        (Some(cfg), None) => Some(Notify::Single(
            weaver_notify::Notifier::start(
                cfg,
                store.clone(),
                relay.handle(),
                shutdown.child_token(),
            )
            .context("starting room notifications")?,
        )),
    };

    let metrics_router = Router::new().route(
        "/metrics",
        get(move || std::future::ready(metrics.render())),
    );
    // Other parts (bridge API, web demo) merge their routers here. The bridge's `/api/calls…`
    // need a valid token when auth is on and check themselves what it grants (a room token
    // reads its room's calls); its webhook receivers check their own signatures and stay open,
    // as do `/`, `/assets/*` and `/metrics`.
    let bridge_routes = relay
        .handle()
        .authenticator()
        .require_token_except(bridge.router(), &["/api/webhooks/"]);
    // The whole store, every room and call: an admin token for every room, like `/api/calls`.
    // In cluster mode, every room of the cluster (from JetStream), in the same format.
    // Kept here to stop its lanes at shutdown.
    let transfer = match &node {
        Some(node) => Some(Arc::new(node.transfer().await?)),
        None => None,
    };
    let backup_source = match &transfer {
        Some(transfer) => backup::Source::Cluster(cluster_backup::parts(
            transfer.clone(),
            node.as_ref().map(|n| n.outbox()),
        )),
        None => backup::Source::Local(store),
    };
    let backup_routes = relay
        .handle()
        .authenticator()
        .require_admin(backup::router(backup_source, args.data.clone()));
    let app = relay
        .router()
        .merge(metrics_router)
        .merge(bridge_routes)
        .merge(backup_routes)
        // A WebSocket upgrade at `/` is a Hocuspocus client; a plain GET gets the page.
        .merge(relay.with_hocuspocus(demo::router()));
    let app = args.cors.apply(app)?;

    let app = match &node {
        Some(node) => app.merge(
            relay
                .handle()
                .authenticator()
                .require_admin(node.router(relay.handle())),
        ),
        None => app,
    };
    info!(%addr, data = %args.data.display(), "listening");

    let server = tokio::spawn(weaver_relay::serve(
        listener,
        app,
        http_limits,
        shutdown.clone().cancelled_owned(),
    ));
    shutdown.cancelled().await;
    info!("shutting down");
    // One deadline for the whole shutdown, whatever failed (a full disk, a stuck store): each
    // step gets what is left of it, and the HTTP server's drain a little more.
    let grace = Duration::from_secs(args.shutdown_timeout_secs.max(1));
    let deadline = tokio::time::Instant::now() + grace;
    // The bridge stops first: its in-flight write-backs still need the relay. Then
    // `relay.shutdown()` cancels the relay's token (connections close with 1012) and flushes.
    if tokio::time::timeout_at(deadline, bridge.join())
        .await
        .is_err()
    {
        warn!("bridge shutdown timed out");
    }
    match notifier {
        Some(Notify::Single(n)) => {
            n.stop(deadline.saturating_duration_since(tokio::time::Instant::now()))
                .await;
        }
        Some(Notify::Cluster(n)) => {
            let late = tokio::time::timeout_at(deadline, n.join()).await.is_err();
            if late {
                warn!("room notifications shutdown timed out");
            }
        }
        None => {}
    }
    if tokio::time::timeout_at(deadline, relay.shutdown())
        .await
        .is_err()
    {
        warn!("relay shutdown timed out");
    }
    let server_deadline = deadline.max(tokio::time::Instant::now()) + weaver_relay::SHUTDOWN_DRAIN;
    match tokio::time::timeout_at(server_deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "http server error"),
        Ok(Err(e)) => warn!(error = %e, "http server task failed"),
        Err(_) => warn!("http server did not stop in time"),
    }
    if let Some(transfer) = transfer
        && tokio::time::timeout(Duration::from_secs(2), transfer.stop())
            .await
            .is_err()
    {
        warn!("stopping the backup's room reads timed out");
    }
    // Leaving the node registry talks to NATS, which may be the thing that is down: bounded
    // like every other step (the entry expires by itself if this gives up).
    if let Some(node) = node
        && tokio::time::timeout(Duration::from_secs(2), node.stop())
            .await
            .is_err()
    {
        warn!("leaving the node registry timed out");
    }
    info!("bye");
    Ok(())
}

/// The bridge of this process: its own (single node), or the cluster's while this node leads.
enum Bridge {
    Single(weaver_bridge::BridgeHandle),
    Cluster(Box<bridge_leader::BridgeLeader>),
}

impl Bridge {
    fn router(&self) -> Router {
        match self {
            Bridge::Single(b) => b.router(),
            Bridge::Cluster(b) => b.router(),
        }
    }

    /// Waits until the bridge stopped (after the shutdown token was cancelled).
    async fn join(self) {
        match self {
            Bridge::Single(b) => b.join().await,
            Bridge::Cluster(b) => b.join().await,
        }
    }
}

/// The room notifier of this process: its own (single node), or the cluster's role.
enum Notify {
    Single(weaver_notify::Notifier),
    Cluster(notify_leader::NotifyLeader),
}

/// A write past the process's file-size limit (`ulimit -f`) raises SIGXFSZ, whose default
/// action kills the process (with a core dump) in the middle of a commit. Handled, the write
/// fails with EFBIG instead and takes the storage-failure path: the group is refused, its
/// rooms close their connections, the server keeps serving reads.
#[cfg(unix)]
async fn survive_file_size_limit(shutdown: CancellationToken) {
    // SIGXFSZ is 25 on Linux (every architecture Rust supports there) and on the BSDs/macOS.
    const SIGXFSZ: i32 = 25;
    let kind = tokio::signal::unix::SignalKind::from_raw(SIGXFSZ);
    let mut xfsz = match tokio::signal::unix::signal(kind) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot handle SIGXFSZ; a file-size limit would kill the process");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            got = xfsz.recv() => match got {
                Some(()) => error!("a write went past the file-size limit (SIGXFSZ); it fails with EFBIG"),
                None => break,
            },
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let signal = tokio::select! {
        _ = ctrl_c => "SIGINT",
        _ = term => "SIGTERM",
    };
    // Cancel before logging: nothing that can fail (a log write) comes between the signal and
    // the start of the shutdown.
    shutdown.cancel();
    info!(signal, "signal received");
}
