//! weaver-cluster-outbox: the bridge's outbox in cluster mode, on NATS JetStream (issue 17).
//!
//! Owns the outbox op log on JetStream: the stream `WEAVER_OUTBOX` with the subjects
//! `weaver.outbox.op` (one [`op`] record per write of the `OutboxStore` trait) and
//! `weaver.outbox.snap` (snapshot chunks); fenced appends (`log.rs`); the replica, an
//! in-memory redb database with the redb engine's tables into which every op is applied
//! through `RedbOutbox` itself, so both engines share one implementation of the contract
//! (`image.rs`, `op.rs`); opening (snapshot + replay + `opened`, which fences older handles,
//! `open.rs`); snapshots every `snapshot_every` ops (`outbox.rs`); the outbox's part of a
//! cluster backup and restore (`transfer.rs`). docs/cluster.md describes the design.
//!
//! Must not know: the document, HTTP, the relay, leadership (the binary opens a handle per
//! bridge-leader term and ends the term when [`JetStreamOutbox::fenced`] fires).

mod image;
mod log;
mod op;
mod open;
mod outbox;
mod transfer;

pub use log::{LogError, OutboxConfig};
pub use outbox::JetStreamOutbox;
pub use transfer::{RestoreError, image_of_backup, outbox_messages, read_outbox, restore_image};
