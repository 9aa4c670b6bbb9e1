//! `weaver restore --cluster nats://… FILE`: loads every room (with its versions) of a backup
//! file into a cluster's JetStream. The file is a redb file in the single-node format: a
//! cluster's `weaver backup`, a single node's, or a stopped node's `weaver.redb` (the way to
//! move a single node into a cluster).
//!
//! Order, so that a bad file or an occupied cluster writes nothing: the whole file is read and
//! checked first (redb's checksums, the storage format, every room and version row decoded);
//! then a cluster with live nodes (heartbeats in `weaver_nodes` younger than `--lease-ttl-ms`)
//! is refused unless `--force`: a node may create a room while its backup is being written in;
//! then the cluster is asked which of the file's rooms it holds anything of, and those are
//! refused (listed, non-zero exit) unless `--skip-existing`; only then are rooms written, one
//! at a time, each all or nothing (`weaver_cluster::RoomTransfer::import`). A restore cut off
//! midway (NATS gone) is resumed with `--skip-existing`: rooms already written are left alone.
//! The bridge's tables (calls, events, queues) go into the cluster's outbox on JetStream as its
//! first snapshot, after the rooms; a cluster whose outbox stream holds anything is refused
//! like an occupied room (left alone with `--skip-existing`). The notifier's state is not
//! restored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use redb::{Database, ReadableDatabase};
use weaver_cluster::{NodeDirectory, RegistryConfig, RoomCopy, RoomLogConfig, RoomTransfer};
use weaver_cluster_outbox::{OutboxConfig, image_of_backup, outbox_messages, restore_image};
use weaver_relay::store::redb::transfer;

/// Rooms named in the refusal message; the rest are counted.
const NAMES_SHOWN: usize = 20;

/// `weaver restore` flags.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// NATS URL of the cluster to restore into (`nats://HOST:PORT`).
    #[arg(long, env = "WEAVER_CLUSTER", value_name = "NATS_URL")]
    pub cluster: String,
    /// Replicas of the room streams and the version bucket if the restore creates them (a
    /// new cluster: use what its nodes will use, 3 in production).
    #[arg(long, env = "WEAVER_CLUSTER_REPLICAS", default_value_t = 1)]
    pub cluster_replicas: usize,
    /// Leave rooms the cluster already holds anything of alone instead of refusing the
    /// restore (to resume a restore that was cut off).
    #[arg(long)]
    pub skip_existing: bool,
    /// Restore even though nodes of the cluster are alive (they may write the rooms being
    /// restored; the restore still never writes over a room or a versions index it finds).
    #[arg(long)]
    pub force: bool,
    /// How long the cluster's nodes count as alive after their last heartbeat: the value the
    /// nodes run with.
    #[arg(long, env = "WEAVER_LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// The backup file (`weaver backup --out`, or a stopped node's `weaver.redb`).
    pub file: PathBuf,
}

/// A backup file checked: its database, its rooms' names, its bridge tables as an outbox image.
type Checked = (Arc<Database>, Vec<String>, Option<Vec<u8>>);

/// What a restore did.
struct Restored {
    rooms: usize,
    versions: usize,
    skipped: Vec<String>,
    /// The bridge's outbox: restored, left alone (the cluster has one), or none in the file.
    outbox: &'static str,
}

/// Runs `weaver restore`: prints what was restored, or the reason on stderr and fails.
pub fn run_cli(args: &RestoreArgs) -> std::process::ExitCode {
    crate::run_client("weaver restore", restore(args), |r| {
        println!(
            "restored {} rooms ({} versions) from {} into {}",
            r.rooms,
            r.versions,
            args.file.display(),
            args.cluster
        );
        println!("bridge outbox: {}", r.outbox);
        if !r.skipped.is_empty() {
            println!(
                "skipped {} rooms the cluster already has: {}",
                r.skipped.len(),
                shown(&r.skipped)
            );
        }
    })
}

async fn restore(args: &RestoreArgs) -> anyhow::Result<Restored> {
    if !(1..=5).contains(&args.cluster_replicas) {
        bail!(
            "--cluster-replicas must be between 1 and 5, got {}",
            args.cluster_replicas
        );
    }
    let path = args.file.clone();
    let (db, names, outbox) = tokio::task::spawn_blocking(move || check_file(&path))
        .await
        .context("reading the backup")??;
    let client = weaver_cluster::connect(&args.cluster, "weaver-restore")
        .await
        .context("connecting to the cluster")?;
    if !args.force {
        refuse_live_nodes(&client, Duration::from_millis(args.lease_ttl_ms)).await?;
    }
    let outbox_cfg = OutboxConfig {
        replicas: args.cluster_replicas,
        ..OutboxConfig::default()
    };
    let outbox_taken = match &outbox {
        None => false,
        Some(_) => {
            outbox_messages(&client, &outbox_cfg)
                .await
                .context("reading the cluster's outbox")?
                > 0
        }
    };
    let target = RoomTransfer::open(
        client.clone(),
        RoomLogConfig {
            replicas: args.cluster_replicas,
            ..RoomLogConfig::default()
        },
    )
    .await
    .context("opening the cluster's room streams")?;
    let result = write_rooms(&target, db, names, args.skip_existing, outbox_taken).await;
    target.stop().await;
    let mut restored = result?;
    restored.outbox = match outbox {
        None => "none in the backup",
        Some(_) if outbox_taken => "left alone (the cluster has one)",
        Some(image) => {
            restore_image(&client, &outbox_cfg, image)
                .await
                .context("restoring the bridge outbox (the rooms were restored)")?;
            "restored"
        }
    };
    Ok(restored)
}

/// Fails when the cluster has live nodes: the restore is for a cluster that is not running.
async fn refuse_live_nodes(
    client: &weaver_cluster::NatsClient,
    ttl: Duration,
) -> anyhow::Result<()> {
    let js = weaver_cluster::jetstream(client.clone(), RoomLogConfig::default().request_timeout);
    let cfg = RegistryConfig {
        ttl,
        ..RegistryConfig::default()
    };
    let Some(directory) = NodeDirectory::open(&js, &cfg)
        .await
        .context("reading the cluster's node registry")?
    else {
        return Ok(());
    };
    let live: Vec<String> = directory
        .nodes()
        .await
        .context("reading the cluster's node registry")?
        .into_iter()
        .filter(|n| n.alive)
        .map(|n| format!("{} ({})", n.node_id, n.url))
        .collect();
    if !live.is_empty() {
        bail!(
            "the cluster has {} live nodes, nothing was restored: {}; stop them first (a \
             running node may create the rooms being restored), or pass --force",
            live.len(),
            shown(&live)
        );
    }
    Ok(())
}

/// Opens the file with every checksum verified and reads every room once, so a damaged or
/// foreign file is refused before anything is written. Returns the rooms' names and the
/// bridge's tables as an outbox image (if the file has them).
fn check_file(path: &std::path::Path) -> anyhow::Result<Checked> {
    let db = Database::builder()
        .set_check_integrity_on_open(true)
        .open(path)
        .with_context(|| format!("{} is not a valid database", path.display()))?;
    let txn = db.begin_read().context("reading the backup")?;
    transfer::check_format(&txn).with_context(|| format!("{}", path.display()))?;
    let names = transfer::room_names(&txn).context("listing the backup's rooms")?;
    for name in &names {
        read_copy(&txn, name)?;
    }
    let outbox = image_of_backup(&txn).context("reading the backup's bridge tables")?;
    drop(txn);
    Ok((Arc::new(db), names, outbox))
}

/// One room of the file with its versions (their data included).
fn read_copy(txn: &redb::ReadTransaction, room: &str) -> anyhow::Result<RoomCopy> {
    let stored =
        transfer::read_room(txn, room).with_context(|| format!("reading room {room:?}"))?;
    let mut versions = Vec::new();
    for meta in
        transfer::read_versions(txn, room).with_context(|| format!("reading room {room:?}"))?
    {
        let data = transfer::read_version_data(txn, room, meta.id)
            .with_context(|| format!("reading room {room:?}"))?;
        versions.push((meta, data));
    }
    Ok(RoomCopy { stored, versions })
}

async fn write_rooms(
    target: &RoomTransfer,
    db: Arc<Database>,
    names: Vec<String>,
    skip_existing: bool,
    outbox_taken: bool,
) -> anyhow::Result<Restored> {
    let occupied = target
        .occupied(&names)
        .await
        .context("asking the cluster which rooms it has")?;
    let outbox_note = if outbox_taken {
        "; its bridge outbox is not empty either"
    } else {
        ""
    };
    if !occupied.is_empty() && !skip_existing {
        bail!(
            "the cluster already has {} of the backup's {} rooms, nothing was restored \
             (--skip-existing restores only the others){outbox_note}: {}",
            occupied.len(),
            names.len(),
            shown(&occupied)
        );
    }
    if outbox_taken && !skip_existing {
        bail!(
            "the cluster's bridge outbox is not empty, nothing was restored (--skip-existing \
             restores the rooms and leaves the outbox alone)"
        );
    }
    let mut restored = Restored {
        rooms: 0,
        versions: 0,
        skipped: occupied,
        outbox: "",
    };
    let skip: std::collections::HashSet<String> = restored.skipped.iter().cloned().collect();
    for name in names {
        if skip.contains(&name) {
            continue;
        }
        let (db, room) = (db.clone(), name.clone());
        let copy = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().context("reading the backup")?;
            read_copy(&txn, &room)
        })
        .await
        .context("reading the backup")??;
        let versions = copy.versions.len();
        target.import(&name, copy).await.with_context(|| {
            format!(
                "restoring room {name:?} ({} rooms were restored before it; run again with \
                 --skip-existing to resume)",
                restored.rooms
            )
        })?;
        restored.rooms += 1;
        restored.versions += versions;
    }
    Ok(restored)
}

fn shown(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMES_SHOWN {
        s.push_str(&format!(" and {} more", names.len() - NAMES_SHOWN));
    }
    s
}
