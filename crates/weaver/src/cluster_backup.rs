//! `GET /api/backup` in cluster mode: a redb file in exactly the single-node format, built from
//! what the cluster stores, so `weaver serve --data DIR` starts from it unchanged and `weaver
//! restore --cluster` loads it into a new cluster.
//!
//! A backup is a list of parts ([`BackupPart`]), each reading its data from the cluster and
//! writing its own tables through [`BackupWriter::write`] (one closure over a redb
//! `WriteTransaction`, run on the blocking pool, never across network I/O). The parts: the
//! rooms ([`RoomsPart`]: `relay_*` tables, storage format, versions) and the bridge's outbox
//! ([`OutboxPart`]: the `bridge_*` tables, as of one moment of the outbox log).
//!
//! Bounded memory: the rooms part reads `ROOMS_READ_AT_ONCE` rooms (with their versions) at a
//! time and writes them one by one (a room per transaction: measured, batching them into fewer
//! commits gained nothing; the reads from JetStream are what a backup waits on). Consistent per
//! room, not cluster-wide: each room is copied as of one moment (`weaver_cluster::RoomTransfer`).

use std::sync::Arc;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use redb::{Database, WriteTransaction};
use tracing::{debug, info};
use weaver_cluster::RoomTransfer;
use weaver_cluster_outbox::OutboxConfig;

/// Rooms read from JetStream at once: what bounds a backup's memory (with their versions).
const ROOMS_READ_AT_ONCE: usize = 8;

/// Page cache of the database being written.
const BACKUP_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Every part of a cluster backup, in the order they are written: the rooms, then (given
/// the NATS connection and where it lives) the bridge's outbox.
pub fn parts(
    transfer: Arc<RoomTransfer>,
    outbox: Option<(weaver_cluster::NatsClient, OutboxConfig)>,
) -> Arc<[Arc<dyn BackupPart>]> {
    let mut parts = vec![Arc::new(RoomsPart { transfer }) as Arc<dyn BackupPart>];
    if let Some((client, cfg)) = outbox {
        parts.push(Arc::new(OutboxPart { client, cfg }));
    }
    Arc::from(parts)
}

/// The bridge's outbox: its log replayed into a replica of the backup's own (the running
/// leader is not disturbed), whose tables are copied as a single node's backup copies them.
pub struct OutboxPart {
    pub client: weaver_cluster::NatsClient,
    pub cfg: OutboxConfig,
}

impl BackupPart for OutboxPart {
    fn write<'a>(&'a self, out: &'a BackupWriter) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let replica = weaver_cluster_outbox::read_outbox(
                &self.client,
                &self.cfg,
                weaver_bridge::config::RetryPolicy::default(),
            )
            .await
            .context("reading the cluster's outbox")?;
            let tables = out
                .write(move |txn| {
                    let read = replica.begin_read()?;
                    Ok(weaver_bridge::outbox::copy_tables(&read, txn)?)
                })
                .await?;
            info!(tables = tables.len(), "the cluster's outbox copied");
            Ok(tables)
        })
    }
}

/// One part of a cluster backup.
pub trait BackupPart: Send + Sync {
    /// Reads the part's data from the cluster and writes it through `out`, a piece at a time.
    /// Returns the names of the tables written.
    fn write<'a>(&'a self, out: &'a BackupWriter) -> BoxFuture<'a, anyhow::Result<Vec<String>>>;
}

/// The backup database being written: each [`BackupWriter::write`] is one write transaction on
/// the blocking pool. Commits are not fsynced one by one; [`BackupWriter::finish`] makes the
/// whole file durable once.
pub struct BackupWriter {
    db: Arc<Database>,
}

impl BackupWriter {
    /// Runs `f` in one write transaction of the backup database and commits it.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write().context("writing the backup")?;
            txn.set_durability(redb::Durability::None)
                .context("writing the backup")?;
            let out = f(&txn)?;
            txn.commit().context("committing to the backup")?;
            Ok(out)
        })
        .await
        .context("backup write task")?
    }

    /// One durable commit that persists every commit before it.
    async fn finish(self) -> anyhow::Result<()> {
        let db = self.db;
        tokio::task::spawn_blocking(move || {
            db.begin_write()
                .context("finishing the backup")?
                .commit()
                .context("finishing the backup")
        })
        .await
        .context("backup write task")?
    }
}

/// Writes every part into an anonymous file in `dir` and returns it (positioned at 0) with the
/// number of tables and bytes. The file has no name, so nothing is left behind when the copy
/// fails, the client leaves or the process dies.
pub async fn write_backup(
    parts: &[Arc<dyn BackupPart>],
    dir: &std::path::Path,
) -> anyhow::Result<(std::fs::File, usize, u64)> {
    let dir = dir.to_path_buf();
    let (db, reader) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let file = tempfile::tempfile_in(&dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        // redb takes the file; this second handle reads it back once the copy is closed.
        let reader = file
            .try_clone()
            .context("duplicating the backup file handle")?;
        let db = Database::builder()
            .set_cache_size(BACKUP_CACHE_BYTES)
            .create_with_backend(redb::backends::FileBackend::new(file))
            .context("creating the backup database")?;
        Ok((Arc::new(db), reader))
    })
    .await
    .context("backup task")??;
    let out = BackupWriter { db };
    let mut tables = Vec::new();
    for part in parts {
        tables.extend(part.write(&out).await?);
    }
    out.finish().await?;
    let bytes = reader.metadata().context("sizing the backup")?.len();
    Ok((reader, tables.len(), bytes))
}

/// The rooms of the cluster, with their versions: the `relay_*` tables of a single node.
pub struct RoomsPart {
    pub transfer: Arc<RoomTransfer>,
}

impl BackupPart for RoomsPart {
    fn write<'a>(&'a self, out: &'a BackupWriter) -> BoxFuture<'a, anyhow::Result<Vec<String>>> {
        Box::pin(async move {
            let tables = out
                .write(|txn| Ok(weaver_relay::store::redb::transfer::init_tables(txn)?))
                .await?;
            let started = std::time::Instant::now();
            let names = self
                .transfer
                .rooms()
                .await
                .context("listing the cluster's rooms")?;
            let listed_ms = started.elapsed().as_millis() as u64;
            let transfer = &self.transfer;
            // A few rooms are read at once (each read is a few JetStream round trips), and
            // written one at a time, in name order.
            let mut reads = futures_util::stream::iter(names)
                .map(|name| async move {
                    let copy = transfer
                        .read(&name)
                        .await
                        .with_context(|| format!("reading room {name:?}"));
                    (name, copy)
                })
                .buffered(ROOMS_READ_AT_ONCE);
            let mut copied = 0usize;
            while let Some((name, copy)) = reads.next().await {
                // `None`: deleted since the listing.
                let Some(copy) = copy? else { continue };
                out.write(move |txn| {
                    use weaver_relay::store::redb::transfer::{write_room, write_version};
                    write_room(txn, &name, &copy.stored)?;
                    for (meta, data) in &copy.versions {
                        write_version(txn, &name, meta, data)?;
                    }
                    debug!(room = %name, versions = copy.versions.len(), "room copied");
                    Ok(())
                })
                .await?;
                copied += 1;
            }
            info!(
                rooms = copied,
                listed_ms,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "every room of the cluster copied"
            );
            Ok(tables)
        })
    }
}
