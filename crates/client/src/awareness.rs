//! Awareness (presence) of one client: its own state, and the states of the others in the room
//! as the Yjs rule accepts them (a newer clock wins; an equal clock may only remove a state).
//!
//! Bounded: at most [`MAX_PEERS`] other clients are tracked, each state at most
//! [`MAX_STATE_BYTES`] (more is a hostile server: the frame is refused), and states not renewed within [`OUTDATED`] are dropped, as y-protocols
//! does (peers renew every [`RENEW`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weaver_protocol::{AwarenessEntry, encode_awareness, encode_awareness_message};

use crate::error::FrameError;

/// Other clients tracked at most.
pub const MAX_PEERS: usize = 4096;
/// Largest awareness state accepted (the relay's own limit per state).
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// A peer state not renewed for this long is dropped (y-protocols `outdatedTimeout`).
pub const OUTDATED: Duration = Duration::from_secs(30);
/// How often our own state is re-sent so peers keep it.
pub const RENEW: Duration = Duration::from_secs(15);

/// Another client's awareness state.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerState {
    pub client_id: u64,
    pub clock: u64,
    pub state: serde_json::Value,
}

#[derive(Debug)]
struct Peer {
    clock: u64,
    state: serde_json::Value,
    seen: Instant,
}

#[derive(Debug)]
pub(crate) struct Awareness {
    client_id: u64,
    clock: u64,
    /// JSON text of our state; `None` before it is set or after it was cleared.
    local: Option<String>,
    peers: HashMap<u64, Peer>,
    /// Clocks of peers whose state was removed, so a late older state does not revive them.
    removed: HashMap<u64, u64>,
}

impl Awareness {
    pub(crate) fn new(client_id: u64) -> Awareness {
        Awareness {
            client_id,
            clock: 0,
            local: None,
            peers: HashMap::new(),
            removed: HashMap::new(),
        }
    }

    /// Sets (`Some`) or clears (`None`) our state; bumps the clock.
    pub(crate) fn set_local(&mut self, state: Option<String>) {
        self.clock += 1;
        self.local = state;
    }

    pub(crate) fn has_local(&self) -> bool {
        self.local.is_some()
    }

    /// The frame announcing our current state (`null` once cleared).
    pub(crate) fn local_frame(&self) -> Vec<u8> {
        let entry = AwarenessEntry {
            client_id: self.client_id,
            clock: self.clock,
            state: self.local.clone().unwrap_or_else(|| "null".to_owned()),
        };
        encode_awareness_message(&encode_awareness(&[entry]))
    }

    /// The frame telling peers we left (sent on close; the relay would also do it for us).
    pub(crate) fn leave_frame(&self) -> Vec<u8> {
        let entry = AwarenessEntry {
            client_id: self.client_id,
            clock: self.clock + 1,
            state: "null".to_owned(),
        };
        encode_awareness_message(&encode_awareness(&[entry]))
    }

    /// Applies entries from the server; returns the ids whose state changed.
    pub(crate) fn apply(
        &mut self,
        entries: Vec<AwarenessEntry>,
        now: Instant,
    ) -> Result<Vec<u64>, FrameError> {
        let mut changed = Vec::new();
        for e in entries {
            if e.state.len() > MAX_STATE_BYTES {
                return Err(FrameError::AwarenessTooLarge(MAX_STATE_BYTES));
            }
            if e.client_id == self.client_id {
                continue;
            }
            let known = self
                .peers
                .get(&e.client_id)
                .map(|p| p.clock)
                .or_else(|| self.removed.get(&e.client_id).copied());
            let live = self.peers.contains_key(&e.client_id);
            let accept = match known {
                None => !(e.clock == 0 && e.is_removal()),
                Some(c) => e.clock > c || (e.clock == c && e.is_removal() && live),
            };
            if !accept {
                continue;
            }
            if e.is_removal() {
                self.peers.remove(&e.client_id);
                self.insert_removed(e.client_id, e.clock);
                changed.push(e.client_id);
                continue;
            }
            // `decode_awareness` checked the JSON syntax; a state it passed parses.
            let Ok(state) = serde_json::from_str(&e.state) else {
                continue;
            };
            if !self.peers.contains_key(&e.client_id) && self.peers.len() >= MAX_PEERS {
                return Err(FrameError::TooManyPeers(MAX_PEERS));
            }
            self.removed.remove(&e.client_id);
            self.peers.insert(
                e.client_id,
                Peer {
                    clock: e.clock,
                    state,
                    seen: now,
                },
            );
            changed.push(e.client_id);
        }
        Ok(changed)
    }

    fn insert_removed(&mut self, id: u64, clock: u64) {
        if self.removed.len() >= MAX_PEERS {
            self.removed.clear();
        }
        self.removed.insert(id, clock);
    }

    /// Drops states not renewed within [`OUTDATED`]; returns their ids.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<u64> {
        let gone: Vec<u64> = self
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > OUTDATED)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(p) = self.peers.remove(id) {
                self.insert_removed(*id, p.clock);
            }
        }
        gone
    }

    /// Forgets every peer (the connection is gone: their states are no longer kept fresh).
    pub(crate) fn clear_peers(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        self.peers.clear();
        self.removed.clear();
        ids
    }

    pub(crate) fn peers(&self) -> Vec<PeerState> {
        let mut out: Vec<PeerState> = self
            .peers
            .iter()
            .map(|(id, p)| PeerState {
                client_id: *id,
                clock: p.clock,
                state: p.state.clone(),
            })
            .collect();
        out.sort_by_key(|p| p.client_id);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn e(id: u64, clock: u64, state: &str) -> AwarenessEntry {
        AwarenessEntry {
            client_id: id,
            clock,
            state: state.into(),
        }
    }

    #[test]
    fn yjs_rule() {
        let now = Instant::now();
        let mut a = Awareness::new(1);
        assert_eq!(
            a.apply(vec![e(1, 5, "{}")], now).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(
            a.apply(vec![e(2, 0, "null")], now).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(a.apply(vec![e(2, 1, r#"{"n":1}"#)], now).unwrap(), vec![2]);
        assert_eq!(
            a.apply(vec![e(2, 1, r#"{"n":2}"#)], now).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(a.apply(vec![e(2, 1, "null")], now).unwrap(), vec![2]);
        assert!(a.peers().is_empty());
        assert_eq!(
            a.apply(vec![e(2, 1, r#"{"n":3}"#)], now).unwrap(),
            Vec::<u64>::new()
        );
        a.apply(vec![e(3, 1, "{}")], now).unwrap();
        assert_eq!(a.expire(now + OUTDATED + Duration::from_secs(1)), vec![3]);
    }
}
