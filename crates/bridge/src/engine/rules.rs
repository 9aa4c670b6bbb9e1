//! The business rules as pure functions: what a block's indexing list asks of the outbox.
//! No I/O, no clocks: `reconcile` feeds them the document and the stored calls and carries
//! out what they decide.
//!
//! 1. An entry whose effective status is `notStarted` at attempt N ≥ 1 wants exactly one
//!    APICall for (room, block, index, N) ([`wanted_calls`]).
//! 2. A call whose entry is gone, or whose entry moved on to a newer attempt, is cancelled
//!    ([`sweep_verdict`]).
//! 3. A `done` entry whose content changed since it was indexed wants attempt N+1
//!    ([`done_is_stale`]); content edits reach it through the debounce ([`change_action`]).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use weaver_doc::{BlockView, Change, EntryView, Status};

use crate::model::{ApiCall, NewCall};

/// Hash of a block's content, stored in a call's `request_params` to tell later whether the
/// content it indexed is still current.
pub(super) fn content_hash(content: &str) -> String {
    let d = Sha256::digest(content.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// An entry that asks for an attempt an APICall cannot carry (beyond `u32`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AttemptOutOfRange {
    pub index_name: String,
    pub attempt: u64,
}

/// Rule 1: the APICalls a block's entries ask for (whether they exist already is the outbox's
/// to say), with the integration each index routes to, and the entries whose attempt is out
/// of range.
pub(super) fn wanted_calls<'a>(
    room: &str,
    view: &BlockView,
    route: impl Fn(&str) -> &'a str,
) -> (Vec<NewCall>, Vec<AttemptOutOfRange>) {
    let mut calls = Vec::new();
    let mut skipped = Vec::new();
    for e in &view.indexing_list {
        if e.status != Status::NotStarted || e.attempt < 1 {
            continue;
        }
        let Ok(attempt) = u32::try_from(e.attempt) else {
            skipped.push(AttemptOutOfRange {
                index_name: e.index_name.clone(),
                attempt: e.attempt,
            });
            continue;
        };
        calls.push(NewCall {
            room: room.to_owned(),
            block_id: view.id.clone(),
            index_name: e.index_name.clone(),
            attempt,
            integration: route(&e.index_name).to_owned(),
            request_params: request_params(view, e),
        });
    }
    (calls, skipped)
}

fn request_params(view: &BlockView, e: &EntryView) -> Value {
    json!({
        "content": view.content,
        "collection_configs": e.collection_configs,
        "content_hash": content_hash(&view.content),
    })
}

/// Rule 2: why an unfinished call must be cancelled, given the room's blocks; `None` keeps it.
pub(super) fn sweep_verdict(call: &ApiCall, blocks: &[BlockView]) -> Option<String> {
    let entry = blocks
        .iter()
        .find(|b| b.id == call.block_id)
        .and_then(|b| b.entry(&call.index_name));
    match entry {
        None => Some("index entry no longer exists".to_owned()),
        Some(e) if e.attempt > u64::from(call.attempt) => {
            Some(format!("superseded by attempt {}", e.attempt))
        }
        Some(_) => None,
    }
}

/// Rule 3: whether a `done` entry indexed by `call` is stale for content hashing to
/// `content_hash`. `unknown_is_stale`: whether a `done` without a known APICall (pruned, or
/// written elsewhere) counts as stale.
pub(super) fn done_is_stale(
    call: Option<&ApiCall>,
    content_hash: &str,
    unknown_is_stale: bool,
) -> bool {
    match call {
        Some(c) => {
            c.request_params.get("content_hash").and_then(Value::as_str) != Some(content_hash)
        }
        None => unknown_is_stale,
    }
}

/// What one document change asks of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    /// Cancel the block's unfinished calls (of one index, or all of them).
    Cancel {
        block_id: String,
        index_name: Option<String>,
        reason: &'static str,
    },
    /// Content edited: re-index once the block is quiet (the debounce).
    ContentEdited { block_id: String },
    /// Entries may ask for calls now: evaluate rule 1 for the block.
    Evaluate { block_id: String },
}

/// Maps a change of the mirror to what the rules do about it. `own`: the change came from the
/// bridge's own peer, whose transactions never edit content; the guard keeps rules from ever
/// firing on the bridge's writes.
pub(super) fn change_action(change: Change, own: bool) -> Option<Action> {
    match change {
        Change::BlockRemoved { block_id } => Some(Action::Cancel {
            block_id,
            index_name: None,
            reason: "block removed",
        }),
        Change::EntryRemoved {
            block_id,
            index_name,
        } => Some(Action::Cancel {
            block_id,
            index_name: Some(index_name),
            reason: "index entry removed",
        }),
        Change::ContentChanged { block_id } if !own => Some(Action::ContentEdited { block_id }),
        Change::BlockAdded { block_id, .. }
        | Change::EntryAdded { block_id, .. }
        | Change::StatusChanged { block_id, .. } => Some(Action::Evaluate { block_id }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, status: Status, attempt: u64) -> EntryView {
        EntryView {
            index_name: name.to_owned(),
            collection_configs: json!({ "k": name }),
            status,
            attempt,
            api_call_id: None,
            result: None,
            error: None,
            completed_at: None,
        }
    }

    fn block(id: &str, entries: Vec<EntryView>) -> BlockView {
        BlockView {
            id: id.to_owned(),
            block_type: "paragraph".to_owned(),
            content: "hello".to_owned(),
            indexing_list: entries,
        }
    }

    fn call(block_id: &str, index: &str, attempt: u32, hash: Option<&str>) -> ApiCall {
        let mut params = json!({ "content": "hello" });
        if let Some(h) = hash {
            params["content_hash"] = json!(h);
        }
        let spec = NewCall {
            room: "r".into(),
            block_id: block_id.into(),
            index_name: index.into(),
            attempt,
            integration: "local".into(),
            request_params: params,
        };
        ApiCall::new(uuid::Uuid::nil(), spec, 0)
    }

    #[test]
    fn content_hash_is_stable_and_short() {
        assert_eq!(content_hash("hello"), content_hash("hello"));
        assert_ne!(content_hash("hello"), content_hash("hello!"));
        assert_eq!(content_hash("").len(), 32);
    }

    #[test]
    fn only_not_started_entries_with_an_attempt_want_a_call() {
        let view = block(
            "b1",
            vec![
                entry("fresh", Status::NotStarted, 0),
                entry("wanted", Status::NotStarted, 1),
                entry("again", Status::NotStarted, 3),
                entry("busy", Status::Processing, 2),
                entry("done", Status::Done, 1),
                entry("failed", Status::Error, 1),
                entry("huge", Status::NotStarted, u64::from(u32::MAX) + 1),
            ],
        );
        let (calls, skipped) =
            wanted_calls(
                "r",
                &view,
                |i| if i == "again" { "vectors" } else { "local" },
            );
        let got: Vec<(&str, u32, &str)> = calls
            .iter()
            .map(|c| (c.index_name.as_str(), c.attempt, c.integration.as_str()))
            .collect();
        assert_eq!(got, [("wanted", 1, "local"), ("again", 3, "vectors")]);
        assert_eq!(
            skipped,
            [AttemptOutOfRange {
                index_name: "huge".into(),
                attempt: u64::from(u32::MAX) + 1
            }]
        );
        let c = &calls[0];
        assert_eq!((c.room.as_str(), c.block_id.as_str()), ("r", "b1"));
        assert_eq!(
            c.request_params,
            json!({
                "content": "hello",
                "collection_configs": { "k": "wanted" },
                "content_hash": content_hash("hello"),
            })
        );
    }

    #[test]
    fn sweep_cancels_orphans_and_superseded_calls() {
        let blocks = [block(
            "b1",
            vec![
                entry("a", Status::NotStarted, 2),
                entry("b", Status::Processing, 1),
            ],
        )];
        for (c, want) in [
            (call("b1", "a", 2, None), None),
            (call("b1", "a", 1, None), Some("superseded by attempt 2")),
            (call("b1", "b", 1, None), None),
            (
                call("b1", "gone", 1, None),
                Some("index entry no longer exists"),
            ),
            (
                call("b2", "a", 1, None),
                Some("index entry no longer exists"),
            ),
        ] {
            assert_eq!(
                sweep_verdict(&c, &blocks).as_deref(),
                want,
                "{} {} {}",
                c.block_id,
                c.index_name,
                c.attempt
            );
        }
    }

    #[test]
    fn staleness() {
        let h = content_hash("hello");
        let same = call("b", "i", 1, Some(&h));
        let other = call("b", "i", 1, Some("0000"));
        let none = call("b", "i", 1, None);
        for (c, unknown_is_stale, want) in [
            (Some(&same), true, false),
            (Some(&same), false, false),
            (Some(&other), false, true),
            (Some(&none), false, true),
            (None, true, true),
            (None, false, false),
        ] {
            assert_eq!(
                done_is_stale(c, &h, unknown_is_stale),
                want,
                "{c:?} {unknown_is_stale}"
            );
        }
    }

    #[test]
    fn changes_to_actions() {
        let b = || "b".to_owned();
        for (change, own, want) in [
            (
                Change::BlockRemoved { block_id: b() },
                false,
                Some(Action::Cancel {
                    block_id: b(),
                    index_name: None,
                    reason: "block removed",
                }),
            ),
            (
                Change::EntryRemoved {
                    block_id: b(),
                    index_name: "i".into(),
                },
                true,
                Some(Action::Cancel {
                    block_id: b(),
                    index_name: Some("i".into()),
                    reason: "index entry removed",
                }),
            ),
            (
                Change::ContentChanged { block_id: b() },
                false,
                Some(Action::ContentEdited { block_id: b() }),
            ),
            (Change::ContentChanged { block_id: b() }, true, None),
        ] {
            assert_eq!(
                change_action(change.clone(), own),
                want,
                "{change:?} own={own}"
            );
        }
    }
}
