//! The fenced publish both JetStream logs share (a room's lane in this crate, the bridge's
//! outbox in `weaver-cluster-outbox`): a message carries an expectation on the last sequence
//! (of its subject or of the whole stream) and a `Nats-Msg-Id`. A refusal, or an answer lost
//! to a timeout or a reconnect, is resolved by reading the message right after the expected
//! sequence: ours (by message id) means it landed; another writer's means this writer is
//! fenced; nothing means it did not land, and it is sent again with the same id and
//! expectation (JetStream's de-duplication covers a first send that lands late).

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::context::{Context, PublishError, PublishErrorKind};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind};
use tokio::time::Instant;
use tracing::{debug, warn};

/// How the message after the expected sequence relates to a write of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Ours landed, at this stream sequence.
    Ours(u64),
    /// Another writer's message: ours can never land after it.
    Other,
    /// Nothing yet: ours did not land.
    Nothing,
}

impl After {
    /// What a direct get of the message after the expected sequence says of the write
    /// published with `msg_id`.
    pub fn of(
        got: Result<StreamMessage, DirectGetError>,
        msg_id: &str,
    ) -> Result<After, DirectGetError> {
        match got {
            Ok(m) => {
                let id = m.headers.get(async_nats::header::NATS_MESSAGE_ID);
                Ok(if id.is_some_and(|id| id.as_str() == msg_id) {
                    After::Ours(m.sequence)
                } else {
                    After::Other
                })
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(After::Nothing),
            Err(e) => Err(e),
        }
    }
}

/// Why a fenced publish did not land.
#[derive(Debug)]
pub enum FencedError<E> {
    /// Another writer's message follows the expected sequence.
    Fenced,
    /// JetStream refused or never answered (past the deadline).
    Publish(PublishError),
    /// Reading what follows the expected sequence failed after a refusal.
    Read(E),
}

/// Publishes `message()` (built afresh for each try, always with the same message id and
/// expectation) on `subject` until it lands, is fenced, or `deadline` passes; returns the
/// stream sequence it landed at. `after` reads what follows the expected sequence.
pub async fn publish_fenced<E, F, Fut>(
    js: &Context,
    subject: &str,
    message: impl Fn() -> PublishMessage,
    deadline: Instant,
    after: F,
) -> Result<u64, FencedError<E>>
where
    E: Display,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<After, E>>,
{
    loop {
        let error = match js.send_publish(subject.to_owned(), message()).await {
            Ok(ack) => match ack.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(e) => e,
            },
            Err(e) => e,
        };
        match error.kind() {
            // Since nats-server 2.15 the sequence check runs before de-duplication, so the
            // retry of a write that did land is refused too: look for it.
            PublishErrorKind::WrongLastSequence => {
                return match after().await.map_err(FencedError::Read)? {
                    After::Ours(seq) => Ok(seq),
                    After::Other | After::Nothing => Err(FencedError::Fenced),
                };
            }
            // `StreamNotFound` is how "no responders" surfaces: a server that restarts accepts
            // connections before it has restored its streams. Nothing was stored then, but the
            // read decides, as for a lost ack.
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound
            | PublishErrorKind::Other => {
                match after().await {
                    Ok(After::Ours(seq)) => return Ok(seq),
                    Ok(After::Other) => return Err(FencedError::Fenced),
                    Ok(After::Nothing) => {}
                    Err(e) => debug!(subject, error = %e, "outcome of a publish still unknown"),
                }
                if Instant::now() >= deadline {
                    return Err(FencedError::Publish(error));
                }
                warn!(subject, error = %error, "publish unacknowledged; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return Err(FencedError::Publish(error)),
        }
    }
}
