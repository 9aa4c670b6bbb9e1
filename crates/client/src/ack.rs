//! The "unsynced" rule: when does the server hold a local update?
//!
//! The relay sends nothing before its durable commit (docs/protocol.md, durability contract),
//! so everything the server sends on a connection is state it holds durably. Per connection the
//! client keeps [`ServerKnowledge`], a lower bound of the server's state:
//! - its **state vector**: the one in the server's SyncStep1 (sent on connect, once the room is
//!   loaded from storage), extended by every update the server sends us whose inserted clocks
//!   start at or below what is known for that client (contiguous: yrs integrates a client's
//!   items only in clock order, so a gap means the server may hold them as pending only);
//! - its **delete set**: the union of the delete sets of every update and SyncStep2 it sends
//!   (a SyncStep2 carries the server's whole delete set, like Yjs `encodeStateAsUpdate`).
//!
//! A pending local update ([`PendingSummary`]: the ids it inserted and the ids it deleted) is
//! acknowledged once the known state vector covers every id it inserted and the known delete
//! set contains every id it deleted. The relay echoes every update that changed something to
//! its sender too (after the commit), so a push is acknowledged by its echo; an update the
//! server already had is covered by the server's SyncStep1 state vector or SyncStep2 delete
//! set. The knowledge starts empty on every connection, so a server that lost data (restored
//! from a backup) simply makes the client re-send: acknowledgement is never assumed.

use std::panic::catch_unwind;

use yrs::updates::decoder::Decode;
use yrs::{IdSet, StateVector, Update};

/// What one local update wrote: the ids it inserted and the ids it deleted.
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingSummary {
    inserted: IdSet,
    deleted: IdSet,
}

/// Decodes a v1 update that is ours or already validated; `None` if yrs refuses it (a panic
/// inside the decoder included).
pub(crate) fn decode(update: &[u8]) -> Option<Update> {
    catch_unwind(|| Update::decode_v1(update)).ok()?.ok()
}

/// Decodes a state vector that passed `weaver_protocol::validate_state_vector`.
pub(crate) fn decode_state_vector(sv: &[u8]) -> Option<StateVector> {
    catch_unwind(|| StateVector::decode_v1(sv)).ok()?.ok()
}

impl PendingSummary {
    pub(crate) fn of(update: &Update) -> PendingSummary {
        PendingSummary {
            inserted: update.insertions(true),
            deleted: update.delete_set().clone(),
        }
    }
}

/// A lower bound of what the server of the current connection holds durably.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerKnowledge {
    sv: StateVector,
    ds: IdSet,
}

impl ServerKnowledge {
    /// The server's SyncStep1: its state vector when it (re)loaded the room.
    pub(crate) fn learn_state_vector(&mut self, sv: &StateVector) {
        for (client, clock) in sv.iter() {
            self.sv.set_max(*client, *clock);
        }
    }

    pub(crate) fn state_vector(&self) -> &StateVector {
        &self.sv
    }

    /// An update or SyncStep2 the server sent: it holds all of it.
    pub(crate) fn learn_update(&mut self, update: &Update) {
        let inserted = update.insertions(true);
        for (client, ranges) in inserted.iter() {
            let mut known = self.sv.get(client);
            for range in ranges.iter() {
                if range.start > known {
                    break;
                }
                known = known.max(range.end);
            }
            self.sv.set_max(*client, known);
        }
        self.ds.merge_with(update.delete_set().clone());
    }

    /// Does the server hold everything this local update wrote?
    pub(crate) fn covers(&self, p: &PendingSummary) -> bool {
        let inserted = p.inserted.iter().all(|(client, ranges)| {
            let known = self.sv.get(client);
            ranges.iter().all(|r| r.end <= known)
        });
        let deleted = p.deleted.iter().all(|(client, ranges)| {
            let held = self.ds.get(client);
            // Held ranges are kept merged (adjacent ones joined), so a covered range lies
            // inside one of them.
            ranges.iter().all(|r| {
                r.is_empty()
                    || held.is_some_and(|h| {
                        h.iter().any(|(x, _)| x.start <= r.start && r.end <= x.end)
                    })
            })
        });
        inserted && deleted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Doc, GetString, ReadTxn, Text, Transact};

    fn edit(doc: &Doc, f: impl FnOnce(&mut yrs::TransactionMut, &yrs::TextRef)) -> Update {
        let t = doc.get_or_insert_text("t");
        let mut txn = doc.transact_mut();
        f(&mut txn, &t);
        decode(&txn.encode_update_v1()).unwrap()
    }

    #[test]
    fn echo_acknowledges_and_gaps_do_not() {
        let doc = Doc::with_client_id(1);
        let a = edit(&doc, |x, t| t.insert(x, 0, "ab"));
        let b = edit(&doc, |x, t| t.insert(x, 2, "cd"));
        let (pa, pb) = (PendingSummary::of(&a), PendingSummary::of(&b));
        let mut k = ServerKnowledge::default();
        // The second update alone leaves a gap at clocks 0..2: not held.
        k.learn_update(&decode(&b.encode_v1()).unwrap());
        assert!(!k.covers(&pb));
        k.learn_update(&a);
        assert!(k.covers(&pa));
        // Clocks 2..4 arrived before 0..2: the server's next step1 shows them held.
        let sv = doc.transact().state_vector();
        k.learn_state_vector(&sv);
        assert!(k.covers(&pb));
        assert_eq!(
            doc.get_or_insert_text("t").get_string(&doc.transact()),
            "abcd"
        );
    }

    #[test]
    fn deletions_need_the_servers_delete_set() {
        let doc = Doc::with_client_id(1);
        let a = edit(&doc, |x, t| t.insert(x, 0, "abc"));
        let d = edit(&doc, |x, t| t.remove_range(x, 0, 1));
        let pd = PendingSummary::of(&d);
        let mut k = ServerKnowledge::default();
        k.learn_update(&a);
        assert!(
            !k.covers(&pd),
            "the insert alone does not carry the deletion"
        );
        k.learn_update(&d);
        assert!(k.covers(&pd));
    }
}
