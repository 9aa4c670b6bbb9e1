//! The write-ahead journal `weaver.journal` (docs/storage.md, "Journal"): the durability point
//! of an ordinary group commit. Each journaled group appends one frame and `fdatasync`s it; the
//! group's redb commit then skips its fsync (`Durability::None`), so a small edit costs one
//! appended page instead of several rewritten B-tree pages. A checkpoint (one durable redb
//! commit recording the generation done, `replay.rs`) makes the journal's frames redundant, and
//! the file starts over with the next generation.
//!
//! File: `MAGIC ++ id (u64 LE) ++ generation (u64 LE)`, then frames
//! `len (u32 LE) ++ crc32(payload) (u32 LE) ++ payload`, payload
//! `rows (u32 LE) ++ rows × (room len (u32 LE) ++ room ++ seq (u64 LE) ++ update len (u32 LE) ++ update)`.
//! `id` ties the file to one database (a restored or replaced `weaver.redb` never replays a
//! stranger's journal).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// File name of the journal inside the data directory, next to `weaver.redb`.
pub const JOURNAL_FILE_NAME: &str = "weaver.journal";
const MAGIC: [u8; 8] = *b"WVRJNL01";
/// Magic, database id, generation.
pub const HEADER_LEN: usize = 24;
/// Frame length and checksum.
const FRAME_HEAD: usize = 8;
/// A frame longer than this is damage, not data: a group holds at most 64 MiB of updates
/// (the persister's bound) plus a few bytes per row.
pub const MAX_FRAME_BYTES: usize = 128 * 1024 * 1024;
/// Journal size from which the next group checkpoints instead of appending.
pub(super) const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// Age of the oldest un-checkpointed frame from which the next group (or the idle tick)
/// checkpoints: bounds replay time and how long redb's freed pages wait to be reused.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);

/// What identifies a journal file: the database it belongs to and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub generation: u64,
}

/// One log row carried by a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub room: String,
    pub seq: u64,
    pub update: Vec<u8>,
}

/// Where and why decoding stopped before the end of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Byte offset (from the start of the file) of the first frame not applied.
    pub offset: usize,
    pub reason: &'static str,
}

/// The frames of a journal body that are whole and intact, in order, and where the rest was cut.
#[derive(Debug, Default)]
pub struct Decoded {
    pub frames: Vec<Vec<JournalRow>>,
    pub cut: Option<Cut>,
}

pub fn encode_header(h: Header) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..16].copy_from_slice(&h.id.to_le_bytes());
    out[16..].copy_from_slice(&h.generation.to_le_bytes());
    out
}

/// `None` when the file is too short for a header (a rotation torn by a crash) or not a journal.
pub fn decode_header(file: &[u8]) -> Option<Header> {
    let head = file.get(..HEADER_LEN)?;
    if head[..8] != MAGIC {
        return None;
    }
    Some(Header {
        id: u64::from_le_bytes(head[8..16].try_into().ok()?),
        generation: u64::from_le_bytes(head[16..24].try_into().ok()?),
    })
}

/// Appends one frame holding `rows` to `out`.
pub fn encode_frame<'a>(
    rows: impl ExactSizeIterator<Item = (&'a str, u64, &'a [u8])>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD]);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (room, seq, update) in rows {
        out.extend_from_slice(&(room.len() as u32).to_le_bytes());
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(update.len() as u32).to_le_bytes());
        out.extend_from_slice(update);
    }
    let payload = &out[start + FRAME_HEAD..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frames after the header of a whole journal file. Never fails and never panics:
/// the first frame that is torn, fails its checksum or does not parse ends the journal there
/// (a crash mid-append leaves exactly such a tail), and nothing after it is trusted.
pub fn decode_frames(file: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut at = HEADER_LEN.min(file.len());
    while at < file.len() {
        let cut = |reason| Some(Cut { offset: at, reason });
        let rest = &file[at..];
        let Some(head) = rest.get(..FRAME_HEAD) else {
            out.cut = cut("torn frame header");
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_FRAME_BYTES {
            out.cut = cut("frame length out of range");
            break;
        }
        let Some(payload) = rest.get(FRAME_HEAD..FRAME_HEAD + len) else {
            out.cut = cut("torn frame");
            break;
        };
        if crc32fast::hash(payload) != crc {
            out.cut = cut("frame checksum mismatch");
            break;
        }
        let Some(rows) = decode_payload(payload) else {
            out.cut = cut("malformed frame");
            break;
        };
        out.frames.push(rows);
        at += FRAME_HEAD + len;
    }
    out
}

fn decode_payload(mut p: &[u8]) -> Option<Vec<JournalRow>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = p.split_at_checked(n)?;
        *p = rest;
        Some(head)
    }
    fn u32_of(p: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize)
    }
    let count = u32_of(&mut p)?;
    // Not preallocated from `count`: the checksum guards against damage, not against a frame
    // written to make us allocate.
    let mut rows = Vec::new();
    for _ in 0..count {
        let room_len = u32_of(&mut p)?;
        let room = std::str::from_utf8(take(&mut p, room_len)?)
            .ok()?
            .to_owned();
        let seq = u64::from_le_bytes(take(&mut p, 8)?.try_into().ok()?);
        let update_len = u32_of(&mut p)?;
        let update = take(&mut p, update_len)?.to_vec();
        rows.push(JournalRow { room, seq, update });
    }
    p.is_empty().then_some(rows)
}

/// The open journal file the persister appends to.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    header: Header,
    len: u64,
    /// Length before the last frame, for [`Journal::unappend`].
    before_last: u64,
    /// When the first frame since the last checkpoint was written; `None`: nothing to checkpoint.
    dirty_since: Option<Instant>,
    buf: Vec<u8>,
}

impl Journal {
    /// Starts `path` over as an empty journal of `header` (truncating what was there), durably.
    pub(super) fn create(path: &Path, header: Header) -> std::io::Result<Journal> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut j = Journal {
            file,
            path: path.to_owned(),
            header,
            len: 0,
            before_last: 0,
            dirty_since: None,
            buf: Vec::new(),
        };
        j.rotate(header.generation)?;
        if !existed && let Some(dir) = path.parent() {
            // The new directory entry must survive a crash too.
            File::open(dir)?.sync_all()?;
        }
        Ok(j)
    }

    pub(super) fn header(&self) -> Header {
        self.header
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether frames were written since the last checkpoint.
    pub(super) fn dirty(&self) -> bool {
        self.dirty_since.is_some()
    }

    /// Whether the next group should checkpoint instead of appending.
    pub(super) fn due(&self) -> bool {
        self.len >= CHECKPOINT_BYTES
            || self
                .dirty_since
                .is_some_and(|t| t.elapsed() >= CHECKPOINT_EVERY)
    }

    /// Appends one frame of `rows` and makes it durable: when this returns, the rows survive a
    /// crash. On error the file may hold a torn frame, which replay cuts.
    pub(super) fn append<'a>(
        &mut self,
        rows: impl ExactSizeIterator<Item = (&'a str, u64, &'a [u8])>,
    ) -> std::io::Result<()> {
        self.buf.clear();
        encode_frame(rows, &mut self.buf);
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        self.before_last = self.len;
        self.len += self.buf.len() as u64;
        self.dirty_since.get_or_insert_with(Instant::now);
        // A storm's frame must not keep its buffer for the life of the process.
        if self.buf.capacity() > 1024 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Takes the last frame back out: its group's redb commit failed, so nothing of it was
    /// acknowledged, and a restart must not bring it back. If this fails too the store is failed
    /// anyway, and the frame may be replayed: durable but never shown, which is allowed.
    pub(super) fn unappend(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.before_last)?;
        self.file.sync_data()?;
        self.len = self.before_last;
        Ok(())
    }

    /// Empties the journal and starts `generation` (after a checkpoint recorded the previous
    /// one as done). A crash in here leaves a short or empty file, which replay treats as empty.
    pub(super) fn rotate(&mut self, generation: u64) -> std::io::Result<()> {
        self.header.generation = generation;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&encode_header(self.header))?;
        self.file.sync_data()?;
        self.len = HEADER_LEN as u64;
        self.dirty_since = None;
        Ok(())
    }
}
