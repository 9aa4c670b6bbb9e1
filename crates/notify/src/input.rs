//! `Feed`, the seam to the notifier's input in cluster mode: a durable, acknowledged stream of
//! every room's committed seqs, whichever node wrote them (weaver-cluster's `RoomFeed` over the
//! room streams). A message is acknowledged only once the ledger covers it (its seq or a later
//! one of the same room was delivered, or the room's deletion recorded), so a notifier that
//! dies leaves every unannounced change for the next one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// One message of the feed.
#[derive(Debug)]
pub struct FeedItem<A> {
    pub change: FeedChange,
    /// Hands the message back as done ([`Feed::ack`]).
    pub ack: A,
}

/// What a feed message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    /// The room's stored seqs reached `seq`.
    Changed { room: Arc<str>, seq: u64 },
    /// The room was deleted at `last_seq`.
    Deleted { room: Arc<str>, last_seq: u64 },
    /// Nothing to announce (a record that takes no seqs).
    Other,
}

/// Why the feed ended.
#[derive(Debug, thiserror::Error)]
#[error("room change feed")]
pub struct FeedError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The cluster-wide input of the notifier.
pub trait Feed: Send + Sync + 'static {
    /// The acknowledgement handle of one message.
    type Ack: Send + Sync + 'static;

    /// The next message; `Ok(None)` once the feed stopped, an error once it can no longer
    /// deliver everything (a part of it died): the notifier then ends its term. Cancel-safe: the notifier waits
    /// on it in a `select!`, so a message must not be lost when the future is dropped.
    fn next(
        &mut self,
    ) -> impl Future<Output = Result<Option<FeedItem<Self::Ack>>, FeedError>> + Send;

    /// Acknowledges one message (it is not delivered again).
    fn ack(&self, ack: Self::Ack) -> impl Future<Output = Result<(), FeedError>> + Send;

    /// Hands one message back, to be delivered again after `delay`: what it says could not be
    /// recorded now, and must not wait for the (long) redelivery of an unanswered message.
    fn retry(
        &self,
        ack: Self::Ack,
        delay: Duration,
    ) -> impl Future<Output = Result<(), FeedError>> + Send;
}
