//! What the unit tests of this engine share: update bytes from text and a store started on a
//! test folder (the same call a restart makes, so a test can start again on the same folder).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{CommitMode, RedbRoomStore, open_database};

/// One update whose bytes are `s`.
pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A store on the database in `dir` (created on the first call), writing in `mode`.
pub(super) fn start(dir: &Path, mode: CommitMode) -> Arc<RedbRoomStore> {
    RedbRoomStore::start(open_database(dir).unwrap(), mode).unwrap()
}
