//! The journal's guarantees: a damaged or torn tail replays as a prefix of the groups (never an
//! error that stops the store, never a panic, never a frame whose checksum fails), a crash
//! between checkpoints loses no acknowledged append, and a data directory without a journal (or
//! with another database's) opens as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use super::journal::{
    Decoded, HEADER_LEN, Header, JOURNAL_FILE_NAME, JournalRow, decode_frames, decode_header,
    encode_frame, encode_header,
};
use super::test_support::b;
use super::{CommitMode, RedbRoomStore, open_database};
use crate::store::RoomStore;

/// Four groups of rows, each encoded as one frame after a header; returns the file and the
/// byte offset where each frame ends.
fn journal_of(groups: &[Vec<JournalRow>]) -> (Vec<u8>, Vec<usize>) {
    let mut file = encode_header(Header {
        id: 7,
        generation: 3,
    })
    .to_vec();
    let mut ends = Vec::new();
    for g in groups {
        encode_frame(
            g.iter()
                .map(|r| (r.room.as_str(), r.seq, r.update.as_slice())),
            &mut file,
        );
        ends.push(file.len());
    }
    (file, ends)
}

fn row(room: &str, seq: u64, update: &[u8]) -> JournalRow {
    JournalRow {
        room: room.into(),
        seq,
        update: update.to_vec(),
    }
}

fn groups() -> Vec<Vec<JournalRow>> {
    vec![
        vec![row("a", 1, b"one"), row("b", 1, b"")],
        vec![row("a", 2, b"two")],
        vec![row("room-é", 9, &[0xff; 40]), row("a", 3, b"x")],
        vec![row("c", 1, b"last")],
    ]
}

fn assert_prefix(decoded: &Decoded, groups: &[Vec<JournalRow>], at_most: usize, what: &str) {
    let n = decoded.frames.len();
    assert!(
        n <= at_most,
        "{what}: {n} frames, at most {at_most} expected"
    );
    assert_eq!(decoded.frames, groups[..n], "{what}: not a prefix");
}

#[test]
fn frames_round_trip_and_the_header_names_the_database() {
    let groups = groups();
    let (file, _) = journal_of(&groups);
    assert_eq!(
        decode_header(&file),
        Some(Header {
            id: 7,
            generation: 3
        })
    );
    let decoded = decode_frames(&file);
    assert_eq!(decoded.frames, groups);
    assert_eq!(decoded.cut, None);
    assert_eq!(decode_header(&file[..HEADER_LEN - 1]), None);
    assert_eq!(decode_header(b"not a journal at all, really"), None);
}

/// Cut at every byte: the whole frames before the cut replay, the torn one never does, and the
/// cut is reported at the torn frame's offset.
#[test]
fn a_journal_cut_at_any_byte_replays_the_whole_frames_before_the_cut() {
    let groups = groups();
    let (file, ends) = journal_of(&groups);
    for len in 0..=file.len() {
        let decoded = decode_frames(&file[..len]);
        let whole = ends.iter().filter(|&&e| e <= len).count();
        assert_prefix(&decoded, &groups, whole, &format!("cut at {len}"));
        assert_eq!(decoded.frames.len(), whole, "cut at {len}");
        let boundary = len <= HEADER_LEN || ends.contains(&len);
        assert_eq!(decoded.cut.is_none(), boundary, "cut at {len}");
        if let Some(cut) = decoded.cut {
            assert_eq!(
                cut.offset,
                ends[..whole].last().copied().unwrap_or(HEADER_LEN)
            );
        }
    }
}

/// Every byte of the last two frames flipped (each in four ways): the frames before the damaged
/// one replay, the damaged one and everything after it never do.
#[test]
fn a_flipped_byte_in_the_last_frames_never_replays_the_damaged_frame() {
    let groups = groups();
    let (file, ends) = journal_of(&groups);
    let from = ends[1];
    for at in from..file.len() {
        let frame = ends.iter().position(|&e| at < e).unwrap();
        for mask in [0x01u8, 0x80, 0xff, 0x5a] {
            let mut damaged = file.clone();
            damaged[at] ^= mask;
            let decoded = decode_frames(&damaged);
            assert_prefix(&decoded, &groups, frame, &format!("byte {at} ^ {mask:#x}"));
            assert!(
                decoded.cut.is_some(),
                "byte {at} ^ {mask:#x}: damage not reported"
            );
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..600 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = decode_frames(&bytes);
        let _ = decode_header(&bytes);
    }
    // A frame whose declared length is huge must not be trusted or allocated.
    let mut file = encode_header(Header {
        id: 1,
        generation: 1,
    })
    .to_vec();
    file.extend_from_slice(&u32::MAX.to_le_bytes());
    file.extend_from_slice(&[0; 16]);
    assert!(decode_frames(&file).frames.is_empty());
}

fn journaled(dir: &Path) -> Arc<RedbRoomStore> {
    RedbRoomStore::start_journaled(open_database(dir).unwrap(), CommitMode::OnePhase, dir).unwrap()
}

/// What a `kill -9` leaves once every acknowledged write returned: the files as they are on
/// disk now, copied while the persister is idle (the redb file at its last durable commit plus
/// whatever non-durable pages reached the page cache, the journal up to its last fsync).
fn crash_copy(from: &Path, to: &Path) {
    for name in [super::DB_FILE_NAME, JOURNAL_FILE_NAME] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

fn tail(loaded: &crate::store::StoredRoom) -> Vec<(u64, Vec<u8>)> {
    loaded.tail.clone()
}

/// Appends acknowledged between checkpoints survive a crash image of the data directory; the
/// image replays into redb at start and the seqs continue.
#[tokio::test]
async fn acknowledged_appends_survive_a_crash_between_checkpoints() {
    let live = tempfile::tempdir().unwrap();
    let store = journaled(live.path());
    let r: Arc<str> = Arc::from("j");
    for i in 1..=20u64 {
        assert_eq!(
            store
                .append(r.clone(), vec![b(&format!("u{i}"))])
                .await
                .unwrap(),
            i
        );
    }
    store.append(Arc::from("k"), vec![b("k1")]).await.unwrap();
    let journal_len = std::fs::metadata(live.path().join(JOURNAL_FILE_NAME))
        .unwrap()
        .len();
    assert!(
        journal_len > HEADER_LEN as u64,
        "appends went through the journal"
    );
    let image = tempfile::tempdir().unwrap();
    crash_copy(live.path(), image.path());
    store.stop().await;

    let recovered = journaled(image.path());
    let loaded = recovered.load(r.clone()).await.unwrap();
    let want: Vec<(u64, Vec<u8>)> = (1..=20u64)
        .map(|i| (i, format!("u{i}").into_bytes()))
        .collect();
    assert_eq!(tail(&loaded), want);
    assert_eq!(
        recovered.append(r.clone(), vec![b("u21")]).await.unwrap(),
        21
    );
    let mut rooms = recovered.rooms().await.unwrap();
    rooms.sort();
    assert_eq!(rooms, vec!["j".to_string(), "k".to_string()]);
    // Replayed and checkpointed: the journal starts over, and a second start replays nothing.
    recovered.stop().await;
    drop(recovered);
    let again = journaled(image.path());
    assert_eq!(again.load(r).await.unwrap().tail.len(), 21);
}

/// A torn last frame (the crash hit mid-append, before the fsync returned, so it was never
/// acknowledged) is cut; the rest replays and the store takes writes.
#[tokio::test]
async fn a_torn_journal_tail_is_cut_and_the_store_opens() {
    let live = tempfile::tempdir().unwrap();
    let store = journaled(live.path());
    let r: Arc<str> = Arc::from("t");
    for i in 1..=5u64 {
        store
            .append(r.clone(), vec![b(&format!("{i}"))])
            .await
            .unwrap();
    }
    let image = tempfile::tempdir().unwrap();
    crash_copy(live.path(), image.path());
    store.stop().await;
    let path = image.path().join(JOURNAL_FILE_NAME);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let recovered = journaled(image.path());
    let loaded = recovered.load(r.clone()).await.unwrap();
    // redb's file holds only its last durable commit (the open's), so rows 1..=4 come from the
    // journal and row 5, whose frame is torn, is gone: it was never acknowledged.
    let want: Vec<(u64, Vec<u8>)> = (1..=4u64)
        .map(|i| (i, format!("{i}").into_bytes()))
        .collect();
    assert_eq!(tail(&loaded), want);
    assert_eq!(recovered.append(r, vec![b("next")]).await.unwrap(), 5);
}

/// A data directory written before the journal existed opens, keeps its rooms and gets a
/// journal; a journal file that belongs to another database is never replayed.
#[tokio::test]
async fn a_data_dir_without_a_journal_opens_and_a_strangers_journal_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let old =
        RedbRoomStore::start(open_database(dir.path()).unwrap(), CommitMode::OnePhase).unwrap();
    let r: Arc<str> = Arc::from("old");
    old.append(r.clone(), vec![b("1"), b("2")]).await.unwrap();
    old.stop().await;
    drop(old);
    assert!(!dir.path().join(JOURNAL_FILE_NAME).exists());

    // A journal left by another database, claiming rows of this room.
    let mut stranger = encode_header(Header {
        id: 12345,
        generation: 99,
    })
    .to_vec();
    encode_frame([("old", 3u64, &b"alien"[..])].into_iter(), &mut stranger);
    std::fs::write(dir.path().join(JOURNAL_FILE_NAME), &stranger).unwrap();

    let store = journaled(dir.path());
    let loaded = store.load(r.clone()).await.unwrap();
    assert_eq!(tail(&loaded), vec![(1, b"1".to_vec()), (2, b"2".to_vec())]);
    assert_eq!(store.append(r.clone(), vec![b("3")]).await.unwrap(), 3);
    let header = decode_header(&std::fs::read(dir.path().join(JOURNAL_FILE_NAME)).unwrap());
    assert!(header.is_some_and(|h| h.id != 12345), "{header:?}");
}

/// Compaction and deletion are checkpoints: once acknowledged they are in redb durably and the
/// journal holds nothing from before them.
#[tokio::test]
async fn compaction_and_deletion_checkpoint_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = journaled(dir.path());
    let r: Arc<str> = Arc::from("c");
    store.append(r.clone(), vec![b("1"), b("2")]).await.unwrap();
    let path = dir.path().join(JOURNAL_FILE_NAME);
    let before = decode_header(&std::fs::read(&path).unwrap()).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > HEADER_LEN as u64);
    store.compact(r.clone(), 2, b"snap".to_vec()).await.unwrap();
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len(), HEADER_LEN, "the journal started over");
    assert_eq!(
        decode_header(&file).unwrap().generation,
        before.generation + 1
    );
    store.append(r.clone(), vec![b("3")]).await.unwrap();
    store.delete(r.clone()).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), HEADER_LEN);
    let image = tempfile::tempdir().unwrap();
    crash_copy(dir.path(), image.path());
    store.stop().await;
    let recovered = journaled(image.path());
    let loaded = recovered.load(r).await.unwrap();
    assert!(loaded.snapshot.is_none() && loaded.tail.is_empty());
}

/// The fuzz seeds (written from the documented format, with zlib's CRC-32) decode as intended:
/// the documented format and this decoder agree.
#[test]
fn the_fuzz_seeds_follow_the_documented_format() {
    let seeds = "../../fuzz/corpus/journal_frame";
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(seeds);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let whole = decode_frames(&read("whole.bin"));
    assert_eq!(whole.cut, None);
    assert_eq!(
        whole.frames,
        vec![
            vec![row("a", 1, &[1, 1, 0]), row("b", 1, b"")],
            vec![row("room-x", 2, b"hello")],
        ]
    );
    assert_eq!(decode_frames(&read("torn.bin")).frames.len(), 1);
    assert_eq!(decode_frames(&read("damaged.bin")).frames.len(), 0);
}
