//! `GET /api/backup`: a consistent copy of the whole store (relay rooms and bridge calls) as a
//! redb file, taken while the server runs and writes. Glue between the two crates that own the
//! tables of the shared database: one read transaction is one committed state of both, each
//! crate copies its own tables, and a table neither of them claims fails the backup instead of
//! leaving it silently incomplete. Copying `weaver.redb` itself is safe only while the server
//! is stopped (redb rewrites pages a file copy may be reading). `weaver backup` is the client
//! side: it fetches the copy, checks it with redb's integrity check and only then puts it in
//! place. In cluster mode the rooms live in JetStream: the file is built from the cluster's
//! rooms instead (`cluster_backup.rs`), in the same format.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use redb::{Database, MultimapTableHandle, ReadableDatabase, TableHandle};
use tokio::sync::Semaphore;
use tracing::{error, info, warn};

/// Page cache of the database being written: the copy streams through it once.
const BACKUP_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// What a backup copies.
#[derive(Clone)]
pub enum Source {
    /// The node's own store: every table of one read snapshot (single-node mode).
    Local(Arc<Database>),
    /// The cluster's data, part by part (cluster mode).
    Cluster(Arc<[Arc<dyn crate::cluster_backup::BackupPart>]>),
}

#[derive(Clone)]
struct BackupState {
    source: Source,
    /// The temporary copy is written here: the same filesystem as the store, which is where
    /// an operator has provisioned room for the data.
    dir: PathBuf,
    /// One backup at a time: each holds a read snapshot (pinning old pages) and a copy on disk.
    running: Arc<Semaphore>,
}

/// The backup route; the caller puts it behind the admin-token check.
pub fn router(source: Source, dir: PathBuf) -> Router {
    Router::new()
        .route("/api/backup", get(get_backup))
        .with_state(BackupState {
            source,
            dir,
            running: Arc::new(Semaphore::new(1)),
        })
}

async fn get_backup(State(st): State<BackupState>) -> Response {
    let Ok(permit) = st.running.clone().try_acquire_owned() else {
        warn!("backup refused: another backup is running");
        metrics::counter!("weaver_backups_total", "outcome" => "busy").increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(serde_error("a backup is already running; try again")),
        )
            .into_response();
    };
    let started = Instant::now();
    let dir = st.dir.clone();
    let written = match &st.source {
        Source::Local(db) => {
            let db = db.clone();
            tokio::task::spawn_blocking(move || write_backup(&db, &dir))
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("backup task failed: {e}")))
        }
        Source::Cluster(parts) => crate::cluster_backup::write_backup(parts, &dir).await,
    };
    let (file, tables, bytes) = match written {
        Ok(v) => v,
        Err(e) => {
            error!(error = format!("{e:#}"), "backup failed");
            metrics::counter!("weaver_backups_total", "outcome" => "error").increment(1);
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_error(&format!("backup failed: {e:#}"))),
            )
                .into_response();
        }
    };
    info!(
        tables,
        bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "backup written; streaming it"
    );
    metrics::counter!("weaver_backups_total", "outcome" => "ok").increment(1);
    // The permit travels with the body: the next backup starts once this one is sent or the
    // client went away.
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 64 * 1024);
    let body = Body::from_stream(futures_util::StreamExt::map(stream, move |chunk| {
        let _held = &permit;
        chunk
    }));
    let name = format!("weaver-backup-{}.redb", weaver_bridge::now_ms() / 1000);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn serde_error(msg: &str) -> std::collections::BTreeMap<&'static str, String> {
    std::collections::BTreeMap::from([("error", msg.to_string())])
}

/// Writes a copy of every table of `db` as of one read transaction into an anonymous file in
/// `dir` and returns it (positioned at 0), with the number of tables and bytes. The file has
/// no name, so nothing is left behind if the copy fails, the client leaves or the process dies.
fn write_backup(db: &Database, dir: &Path) -> anyhow::Result<(std::fs::File, usize, u64)> {
    let file = tempfile::tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    // redb takes the file; this second handle reads it back once the copy is closed.
    let reader = file
        .try_clone()
        .context("duplicating the backup file handle")?;
    let src = db.begin_read().context("opening a read snapshot")?;
    let out = Database::builder()
        .set_cache_size(BACKUP_CACHE_BYTES)
        .create_with_backend(redb::backends::FileBackend::new(file))
        .context("creating the backup database")?;
    let txn = out.begin_write().context("writing the backup")?;
    let mut copied = weaver_relay::copy_tables(&src, &txn)?;
    copied.extend(weaver_bridge::outbox::copy_tables(&src, &txn)?);
    copied.extend(weaver_notify::copy_tables(&src, &txn)?);
    let mut unknown = Vec::new();
    for t in src.list_tables().context("listing tables")? {
        if !copied.iter().any(|c| c == t.name()) {
            unknown.push(t.name().to_owned());
        }
    }
    for t in src
        .list_multimap_tables()
        .context("listing multimap tables")?
    {
        unknown.push(t.name().to_owned());
    }
    if !unknown.is_empty() {
        anyhow::bail!(
            "the store has tables this backup does not know ({}); refusing an incomplete backup",
            unknown.join(", ")
        );
    }
    txn.commit().context("committing the backup")?;
    drop(src);
    drop(out);
    let bytes = reader.metadata().context("sizing the backup")?.len();
    Ok((reader, copied.len(), bytes))
}

/// `weaver backup`: saves a running server's `GET /api/backup` into a file, verified.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Base URL of the running server.
    #[arg(long, env = "WEAVER_URL", default_value = "http://127.0.0.1:1234")]
    pub server: String,
    /// File to write (replaced only once the new copy is complete and verified).
    #[arg(long)]
    pub out: PathBuf,
    /// An admin token for every room (`weaver token --admin`), needed when the server has an
    /// auth key.
    #[arg(long, env = "WEAVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Runs `weaver backup`: prints what was saved, or the reason on stderr and fails.
pub fn run_cli(args: &BackupArgs) -> std::process::ExitCode {
    crate::run_client("weaver backup", fetch(args), |(bytes, tables)| {
        println!(
            "backup of {} saved to {}: {bytes} bytes, {tables} tables, integrity verified",
            args.server,
            args.out.display()
        );
    })
}

async fn fetch(args: &BackupArgs) -> anyhow::Result<(u64, usize)> {
    let url = format!("{}/api/backup", args.server.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let mut req = client.get(&url);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let mut res = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = res.status();
    if !status.is_success() {
        let body = res.text().await.unwrap_or_default();
        anyhow::bail!("GET {url}: {status}: {}", body.trim());
    }
    let expected = res.content_length();
    let dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".weaver-backup-")
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut got: u64 = 0;
    while let Some(chunk) = res
        .chunk()
        .await
        .with_context(|| format!("reading the backup from {url}"))?
    {
        std::io::Write::write_all(tmp.as_file_mut(), &chunk)
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        got += chunk.len() as u64;
    }
    if let Some(expected) = expected
        && expected != got
    {
        anyhow::bail!("the server sent {got} of {expected} bytes; nothing was written");
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", tmp.path().display()))?;
    let tables = verify(tmp.path())?;
    tmp.persist(&args.out)
        .with_context(|| format!("moving the backup to {}", args.out.display()))?;
    // The rename is durable once the directory is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok((got, tables))
}

/// Opens a backup file with every checksum checked (a plain open trusts the file) and counts
/// its tables.
fn verify(path: &Path) -> anyhow::Result<usize> {
    let db = Database::builder()
        .set_check_integrity_on_open(true)
        .open(path)
        .with_context(|| format!("{} is not a valid database", path.display()))?;
    let tables = db
        .begin_read()
        .context("reading the backup")?
        .list_tables()
        .context("listing the backup's tables")?
        .count();
    Ok(tables)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use redb::TableDefinition;
    use std::io::{Read, Seek, Write};

    const EXTRA: TableDefinition<&str, u64> = TableDefinition::new("someone_elses_table");

    fn restore(mut file: std::fs::File) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = Vec::new();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        let path = dir.path().join(weaver_relay::DB_FILE_NAME);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let db = Database::open(&path).unwrap();
        (dir, db)
    }

    #[test]
    fn a_table_no_crate_claims_fails_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let db = weaver_relay::open_database(dir.path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(EXTRA).unwrap().insert("k", 1).unwrap();
        txn.commit().unwrap();
        let err = write_backup(&db, dir.path()).unwrap_err().to_string();
        assert!(err.contains("someone_elses_table"), "{err}");
        // Nothing is left in the data directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![weaver_relay::DB_FILE_NAME]);
    }

    #[tokio::test]
    async fn a_second_backup_while_one_runs_is_refused_with_503() {
        let dir = tempfile::tempdir().unwrap();
        let st = BackupState {
            source: Source::Local(weaver_relay::open_database(dir.path()).unwrap()),
            dir: dir.path().to_path_buf(),
            running: Arc::new(Semaphore::new(1)),
        };
        let held = st.running.clone().try_acquire_owned().unwrap();
        let busy = get_backup(State(st.clone())).await;
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "5");
        drop(held);
        assert_eq!(get_backup(State(st)).await.status(), StatusCode::OK);
    }

    #[test]
    fn verify_refuses_a_damaged_copy_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(EXTRA).unwrap();
                for i in 0..20_000u64 {
                    t.insert(format!("key-{i:08}").as_str(), i).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        assert_eq!(verify(&path).unwrap(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        let (len, full) = (bytes.len(), bytes.clone());
        for b in &mut bytes[len / 2..len / 2 + 4096] {
            *b = !*b;
        }
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify(&path).is_err(), "a flipped page must not verify");
        std::fs::write(&path, &full[..len / 3]).unwrap();
        assert!(verify(&path).is_err(), "a short file must not verify");
    }

    #[test]
    fn a_backup_of_an_empty_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let db = weaver_relay::open_database(dir.path()).unwrap();
        let (file, tables, bytes) = write_backup(&db, dir.path()).unwrap();
        assert_eq!(tables, 0);
        assert!(bytes > 0);
        let (_d, restored) = restore(file);
        assert_eq!(
            restored
                .begin_read()
                .unwrap()
                .list_tables()
                .unwrap()
                .count(),
            0
        );
    }
}
