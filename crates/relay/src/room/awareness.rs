//! A room's awareness (presence) states: the Yjs acceptance rule (newer clock wins), per-connection
//! ownership of client ids and the limits on them, tombstones, and the frames and presence reads
//! built from the states.

use bytes::Bytes;
use weaver_protocol::{AwarenessEntry, encode_awareness, encode_awareness_message};

use super::actor::Room;
use super::cmd::RoomPresence;
use crate::error::close_code;

pub(super) struct AwarenessSlot {
    pub(super) clock: u64,
    /// JSON text; `None` once removed (the clock is kept, as Yjs does).
    pub(super) state: Option<String>,
}

impl Room {
    pub(super) fn on_awareness(&mut self, conn_id: u64, entries: Vec<AwarenessEntry>) {
        let cfg = &self.deps.config;
        let (max_state, max_clients) = (
            cfg.max_awareness_state_bytes,
            cfg.max_awareness_clients_per_conn,
        );
        if !self.conns.contains_key(&conn_id) {
            return;
        }
        let mut accepted = Vec::new();
        let mut violation = None;
        for e in entries {
            if e.state.len() > max_state {
                violation = Some("awareness state too large");
                break;
            }
            // The Yjs rule: newer clock wins; an equal clock only to remove a live state.
            let accept = match self.awareness.get(&e.client_id) {
                None => e.clock > 0,
                Some(slot) => {
                    slot.clock < e.clock
                        || (slot.clock == e.clock && e.is_removal() && slot.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            let owned = conn.clients.contains(&e.client_id);
            if !owned && !e.is_removal() && conn.clients.len() >= max_clients {
                violation = Some("too many awareness client ids");
                break;
            }
            if !owned {
                // A client id belongs to the connection that last set it: a client that
                // reconnects before its old socket is reaped must not lose its presence when
                // that socket goes. Only a first claim scans, renewals stay O(1).
                for other in self.conns.values_mut() {
                    other.clients.remove(&e.client_id);
                }
            }
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return;
            };
            let state = if e.is_removal() {
                conn.clients.remove(&e.client_id);
                None
            } else {
                conn.clients.insert(e.client_id);
                Some(e.state.clone())
            };
            self.awareness.insert(
                e.client_id,
                AwarenessSlot {
                    clock: e.clock,
                    state,
                },
            );
            accepted.push(e);
        }
        if let Some(v) = violation {
            self.reject(conn_id, close_code::POLICY, "awareness_limit", v);
        }
        if !accepted.is_empty() {
            let frame = Bytes::from(encode_awareness_message(&encode_awareness(&accepted)));
            self.broadcast(frame);
        }
        self.prune_awareness();
    }

    /// Removed entries keep their clock (so stale renewals are refused), but not forever.
    pub(super) fn prune_awareness(&mut self) {
        const MAX_TOMBSTONES: usize = 10_000;
        if self.awareness.len() > MAX_TOMBSTONES {
            self.awareness.retain(|_, s| s.state.is_some());
        }
    }

    /// Copies of the live states; the caller parses them, off the room's task.
    pub(super) fn presence(&self) -> RoomPresence {
        RoomPresence {
            connections: self.conns.len(),
            states: self
                .awareness
                .iter()
                .filter_map(|(id, slot)| Some((*id, slot.clock, slot.state.clone()?)))
                .collect(),
        }
    }

    pub(super) fn all_awareness_frame(&self) -> Option<Bytes> {
        let entries: Vec<AwarenessEntry> = self
            .awareness
            .iter()
            .filter_map(|(id, s)| {
                s.state.as_ref().map(|state| AwarenessEntry {
                    client_id: *id,
                    clock: s.clock,
                    state: state.clone(),
                })
            })
            .collect();
        if entries.is_empty() {
            None
        } else {
            Some(Bytes::from(encode_awareness_message(&encode_awareness(
                &entries,
            ))))
        }
    }
}
