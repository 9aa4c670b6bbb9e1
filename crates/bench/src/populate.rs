//! Writing many stored rooms into a fresh Weaver data directory fast: one redb write
//! transaction per `COMMIT_EVERY` rooms through the relay's own interchange writer
//! (`weaver_relay::store::redb::transfer`, the row formats `weaver serve --data` reads), instead
//! of one durable HTTP write per room. Each room holds one small, real Yjs update (a text of a
//! few words under its own client id), as a room a client typed into once.

use anyhow::{Context, Result, bail};
use std::path::Path;
use weaver_relay::StoredRoom;
use weaver_relay::store::redb::{DB_FILE_NAME, open_database_with_cache, transfer};
use yrs::{Doc, GetString, Options, Text, Transact};

/// Rooms per write transaction.
const COMMIT_EVERY: usize = 10_000;

/// The name of room `i` of a populated store (sorts in creation order).
pub fn room_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i:07}")
}

/// A v1 update inserting a short text into root `text`, written by client `client`.
pub fn text_update(client: u64, text: &str) -> Result<Vec<u8>> {
    let doc = Doc::with_options(Options::with_client_id(yrs::ClientID::new(client)));
    let t = doc.get_or_insert_text("text");
    let mut txn = doc.transact_mut();
    t.insert(&mut txn, 0, text);
    if t.get_string(&txn) != text {
        bail!("yrs did not keep the text");
    }
    Ok(txn.encode_update_v1())
}

/// Writes `rooms` rooms named [`room_name`]`(prefix, i)` into a new store in `data`, plus
/// `extra` rooms with the given updates. Refuses a directory that already holds a store.
pub fn populate(
    data: &Path,
    prefix: &str,
    rooms: usize,
    extra: &[(String, Vec<u8>)],
) -> Result<()> {
    if data.join(DB_FILE_NAME).exists() {
        bail!("{} already holds a store", data.display());
    }
    let db = open_database_with_cache(data, 64 << 20, false).context("creating the store")?;
    let mut i = 0;
    let mut first = true;
    while i < rooms || first {
        let txn = db.begin_write()?;
        if first {
            transfer::init_tables(&txn)?;
            for (name, update) in extra {
                write(&txn, name, update.clone())?;
            }
            first = false;
        }
        let end = (i + COMMIT_EVERY).min(rooms);
        for n in i..end {
            let update = text_update(n as u64 + 1, &format!("room {n} says hello"))?;
            write(&txn, &room_name(prefix, n), update)?;
        }
        txn.commit()?;
        i = end;
    }
    Ok(())
}

fn write(txn: &redb::WriteTransaction, room: &str, update: Vec<u8>) -> Result<()> {
    let stored = StoredRoom {
        snapshot: None,
        snapshot_seq: 0,
        tail: vec![(1, update)],
    };
    transfer::write_room(txn, room, &stored)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use redb::ReadableDatabase;
    use yrs::updates::decoder::Decode;

    /// The populated store is one `transfer` reads back room by room, with the update intact.
    #[test]
    fn populated_rooms_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let extra = vec![("zz-extra".to_owned(), text_update(9, "x").unwrap())];
        populate(dir.path(), "r", 3, &extra).unwrap();
        assert!(
            populate(dir.path(), "r", 1, &[]).is_err(),
            "never over a store"
        );
        let db = open_database_with_cache(dir.path(), 1 << 20, true).unwrap();
        let txn = db.begin_read().unwrap();
        let mut names = transfer::room_names(&txn).unwrap();
        names.sort();
        assert_eq!(names, ["r0000000", "r0000001", "r0000002", "zz-extra"]);
        let r = transfer::read_room(&txn, "r0000002").unwrap();
        assert_eq!(r.tail.len(), 1);
        let doc = Doc::new();
        let update = yrs::Update::decode_v1(&r.tail[0].1).unwrap();
        doc.transact_mut().apply_update(update).unwrap();
        let t = doc.get_or_insert_text("text");
        assert_eq!(t.get_string(&doc.transact()), "room 2 says hello");
    }
}
