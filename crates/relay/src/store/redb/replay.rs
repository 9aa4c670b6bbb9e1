//! Recovery at open and the checkpoint record: the journal generation whose frames are all in
//! redb durably is kept in `relay_meta` (`journal` → `id (u64 LE) ++ done (u64 LE)`). At open the
//! frames of a newer generation of the same database are applied to redb (idempotent: rows are
//! keyed by room and seq) in one durable commit, a damaged tail is cut, and the journal starts
//! over with the next generation.

use std::path::Path;

use redb::{Database, ReadableTable, WriteTransaction};
use tracing::{info, warn};

use super::format::{FORMAT_V1, META, ROOMS, UPDATES};
use super::journal::{Decoded, Header, Journal, decode_frames, decode_header};
use super::open::{OpenError, redb_err};
use super::persister::CommitMode;

const JOURNAL_KEY: &str = "journal";

/// The journal record of the database: its id and the last generation checkpointed.
pub(super) fn read_record(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Header>, redb::StorageError> {
    Ok(meta.get(JOURNAL_KEY)?.and_then(|v| {
        let v = v.value();
        let id = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
        let generation = u64::from_le_bytes(v.get(8..16)?.try_into().ok()?);
        Some(Header { id, generation })
    }))
}

/// Records in `txn` that every frame of `done`'s generation is in redb (the checkpoint).
pub(super) fn write_record(txn: &WriteTransaction, done: Header) -> Result<(), redb::Error> {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&done.id.to_le_bytes());
    v[8..].copy_from_slice(&done.generation.to_le_bytes());
    txn.open_table(META)?.insert(JOURNAL_KEY, v.as_slice())?;
    Ok(())
}

/// A database id nobody else has: only needs to differ from the id in a journal file left
/// next to another database.
fn fresh_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Replays `journal_path` into `db` and returns the journal, emptied, for the persister.
pub(super) fn recover(
    db: &Database,
    journal_path: &Path,
    commit: CommitMode,
) -> Result<Journal, OpenError> {
    let record = {
        let txn = redb::ReadableDatabase::begin_read(db).map_err(redb_err)?;
        let meta = txn.open_table(META).map_err(redb_err)?;
        read_record(&meta).map_err(redb_err)?
    };
    let journal_err = |error| OpenError::Journal {
        path: journal_path.display().to_string(),
        error,
    };
    let file = match std::fs::read(journal_path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(journal_err(e)),
    };
    let header = file.as_deref().and_then(decode_header);
    let path = journal_path.display().to_string();
    let mut done = record.unwrap_or(Header {
        id: fresh_id(),
        generation: 0,
    });
    let mut replay = None;
    match (header, record) {
        (Some(h), Some(r)) if h.id == r.id && h.generation > r.generation => {
            replay = file.as_deref().map(|f| (h, decode_frames(f)));
        }
        (Some(h), Some(r)) if h.id == r.id => {}
        (Some(h), _) => warn!(
            journal = %path,
            journal_id = h.id,
            "the journal belongs to another database (restored or replaced file); not replayed"
        ),
        (None, _)
            if file
                .as_ref()
                .is_some_and(|f| f.len() >= super::journal::HEADER_LEN) =>
        {
            warn!(journal = %path, "the journal has no valid header; not replayed")
        }
        (None, _) => {}
    }
    let mut txn = db.begin_write().map_err(redb_err)?;
    txn.set_two_phase_commit(commit == CommitMode::TwoPhase);
    txn.set_durability(redb::Durability::Immediate)
        .map_err(redb_err)?;
    if let Some((h, decoded)) = replay {
        apply(&txn, &decoded).map_err(redb_err)?;
        let rows: usize = decoded.frames.iter().map(Vec::len).sum();
        if let Some(cut) = &decoded.cut {
            warn!(
                journal = %path,
                offset = cut.offset,
                reason = cut.reason,
                "journal tail cut: what follows was never acknowledged"
            );
        }
        info!(
            generation = h.generation,
            frames = decoded.frames.len(),
            rows,
            "journal replayed"
        );
        done.generation = h.generation;
    }
    write_record(&txn, done).map_err(redb_err)?;
    txn.commit().map_err(redb_err)?;
    Journal::create(
        journal_path,
        Header {
            id: done.id,
            generation: done.generation + 1,
        },
    )
    .map_err(journal_err)
}

/// Writes the journal's rows into redb as the persister would have: each log row, and the
/// room's `relay_rooms` row when the room has none yet.
fn apply(txn: &WriteTransaction, decoded: &Decoded) -> Result<(), redb::Error> {
    let mut log = txn.open_table(UPDATES)?;
    let mut rooms = txn.open_table(ROOMS)?;
    let mut row = Vec::new();
    for r in decoded.frames.iter().flatten() {
        row.clear();
        row.push(FORMAT_V1);
        row.extend_from_slice(&r.update);
        log.insert((r.room.as_str(), r.seq), row.as_slice())?;
        if rooms.get(r.room.as_str())?.is_none() {
            rooms.insert(r.room.as_str(), r.seq)?;
        }
    }
    Ok(())
}
