//! The completer: one task that commits worker outcomes, batching whatever is queued into one
//! outbox transaction (one fsync for many finished tries), and answers each worker.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{Inner, blocking};
use crate::outbox::{Completion, Outcome};
use crate::{BridgeError, now_ms};

/// Most outcomes committed in one transaction.
const BATCH: usize = 256;

/// A worker's outcome on its way to the completer.
pub(super) struct Done {
    pub(super) id: Uuid,
    /// The claim's fencing token.
    pub(super) token: u64,
    pub(super) outcome: Outcome,
    pub(super) reply: oneshot::Sender<Result<Completion, BridgeError>>,
}

/// Commits worker outcomes until shutdown. The worker keeps its concurrency slot until its
/// outcome is durable.
pub(super) async fn run(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Done>) {
    loop {
        let first = tokio::select! {
            () = inner.shutdown.cancelled() => break,
            d = rx.recv() => match d { Some(d) => d, None => break },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|d| ((d.id, Some(d.token), d.outcome), d.reply))
            .unzip();
        let ob = inner.outbox.clone();
        match blocking(move || ob.complete_many(items, now_ms(), &mut rand::rng())).await {
            Ok(results) => {
                for (r, reply) in results.into_iter().zip(replies) {
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(BridgeError::Shared(e.clone())));
                }
            }
        }
    }
    tracing::info!("bridge completer stopped");
}
