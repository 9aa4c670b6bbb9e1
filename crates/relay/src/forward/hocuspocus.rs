//! One document of a Hocuspocus socket whose room is owned by another node (cluster mode):
//! a Hocuspocus socket of its own to the owner's `/`, carrying that one document's frames
//! verbatim both ways. The document's token frame goes first, so the owner checks the token
//! itself; its acknowledgements (`syncStatus`, after its durable commit) and everything else
//! come from the owner. The owner's `authenticated` answer is dropped: the client's node
//! already answered it (with the same key), and the provider must not see it twice.
//!
//! Owner frames go into the document's `SendQueue`, without their address (the client's
//! socket writes them with the document's own address, as a room's frames): bounded like a
//! room's, so a slow client is a slow consumer. Client frames go to the task through a
//! bounded channel (the socket closes with 1013 when it is full). How it ends, as forward/ws.rs:
//! the owner's close code is the document's close (which closes the client's socket, as any
//! document close does: the provider reconnects and resyncs every document), 1013 when the
//! owner cannot be reached, 1012 when its connection breaks, when it no longer owns the room
//! (`RoomPlacement::owner_gone`) or at shutdown. The task ends with the document (its channel
//! closes) or with any of those. The client frames waiting for the owner are bounded in bytes
//! too (twice the largest message): 256 frames of up to 16 MiB each would be 4 GiB held for one
//! document; over either bound the client's socket closes with 1013 (`owner_queue_full`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};
use weaver_protocol::{HocusFrame, HocusMessage, Reader, decode_hocus_frame};

use super::{OWNER_CONNECT_TIMEOUT, authority};
use crate::error::close_code;
use crate::metrics as m;
use crate::placement::{RemoteOwner, RoomPlacement};
use crate::send_queue::{PushError, SendQueue};

/// Client frames of one forwarded document that may wait for the owner's socket.
pub(crate) const UPSTREAM_QUEUE: usize = 256;

/// Bytes of client frames of one forwarded document that may wait for the owner's socket:
/// room for one message of the largest size while another arrives.
pub(crate) fn upstream_budget(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_mul(2)
}

/// What a forwarded document needs from the relay.
pub(crate) struct ForwardDeps {
    pub placement: Arc<dyn RoomPlacement>,
    pub shutdown: CancellationToken,
    pub tracker: tokio_util::task::TaskTracker,
    /// [`upstream_budget`] of the relay's message limit.
    pub upstream_bytes: usize,
}

/// Where the client's frames for a forwarded document go: toward the owner, bounded in frames
/// ([`UPSTREAM_QUEUE`]) and in bytes. Dropping it ends the forwarding.
#[derive(Debug)]
pub(crate) struct Upstream {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
    budget: usize,
}

/// A frame that did not fit in the queue toward the owner: the owner does not read fast enough.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpstreamFull {
    #[error("{UPSTREAM_QUEUE} frames wait for the room's owner")]
    Frames,
    #[error("more than {budget} bytes would wait for the room's owner")]
    Bytes { budget: usize },
}

impl Upstream {
    /// Queues `frame` for the owner. A forwarding that ended takes it silently: its close
    /// reaches the document through the document's queue.
    pub(crate) fn try_send(&self, frame: Bytes) -> Result<(), UpstreamFull> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before.saturating_add(len) > self.budget {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(UpstreamFull::Bytes {
                budget: self.budget,
            });
        }
        match self.tx.try_send(frame) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(UpstreamFull::Frames),
                    mpsc::error::TrySendError::Closed(_) => Ok(()),
                }
            }
        }
    }
}

/// The forwarding task's end of [`Upstream`]: a frame taken out no longer counts.
struct UpstreamRx {
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl UpstreamRx {
    async fn recv(&mut self) -> Option<Bytes> {
        let frame = self.rx.recv().await?;
        self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
        Some(frame)
    }
}

/// A queue toward the owner holding at most `budget` bytes.
fn upstream(budget: usize) -> (Upstream, UpstreamRx) {
    let (tx, rx) = mpsc::channel(UPSTREAM_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Upstream {
            tx,
            queued: queued.clone(),
            budget,
        },
        UpstreamRx { rx, queued },
    )
}

/// Starts forwarding the document at `address` (room `room`) to `owner`: `token_frame` (the
/// client's own, verbatim) goes first. Owner frames land in `queue`. Returns where the client's
/// frames for the document go; dropping it ends the forwarding.
pub(crate) fn start(
    deps: ForwardDeps,
    owner: RemoteOwner,
    room: String,
    token_frame: Bytes,
    queue: Arc<SendQueue>,
) -> Upstream {
    let span = tracing::info_span!("hocuspocus_forward", room = %room, owner = %owner.node_id);
    let ForwardDeps {
        placement,
        shutdown,
        tracker,
        upstream_bytes,
    } = deps;
    let (tx, rx) = upstream(upstream_bytes);
    tracker.spawn(
        async move {
            let (code, reason) = pipe(
                &*placement,
                &shutdown,
                &owner,
                &room,
                token_frame,
                rx,
                &queue,
            )
            .await;
            if let Some(code) = code {
                info!(code, reason, "forwarded Hocuspocus document ended");
                queue.close(code, reason);
            }
        }
        .instrument(span),
    );
    tx
}

/// The address's length prefix and bytes at the start of a document frame.
fn address_len(frame: &[u8]) -> Option<usize> {
    let mut r = Reader::new(frame);
    let len = usize::try_from(r.read_var_u64().ok()?).ok()?;
    r.read_exact(len).ok()?;
    Some(r.position())
}

/// Runs one forwarded document; returns the close to give the document (`None`: the document
/// ended on the client's side, nothing to close).
async fn pipe(
    placement: &dyn RoomPlacement,
    shutdown: &CancellationToken,
    owner: &RemoteOwner,
    room: &str,
    token_frame: Bytes,
    mut rx: UpstreamRx,
    queue: &SendQueue,
) -> (Option<u16>, &'static str) {
    const UNREACHABLE: (Option<u16>, &str) =
        (Some(close_code::SLOW_CONSUMER), "room owner unreachable");
    let url = format!("ws://{}/", authority(&owner.url));
    let Ok(request) = url.into_client_request() else {
        warn!("bad owner URL");
        return UNREACHABLE;
    };
    // Owner frames are trusted (a node of the cluster): a whole document's step2 may exceed
    // the client's message limit, so the owner side has none.
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let upstream = match tokio::time::timeout(OWNER_CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            warn!(error = %e, "owner unreachable");
            return UNREACHABLE;
        }
        Err(_) => {
            warn!("owner did not answer in time");
            return UNREACHABLE;
        }
    };
    let (mut up_tx, mut up_rx) = upstream.split();
    if up_tx
        .send(tungstenite::Message::Binary(token_frame))
        .await
        .is_err()
    {
        return UNREACHABLE;
    }
    metrics::gauge!(m::FORWARDED_CONNECTIONS).increment(1.0);
    info!("forwarding a Hocuspocus document to the room's owner");
    let lost = (Some(close_code::SHUTDOWN), "room owner connection lost");
    let gone = placement.owner_gone(room, owner);
    tokio::pin!(gone);
    let ended = loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(frame) => {
                    if !send_up(&mut up_tx, frame).await {
                        break lost;
                    }
                }
                // The document ended on the client's side (detached, socket closed).
                None => {
                    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    break (None, "");
                }
            },
            msg = up_rx.next() => match msg {
                Some(Ok(tungstenite::Message::Binary(frame))) => match on_owner_frame(frame, queue) {
                    Ok(Some(reply)) => {
                        if !send_up(&mut up_tx, reply).await {
                            break lost;
                        }
                    }
                    Ok(None) => {}
                    Err(end) => break end,
                },
                Some(Ok(tungstenite::Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1000, |f| u16::from(f.code));
                    debug!(code, "the owner closed the forwarded document");
                    // 1000/1001 carry nothing the client must act on; others pass through.
                    break match code {
                        1000 | 1001 => (Some(close_code::SHUTDOWN), "room owner closed the document"),
                        _ => (Some(code), "closed by the room's owner"),
                    };
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break lost,
            },
            () = shutdown.cancelled() => break (Some(close_code::SHUTDOWN), "server shutting down"),
            () = &mut gone => {
                info!("the room's owner changed; closing the forwarded document");
                break (Some(close_code::SHUTDOWN), "room moved to another node");
            }
        }
    };
    metrics::gauge!(m::FORWARDED_CONNECTIONS).decrement(1.0);
    ended
}

/// Sends one frame to the owner; false when it failed or stalled for [`OWNER_CONNECT_TIMEOUT`]
/// (a paused owner's TCP buffers fill up: the loop must not wait there, deaf to `owner_gone`).
async fn send_up<S>(up: &mut S, frame: Bytes) -> bool
where
    S: futures_util::Sink<tungstenite::Message> + Unpin,
{
    let send = up.send(tungstenite::Message::Binary(frame));
    matches!(
        tokio::time::timeout(OWNER_CONNECT_TIMEOUT, send).await,
        Ok(Ok(()))
    )
}

/// One frame from the owner: into the document's queue without its address; a ping is
/// answered (the returned frame), the owner's `authenticated` dropped (already answered).
fn on_owner_frame(
    frame: Bytes,
    queue: &SendQueue,
) -> Result<Option<Bytes>, (Option<u16>, &'static str)> {
    match decode_hocus_frame(&frame) {
        Ok(HocusFrame::Ping) => {
            return Ok(Some(Bytes::from_static(&[weaver_protocol::HOCUS_PONG])));
        }
        Ok(HocusFrame::Pong) => return Ok(None),
        Ok(HocusFrame::Document {
            message: HocusMessage::Authenticated(_),
            ..
        }) => return Ok(None),
        Ok(HocusFrame::Document { .. }) => {}
        Err(e) => {
            warn!(error = %e, "malformed frame from the room's owner");
            return Err((
                Some(close_code::INTERNAL),
                "bad frame from the room's owner",
            ));
        }
    }
    let Some(at) = address_len(&frame) else {
        return Err((
            Some(close_code::INTERNAL),
            "bad frame from the room's owner",
        ));
    };
    match queue.push(frame.slice(at..)) {
        Ok(()) => Ok(None),
        Err(PushError::Full) => {
            warn!("outbound queue full; closing slow consumer");
            metrics::counter!(m::SLOW_CONSUMER_CLOSES_TOTAL).increment(1);
            Err((Some(close_code::SLOW_CONSUMER), "slow consumer"))
        }
        Err(PushError::Gone) => Err((None, "")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_toward_the_owner_are_bounded_in_bytes_and_in_count() {
        let (up, mut rx) = upstream(10);
        up.try_send(Bytes::from_static(&[1; 6])).unwrap();
        assert_eq!(
            up.try_send(Bytes::from_static(&[2; 6])),
            Err(UpstreamFull::Bytes { budget: 10 })
        );
        up.try_send(Bytes::from_static(&[3; 4])).unwrap();
        // Taken out by the task: its bytes are free again.
        assert_eq!(rx.recv().await.unwrap().len(), 6);
        up.try_send(Bytes::from_static(&[4; 6])).unwrap();
        let (up, _rx) = upstream(usize::MAX);
        for _ in 0..UPSTREAM_QUEUE {
            up.try_send(Bytes::from_static(&[5])).unwrap();
        }
        assert_eq!(
            up.try_send(Bytes::from_static(&[5])),
            Err(UpstreamFull::Frames)
        );
        // A forwarding that ended takes frames silently.
        let (up, rx) = upstream(10);
        drop(rx);
        assert_eq!(up.try_send(Bytes::from_static(&[6; 6])), Ok(()));
        assert_eq!(up.queued.load(Ordering::Acquire), 0);
    }

    #[test]
    fn owner_frames_lose_their_address_and_its_authenticated_is_dropped() {
        let queue = SendQueue::new(4);
        let doc = weaver_protocol::encode_hocus_document("room\0s1", &[0, 2, 2, 0, 0]);
        assert_eq!(on_owner_frame(Bytes::from(doc), &queue).unwrap(), None);
        assert_eq!(queue.pop().unwrap().as_ref(), &[0, 2, 2, 0, 0]);
        let auth = weaver_protocol::encode_hocus_authenticated("room", false);
        assert_eq!(on_owner_frame(Bytes::from(auth), &queue).unwrap(), None);
        assert!(queue.pop().is_none());
        let ping = Bytes::from(weaver_protocol::encode_hocus_ping());
        assert_eq!(
            on_owner_frame(ping, &queue).unwrap().unwrap().as_ref(),
            &[weaver_protocol::HOCUS_PONG]
        );
        let status = weaver_protocol::encode_hocus_sync_status("room", true);
        on_owner_frame(Bytes::from(status), &queue).unwrap();
        assert_eq!(queue.pop().unwrap().as_ref(), &[8, 1]);
    }
}
