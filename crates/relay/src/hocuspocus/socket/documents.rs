//! A socket's documents through their life: the per-socket document and waiting-frame limits,
//! the token handshake, joining the room or forwarding to its owner, detaching.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};
use weaver_protocol::{encode_hocus_authenticated, encode_hocus_permission_denied, split_address};

use super::{MAX_WAITING_FRAMES, Socket};
use crate::auth::Need;
use crate::error::{RelayError, close_code};
use crate::hocuspocus::DEFAULT_MAX_DOCUMENTS_PER_SOCKET;
use crate::hocuspocus::document::{Document, Phase};
use crate::metrics as m;
use crate::room::{ConnLink, RoomCmd, RoomHandle};
use crate::room_name::validate_room_name;
use crate::send_queue::SendQueue;

impl Socket {
    /// Whether the socket may address one more document; closes it (1008) if not.
    pub(super) fn room_for_another(&self, address: &str) -> bool {
        let max = DEFAULT_MAX_DOCUMENTS_PER_SOCKET;
        if self.docs.len() + self.unauthenticated.len() < max {
            return true;
        }
        self.reject(
            close_code::POLICY,
            "too_many_documents",
            &format!("more than {max} documents on one socket (at {address:?})"),
        );
        false
    }

    /// Counts a frame that has to wait; closes the socket (1008) past the budget.
    pub(super) fn budget(&mut self, len: usize) -> bool {
        let max_bytes = self.deps.conns.rooms.deps().config.max_message_bytes;
        if self.waiting.0 + 1 > MAX_WAITING_FRAMES || self.waiting.1 + len > max_bytes {
            self.reject(
                close_code::POLICY,
                "waiting_limit",
                &"too many frames before their document's token or room",
            );
            return false;
        }
        self.waiting.0 += 1;
        self.waiting.1 += len;
        true
    }

    pub(super) fn release(&mut self, frames: &[Bytes]) {
        self.waiting.0 = self.waiting.0.saturating_sub(frames.len());
        self.waiting.1 = self
            .waiting
            .1
            .saturating_sub(frames.iter().map(Bytes::len).sum());
    }

    /// A document's token: checked for its room (401/403 reasons of the HTTP routes become
    /// `permissionDenied`, on which the provider fires `onAuthenticationFailed`), then the
    /// document joins its room.
    pub(super) fn authenticate(&mut self, address: &str, token: &str, token_frame: &Bytes) {
        let waiting_frames = self.unauthenticated.remove(address);
        let known = waiting_frames.is_some();
        let waiting_frames = waiting_frames.unwrap_or_default();
        if !known && !self.room_for_another(address) {
            return;
        }
        let (name, _session) = split_address(address);
        let auth = &self.deps.auth;
        let checked = match validate_room_name(name) {
            Err(e) => Err((String::from("invalid_room"), e.to_string())),
            Ok(()) => auth
                .check_token(Some(token), Some(name), Need::Read, crate::auth::now_unix())
                .map_err(|r| (r.reason.to_owned(), r.message)),
        };
        let access = match checked {
            Ok(access) => access,
            Err((reason, message)) => {
                self.release(&waiting_frames);
                metrics::counter!(crate::auth::AUTH_REJECTIONS_TOTAL, "reason" => reason.clone())
                    .increment(1);
                warn!(
                    room = name,
                    reason, "Hocuspocus document refused: permission denied"
                );
                self.send_own(encode_hocus_permission_denied(address, &message));
                return;
            }
        };
        let rooms = self.deps.conns.rooms.clone();
        let config = &rooms.deps().config;
        let Some(slot) = self.deps.conns.gates.try_join(name, &config.limits) else {
            self.release(&waiting_frames);
            self.reject(
                close_code::SLOW_CONSUMER,
                "room_connection_limit",
                &"room connection limit reached",
            );
            return;
        };
        self.send_own(encode_hocus_authenticated(address, !access.can_write()));
        self.authenticated_once = true;
        let address: Arc<str> = Arc::from(address);
        let conn_id = rooms.next_id();
        let queue = Arc::new(SendQueue::new(config.conn_queue_frames));
        let expires = crate::auth::expiry_deadline(&access);
        let policy = crate::limits::ConnPolicy::new(
            self.deps.conns.gates.clone(),
            &config.limits,
            config.auth.read_only_awareness,
            name,
            access,
        );
        let link = ConnLink {
            id: conn_id,
            queue: queue.clone(),
        };
        let room_name = name.to_owned();
        let key = address.clone();
        self.joins.push(Box::pin(async move {
            let joined = rooms.join(&room_name, link).await;
            (key, conn_id, joined)
        }));
        metrics::gauge!(m::HOCUSPOCUS_DOCUMENTS).increment(1.0);
        info!(
            room = name,
            conn = conn_id,
            "Hocuspocus document authenticated"
        );
        // A token that ends before the next timer would fire moves the timer forward.
        if let Some(e) = expires
            && e < self.timer.deadline()
        {
            self.timer.as_mut().reset(e);
        }
        self.docs.insert(
            address.clone(),
            Document {
                address,
                conn_id,
                queue,
                policy,
                expires,
                phase: Phase::Joining {
                    waiting: waiting_frames,
                    token_frame: token_frame.clone(),
                },
                _slot: slot,
            },
        );
    }

    /// A join finished: the document opens and the frames that waited go to the room in order.
    pub(super) fn joined(
        &mut self,
        address: Arc<str>,
        conn_id: u64,
        joined: Result<RoomHandle, RelayError>,
    ) {
        let ours = self
            .docs
            .get(&address)
            .is_some_and(|d| d.conn_id == conn_id);
        if !ours {
            // Detached while joining: the room forgets the subscription.
            if let Ok(room) = joined {
                self.outbox
                    .push_back((room.tx, Box::new(RoomCmd::Leave { conn_id })));
            }
            return;
        }
        let room = match joined {
            Ok(room) => room,
            Err(RelayError::Remote(owner)) => {
                self.forward(address, owner);
                return;
            }
            Err(e) => {
                let (code, reason) = match &e {
                    RelayError::ShuttingDown => (close_code::SHUTDOWN, "server shutting down"),
                    RelayError::Unavailable(_)
                    | RelayError::Overloaded(_)
                    | RelayError::Placement(_) => (close_code::SLOW_CONSUMER, "room unavailable"),
                    _ => (close_code::INTERNAL, "room unavailable"),
                };
                warn!(room = %address, error = %e, "Hocuspocus document could not join its room");
                self.own.close(code, reason);
                return;
            }
        };
        let Some(doc) = self.docs.get_mut(&address) else {
            return;
        };
        let waiting = match std::mem::replace(&mut doc.phase, Phase::Open { room }) {
            Phase::Joining { waiting, .. } => waiting,
            Phase::Open { .. } | Phase::Forwarded { .. } => Vec::new(),
        };
        self.release(&waiting);
        for frame in waiting {
            self.on_frame(frame);
        }
    }

    /// The document's room is owned by another node: its frames go there from now on (its
    /// token first, then those that waited), through a socket of its own to the owner.
    pub(super) fn forward(&mut self, address: Arc<str>, owner: crate::placement::RemoteOwner) {
        let rooms = self.deps.conns.rooms.clone();
        let Some(doc) = self.docs.get_mut(&address) else {
            return;
        };
        let Phase::Joining {
            waiting,
            token_frame,
        } = std::mem::replace(
            &mut doc.phase,
            Phase::Joining {
                waiting: Vec::new(),
                token_frame: Bytes::new(),
            },
        )
        else {
            return;
        };
        let deps = crate::forward::hocuspocus::ForwardDeps {
            placement: rooms.deps().config.placement.clone(),
            shutdown: rooms.deps().cancel.clone(),
            tracker: rooms.tracker().clone(),
            upstream_bytes: crate::forward::hocuspocus::upstream_budget(
                rooms.deps().config.max_message_bytes,
            ),
        };
        let (name, _) = split_address(&address);
        info!(room = name, owner = %owner.node_id, "Hocuspocus document forwarded to the room's owner");
        let upstream = crate::forward::hocuspocus::start(
            deps,
            owner,
            name.to_owned(),
            token_frame,
            doc.queue.clone(),
        );
        doc.phase = Phase::Forwarded { upstream };
        self.release(&waiting);
        for frame in waiting {
            self.on_frame(frame);
        }
    }

    /// The provider detached a document (or it is being dropped): the room forgets it.
    pub(super) fn detach(&mut self, address: &str) {
        let Some(doc) = self.docs.remove(address) else {
            return;
        };
        metrics::gauge!(m::HOCUSPOCUS_DOCUMENTS).decrement(1.0);
        debug!(room = %doc.address, "Hocuspocus document detached");
        match &doc.phase {
            Phase::Open { room } => self.outbox.push_back((
                room.tx.clone(),
                Box::new(RoomCmd::Leave {
                    conn_id: doc.conn_id,
                }),
            )),
            Phase::Joining { waiting, .. } => {
                let waiting = waiting.clone();
                self.release(&waiting);
            }
            // Dropping the document closes its channel: the forwarding task ends.
            Phase::Forwarded { .. } => {}
        }
    }
}
