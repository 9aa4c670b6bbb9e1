//! What a Hocuspocus socket reads: WebSocket messages, frames decoded and routed by address
//! (verbatim to the owner for a forwarded document), and an open document's messages through
//! the checks a y-websocket connection's pass (`admit_update`, state vectors, `ConnPolicy`).

use std::sync::Arc;

use axum::extract::ws::Message;
use bytes::Bytes;
use tracing::{debug, warn};
use weaver_protocol::{
    HocusFrame, HocusMessage, Message as Wire, decode_hocus_frame, encode_hocus_sync_status,
    split_address,
};

use super::Socket;
use crate::admit::admit_update;
use crate::error::close_code;
use crate::hocuspocus::document::{Document, Phase};
use crate::limits::{Verdict, WriteVerdict};
use crate::room::RoomCmd;

impl Socket {
    pub(super) fn on_message(&mut self, next: Option<Result<Message, axum::Error>>) {
        match next {
            None | Some(Ok(Message::Close(_))) => self.own.close(1000, ""),
            Some(Err(e)) => {
                let text = e.to_string();
                if crate::connection::is_too_long(&text) {
                    self.reject(close_code::TOO_BIG, "message_too_big", &text);
                } else {
                    debug!(error = %text, "read error");
                    self.own.close(1000, "");
                }
            }
            Some(Ok(Message::Text(_))) => self.reject(
                close_code::UNSUPPORTED_DATA,
                "text_frame",
                &"text frames are not supported",
            ),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Binary(frame))) => self.on_frame(frame),
        }
    }

    /// One binary frame: decoded, then routed by address.
    pub(super) fn on_frame(&mut self, frame: Bytes) {
        let decoded = match decode_hocus_frame(&frame) {
            Ok(f) => f,
            Err(e) => {
                let reason = crate::connection::malformed_reason(&e);
                self.reject(close_code::PROTOCOL_ERROR, reason, &e);
                return;
            }
        };
        let HocusFrame::Document { address, message } = decoded else {
            // Pong (the answer to our ping: `last_seen` is updated) or a client's ping.
            return;
        };
        if let Some(Document {
            phase: Phase::Forwarded { upstream },
            ..
        }) = self.docs.get(address)
        {
            // Verbatim to the owner, which checks and answers everything itself.
            if let Err(full) = upstream.try_send(frame.clone()) {
                let (room, _) = split_address(address);
                warn!(room, reason = "owner_queue_full", detail = %full, "the room's owner does not read fast enough");
                self.reject(close_code::SLOW_CONSUMER, "owner_queue_full", &full);
            } else if matches!(message, HocusMessage::Close(_)) {
                self.detach(address);
            }
            return;
        }
        match self.docs.get(address).map(|d| d.room().is_some()) {
            Some(true) => self.on_document(address, message, &frame),
            Some(false) => match message {
                HocusMessage::Close(_) => self.detach(address),
                HocusMessage::Token { .. } => debug!("token repeated while joining; ignored"),
                _ => {
                    let key = self.docs.get_key_value(address).map(|(k, _)| k.clone());
                    if let Some(key) = key
                        && self.budget(frame.len())
                        && let Some(Document {
                            phase: Phase::Joining { waiting, .. },
                            ..
                        }) = self.docs.get_mut(&key)
                    {
                        waiting.push(frame.clone());
                    }
                }
            },
            None => match message {
                HocusMessage::Token { token, .. } => self.authenticate(address, token, &frame),
                HocusMessage::Close(_) => {
                    if let Some(w) = self.unauthenticated.remove(address) {
                        self.release(&w);
                    }
                }
                _ => {
                    if !self.unauthenticated.contains_key(address)
                        && !self.room_for_another(address)
                    {
                        return;
                    }
                    if self.budget(frame.len()) {
                        self.unauthenticated
                            .entry(Arc::from(address))
                            .or_default()
                            .push(frame.clone());
                    }
                }
            },
        }
    }

    /// A frame of an open document: the same checks as a y-websocket connection's frame.
    pub(super) fn on_document(&mut self, address: &str, message: HocusMessage<'_>, frame: &Bytes) {
        let Some(doc) = self.docs.get(address) else {
            return;
        };
        let Some(room) = doc.room() else {
            return;
        };
        let conn_id = doc.conn_id;
        let cmd = match message {
            HocusMessage::Yjs { message, .. } => {
                let verdict = match &message {
                    Wire::SyncStep1(_) => doc.policy.on_step1(),
                    Wire::Awareness(_) => doc.policy.on_awareness(),
                    _ => Verdict::Forward,
                };
                match verdict {
                    Verdict::Forward => {}
                    Verdict::Drop => return,
                    Verdict::Close(code, reason) => {
                        self.reject(code, reason, &"rate limit");
                        return;
                    }
                }
                match message {
                    Wire::SyncStep1(sv) => {
                        if let Err(e) = weaver_protocol::validate_state_vector(sv) {
                            self.reject(close_code::INVALID_PAYLOAD, "invalid_state_vector", &e);
                            return;
                        }
                        RoomCmd::SyncStep1 {
                            conn_id,
                            sv: frame.slice_ref(sv),
                        }
                    }
                    Wire::SyncStep2(u) | Wire::Update(u) => {
                        let handshake = matches!(message, Wire::SyncStep2(_));
                        let max = self.deps.conns.rooms.deps().config.max_message_bytes;
                        let stats = match admit_update(u, max) {
                            Ok(stats) => stats,
                            Err(refused) => {
                                let (code, reason) = refused.close();
                                self.reject(code, reason, &refused);
                                return;
                            }
                        };
                        match doc.policy.write_verdict(&stats, handshake) {
                            WriteVerdict::Forward => RoomCmd::ClientUpdate {
                                conn_id,
                                update: frame.slice_ref(u),
                                ack: true,
                            },
                            // Nothing to write: acknowledged as the reference server does.
                            WriteVerdict::NotAWrite => {
                                self.send_own(encode_hocus_sync_status(address, true));
                                return;
                            }
                            // A read-only document's write: never reaches the room.
                            WriteVerdict::Refused => {
                                debug!(room = %doc.address, "write on a read-only document refused");
                                self.send_own(encode_hocus_sync_status(address, false));
                                return;
                            }
                        }
                    }
                    Wire::Awareness(a) => match weaver_protocol::decode_awareness(a) {
                        Ok(entries) => RoomCmd::Awareness { conn_id, entries },
                        Err(e) => {
                            let (code, reason) = crate::connection::awareness_refusal(&e);
                            self.reject(code, reason, &e);
                            return;
                        }
                    },
                    Wire::QueryAwareness => RoomCmd::QueryAwareness { conn_id },
                    // Type 2 is Hocuspocus's auth, decoded as such: never a y-websocket auth.
                    Wire::Auth { .. } => return,
                }
            }
            HocusMessage::Close(_) => {
                self.detach(address);
                return;
            }
            // A token again (the provider's token refresh), stateless payloads (Weaver runs no
            // server hooks, like a Hocuspocus server without extensions), and messages only a
            // server sends: nothing to do.
            HocusMessage::Token { .. }
            | HocusMessage::Stateless(_)
            | HocusMessage::PermissionDenied(_)
            | HocusMessage::Authenticated(_)
            | HocusMessage::SyncStatus(_) => {
                debug!(room = %doc.address, "Hocuspocus message ignored");
                return;
            }
        };
        self.outbox.push_back((room.tx.clone(), Box::new(cmd)));
    }
}
