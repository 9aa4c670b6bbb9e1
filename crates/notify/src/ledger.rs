//! `Ledger`, the seam to where the notifier records what it delivered: per room, the seq of
//! the last `room.updated` delivered (or refused for good) and the room's generation (how many
//! times it was deleted, so `webhook-id`s of a re-created room never repeat the old ones).
//!
//! Two engines: the node-local redb tables (`redb_ledger.rs`, single-node mode) and, in
//! cluster mode, one the caller supplies (weaver-cluster's KV bucket, written under the
//! leader's epoch, so a stale leader's write is refused with [`LedgerError::Superseded`]).

use std::future::Future;

/// What the ledger says was delivered for a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    pub generation: u64,
    pub seq: u64,
}

/// Errors of a ledger engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A newer notifier (a later leader) wrote the ledger: this one must stop delivering.
    #[error("a newer notifier took over the delivery ledger")]
    Superseded,
    /// Reading or writing the ledger failed (retried).
    #[error("delivery ledger")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where deliveries are recorded. Implementations are cheap to clone or shared in an `Arc`.
pub trait Ledger: Send + Sync + 'static {
    /// What was delivered for `room` (`None`: nothing yet).
    fn delivered(
        &self,
        room: &str,
    ) -> impl Future<Output = Result<Option<Delivered>, LedgerError>> + Send;

    /// Records `seq` as delivered, unless the room's generation moved on since the delivery
    /// began (it was deleted meanwhile): then nothing is written.
    fn record(
        &self,
        room: &str,
        generation: u64,
        seq: u64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The room was deleted, its last seq being `last_seq`: the generation moves on.
    fn deleted(
        &self,
        room: &str,
        last_seq: u64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Whether a room whose ledger says `recorded` needs no announcement of `seq`. Single
    /// node: only the same seq (a deleted room's seqs restart, so a smaller one is new).
    /// Cluster: seqs never restart, so anything at or below what was recorded.
    fn covers(&self, recorded: u64, seq: u64) -> bool {
        recorded == seq
    }
}
