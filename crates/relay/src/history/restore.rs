//! The restore update: what turns a room's live document into a version's content through
//! normal Yjs operations, so it travels as one forward update (durable, broadcast, seen by the
//! bridge) and merges with offline edits by the CRDT rules (docs/protocol.md, "Versions").
//!
//! Made in a scratch document that starts as the live state under a fresh client id: every
//! root the version has gets the version's content (map keys removed, added or replaced,
//! nested maps recursively; texts and arrays by their differing middle, so untouched items
//! keep their identity), and the update is everything the scratch document gained. XML and
//! text formatting are copied as their JSON / plain text (Weaver's schema has neither).

use std::panic::{AssertUnwindSafe, catch_unwind};

use yrs::types::ToJson;
use yrs::types::text::{DeltaPrelim, TextPrelim};
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, GetString, In, Map, MapPrelim, MapRef, Out, ReadTxn, Text,
    TextRef, Transact, TransactionMut,
};

use crate::room::{Applied, apply_update, new_doc};

/// Why a restore update could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the {0} document does not apply")]
    Unreadable(&'static str),
    #[error("yrs panicked computing the restore")]
    Panicked,
}

/// The v1 update that makes every root of `target` (a whole document as a v1 update)
/// hold exactly `target`'s content when applied to `live`. Empty changes encode as a small
/// update that changes nothing.
pub fn restore_update(live: &[u8], target: &[u8]) -> Result<Vec<u8>, RestoreError> {
    let scratch = new_doc();
    if !matches!(
        apply_update(&scratch, live, usize::MAX),
        Applied::Changed | Applied::Noop
    ) {
        return Err(RestoreError::Unreadable("live"));
    }
    let version = new_doc();
    if !matches!(
        apply_update(&version, target, usize::MAX),
        Applied::Changed | Applied::Noop
    ) {
        return Err(RestoreError::Unreadable("version"));
    }
    catch_unwind(AssertUnwindSafe(|| {
        let names: Vec<String> = version
            .transact()
            .root_refs()
            .map(|(name, _)| name.to_owned())
            .collect();
        // Every root is looked at as a map, a text and an array: a root the update did not
        // type stays untyped until asked for, and asking only names the first type.
        let roots: Vec<[Root; 2]> = names
            .iter()
            .map(|n| [Root::of(&scratch, n), Root::of(&version, n)])
            .collect();
        let before = scratch.transact().state_vector();
        {
            let vt = version.transact();
            let mut st = scratch.transact_mut();
            for [live, want] in &roots {
                if live.map.len(&st) > 0 || want.map.len(&vt) > 0 {
                    replace_map(&mut st, &live.map, &vt, &want.map);
                } else if want.is_text(&vt) || (want.array.len(&vt) == 0 && live.is_text(&st)) {
                    replace_text(&mut st, &live.text, &vt, &want.text);
                } else if want.array.len(&vt) > 0 || live.array.len(&st) > 0 {
                    replace_array(&mut st, &live.array, &vt, &want.array);
                }
            }
        }
        scratch.transact().encode_state_as_update_v1(&before)
    }))
    .map_err(|_| RestoreError::Panicked)
}

/// One root of a document seen as each type it may be.
struct Root {
    map: MapRef,
    text: TextRef,
    array: ArrayRef,
}

impl Root {
    fn of(doc: &yrs::Doc, name: &str) -> Root {
        Root {
            map: doc.get_or_insert_map(name),
            text: doc.get_or_insert_text(name),
            array: doc.get_or_insert_array(name),
        }
    }

    /// A sequence root holding only text (its string is as long as its content); a text with
    /// embeds counts as an array.
    fn is_text<T: ReadTxn>(&self, txn: &T) -> bool {
        let len = self.array.len(txn);
        len > 0 && self.text.get_string(txn).encode_utf16().count() == len as usize
    }
}

fn replace_map<V: ReadTxn>(st: &mut TransactionMut, live: &MapRef, vt: &V, version: &MapRef) {
    let gone: Vec<String> = live
        .keys(st)
        .filter(|k| version.get(vt, k).is_none())
        .map(str::to_owned)
        .collect();
    for k in gone {
        live.remove(st, &k);
    }
    for (k, want) in version.iter(vt) {
        match (live.get(st, k), want) {
            (Some(Out::YMap(l)), Out::YMap(v)) => replace_map(st, &l, vt, &v),
            (Some(Out::YText(l)), Out::YText(v)) => replace_text(st, &l, vt, &v),
            (Some(Out::YArray(l)), Out::YArray(v)) => replace_array(st, &l, vt, &v),
            (Some(Out::Any(l)), Out::Any(v)) if l == v => {}
            (_, want) => {
                live.insert(st, k, deep_copy(&want, vt));
            }
        }
    }
}

/// Replaces the middle where the two texts differ (UTF-16 offsets, like the documents').
fn replace_text<V: ReadTxn>(st: &mut TransactionMut, live: &TextRef, vt: &V, version: &TextRef) {
    let a: Vec<u16> = live.get_string(st).encode_utf16().collect();
    let b: Vec<u16> = version.get_string(vt).encode_utf16().collect();
    if a == b {
        return;
    }
    let (p, s) = common_ends(&a, &b, |x, y| x == y);
    // Never split a surrogate pair.
    let p = if p > 0 && (0xD800..0xDC00).contains(&a[p - 1]) {
        p - 1
    } else {
        p
    };
    let s = if s > 0 && (0xDC00..0xE000).contains(&a[a.len() - s]) {
        s - 1
    } else {
        s
    };
    live.remove_range(st, p as u32, (a.len() - p - s) as u32);
    let middle = String::from_utf16_lossy(&b[p..b.len() - s]);
    if !middle.is_empty() {
        live.insert(st, p as u32, &middle);
    }
}

/// Replaces the middle where the two arrays differ (elements compared as JSON).
fn replace_array<V: ReadTxn>(st: &mut TransactionMut, live: &ArrayRef, vt: &V, version: &ArrayRef) {
    let a: Vec<Any> = live.iter(st).map(|o| o.to_json(st)).collect();
    let wanted: Vec<Out> = version.iter(vt).collect();
    let b: Vec<Any> = wanted.iter().map(|o| o.to_json(vt)).collect();
    if a == b {
        return;
    }
    let (p, s) = common_ends(&a, &b, |x, y| x == y);
    live.remove_range(st, p as u32, (a.len() - p - s) as u32);
    for (i, item) in wanted[p..b.len() - s].iter().enumerate() {
        live.insert(st, (p + i) as u32, deep_copy(item, vt));
    }
}

/// Lengths of the common prefix and of the common suffix after it.
fn common_ends<T>(a: &[T], b: &[T], eq: impl Fn(&T, &T) -> bool) -> (usize, usize) {
    let p = a.iter().zip(b).take_while(|(x, y)| eq(x, y)).count();
    let s = a[p..]
        .iter()
        .rev()
        .zip(b[p..].iter().rev())
        .take_while(|(x, y)| eq(x, y))
        .count();
    (p, s)
}

/// A value of the version as something to insert into the live document. Maps, arrays and
/// texts are copied as new shared types; anything else (XML, formatting) as its JSON.
fn deep_copy<V: ReadTxn>(value: &Out, vt: &V) -> In {
    match value {
        Out::Any(a) => In::Any(a.clone()),
        Out::YText(t) => In::Text(DeltaPrelim::from(TextPrelim::new(t.get_string(vt)))),
        Out::YArray(a) => In::Array(ArrayPrelim::from(
            a.iter(vt).map(|o| deep_copy(&o, vt)).collect::<Vec<In>>(),
        )),
        Out::YMap(m) => In::Map(
            m.iter(vt)
                .map(|(k, o)| (k.to_owned(), deep_copy(&o, vt)))
                .collect::<MapPrelim>(),
        ),
        other => In::Any(other.to_json(vt)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use yrs::updates::decoder::Decode;
    use yrs::{Doc, StateVector, Update};

    use super::*;

    fn state(doc: &Doc) -> Vec<u8> {
        doc.transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    fn json(doc: &Doc) -> Any {
        let root = doc.get_or_insert_map("blocks");
        root.to_json(&doc.transact())
    }

    #[test]
    fn a_restore_brings_back_the_version_and_merges_with_a_concurrent_edit() {
        let live = Doc::with_client_id(1);
        let blocks = live.get_or_insert_map("blocks");
        {
            let mut t = live.transact_mut();
            let b = blocks.insert(&mut t, "b1", MapPrelim::default());
            b.insert(&mut t, "content", TextPrelim::new("hello world"));
            let list = b.insert(&mut t, "list", ArrayPrelim::default());
            list.push_back(&mut t, 1);
            blocks.insert(&mut t, "gone", "x");
        }
        let version = state(&live);
        let offline = Doc::with_client_id(2);
        offline
            .transact_mut()
            .apply_update(Update::decode_v1(&version).unwrap())
            .unwrap();
        {
            let mut t = live.transact_mut();
            let Some(Out::YMap(b)) = blocks.get(&t, "b1") else {
                panic!()
            };
            let Some(Out::YText(text)) = b.get(&t, "content") else {
                panic!()
            };
            text.insert(&mut t, 5, " brave new");
            let Some(Out::YArray(list)) = b.get(&t, "list") else {
                panic!()
            };
            list.push_back(&mut t, 2);
            blocks.remove(&mut t, "gone");
            blocks.insert(&mut t, "new", "y");
        }
        let before = json(&live);
        let update = restore_update(&state(&live), &version).unwrap();
        live.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let fresh = Doc::new();
        fresh
            .transact_mut()
            .apply_update(Update::decode_v1(&version).unwrap())
            .unwrap();
        assert_eq!(json(&live), json(&fresh), "was {before:?}");

        // An offline edit made before the restore survives it (CRDT merge).
        let offline_blocks = offline.get_or_insert_map("blocks");
        {
            let mut t = offline.transact_mut();
            offline_blocks.insert(&mut t, "offline", "z");
        }
        live.transact_mut()
            .apply_update(Update::decode_v1(&state(&offline)).unwrap())
            .unwrap();
        let t = live.transact();
        assert!(blocks.get(&t, "offline").is_some());
        let Some(Out::YMap(b)) = blocks.get(&t, "b1") else {
            panic!()
        };
        let Some(Out::YText(text)) = b.get(&t, "content") else {
            panic!()
        };
        assert_eq!(text.get_string(&t), "hello world");
    }

    #[test]
    fn restoring_the_live_state_changes_nothing() {
        let live = Doc::with_client_id(1);
        let blocks = live.get_or_insert_map("blocks");
        blocks.insert(&mut live.transact_mut(), "k", "v");
        let s = state(&live);
        let update = restore_update(&s, &s).unwrap();
        let before = live.transact().state_vector();
        live.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        assert_eq!(live.transact().state_vector(), before);
    }

    #[test]
    fn top_level_texts_and_arrays_are_restored() {
        let live = new_doc();
        let text = live.get_or_insert_text("t");
        let list = live.get_or_insert_array("a");
        {
            let mut t = live.transact_mut();
            text.insert(&mut t, 0, "abc😀def");
            list.push_back(&mut t, 1);
            list.push_back(&mut t, 2);
        }
        let version = state(&live);
        {
            let mut t = live.transact_mut();
            text.remove_range(&mut t, 2, 4);
            text.insert(&mut t, 2, "XY");
            list.remove(&mut t, 0);
            list.push_back(&mut t, 3);
        }
        let update = restore_update(&state(&live), &version).unwrap();
        live.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let t = live.transact();
        assert_eq!(text.get_string(&t), "abc😀def");
        assert_eq!(
            list.to_json(&t),
            Any::from(vec![Any::from(1), Any::from(2)])
        );
    }

    #[test]
    fn common_ends_do_not_overlap() {
        assert_eq!(common_ends(&[1, 2, 1], &[1], |a, b| a == b), (1, 0));
        assert_eq!(common_ends(&[1, 1], &[1, 1, 1], |a, b| a == b), (2, 0));
        assert_eq!(common_ends(&[1, 2, 3], &[1, 9, 3], |a, b| a == b), (1, 1));
    }
}
