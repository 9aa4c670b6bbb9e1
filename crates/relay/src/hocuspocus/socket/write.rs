//! What a Hocuspocus socket sends: commands for rooms in order (waiting for space in a full
//! inbox), pings, its own frames, then its documents' frames round-robin, each addressed.

use std::task::{Context, Poll};

use axum::extract::ws::Message;
use bytes::Bytes;
use futures_util::SinkExt;
use weaver_protocol::{encode_hocus_document, encode_hocus_ping};

use super::{Forward, Socket};
use crate::connection::{WRITE_BATCH_BYTES, WRITE_BATCH_FRAMES};
use crate::error::close_code;
use crate::room::{RoomCmd, TrySendError};

impl Socket {
    /// Delivers queued room commands in order. True if any was delivered.
    pub(super) fn poll_outbox(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        if let Some(f) = &mut self.forwarding {
            match f.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(delivered) => {
                    self.forwarding = None;
                    progress = true;
                    if !delivered {
                        self.own.close(close_code::INTERNAL, "room closed");
                        return true;
                    }
                }
            }
        }
        while let Some((tx, cmd)) = self.outbox.pop_front() {
            progress = true;
            match tx.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    let mut f: Forward = Box::pin(async move { tx.send(cmd).await.is_ok() });
                    match f.as_mut().poll(cx) {
                        Poll::Ready(true) => {}
                        Poll::Ready(false) => self.own.close(close_code::INTERNAL, "room closed"),
                        Poll::Pending => {
                            self.forwarding = Some(f);
                            break;
                        }
                    }
                }
                Err(TrySendError::Closed(cmd)) => {
                    // A Leave for a room that is gone needs no delivery.
                    if !matches!(*cmd, RoomCmd::Leave { .. }) {
                        self.own.close(close_code::INTERNAL, "room closed");
                    }
                }
            }
        }
        progress
    }

    /// Writes what is queued: pings, the socket's own frames, then each document's frames
    /// (round-robin, merged like connection.rs's, each with its address), flushing once.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<bool, axum::Error> {
        let (mut frames, mut bytes) = (0, 0);
        while frames < WRITE_BATCH_FRAMES && bytes < WRITE_BATCH_BYTES {
            match self.socket.poll_ready_unpin(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => break,
            }
            let msg = if self.ping_due {
                self.ping_due = false;
                // Two pings: the WebSocket one for our pong timeout, the provider's own one
                // (a binary frame) because a browser never shows WebSocket pings to it and it
                // drops a socket after 30 s without a message.
                self.own.push_front(Bytes::from(encode_hocus_ping()));
                Message::Ping(Bytes::new())
            } else if let Some(frame) = self.own.pop() {
                Message::Binary(frame)
            } else if let Some(frame) = self.next_document_frame() {
                Message::Binary(frame)
            } else {
                break;
            };
            if let Message::Binary(b) = &msg {
                bytes += b.len();
            }
            frames += 1;
            self.socket.start_send_unpin(msg)?;
            self.unflushed = true;
        }
        if self.unflushed
            && let Poll::Ready(r) = self.socket.poll_flush_unpin(cx)
        {
            r?;
            self.unflushed = false;
        }
        Ok(frames > 0)
    }

    /// The next frame of some document, addressed; documents take turns.
    pub(super) fn next_document_frame(&mut self) -> Option<Bytes> {
        let n = self.docs.len();
        if n == 0 {
            return None;
        }
        let start = self.next_doc % n;
        for (i, doc) in self.docs.values().enumerate().cycle().skip(start).take(n) {
            if let Some(first) = doc.queue.pop() {
                self.next_doc = i + 1;
                let (frame, _, _) = crate::connection::merge_queued_updates(first, &doc.queue);
                return Some(Bytes::from(encode_hocus_document(&doc.address, &frame)));
            }
        }
        None
    }
}
