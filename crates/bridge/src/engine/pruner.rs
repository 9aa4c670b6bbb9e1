//! The pruner: one task that drops finished calls and old webhook ids past their retention,
//! every `retention.prune_interval_ms` (at least 1 s), until shutdown.

use std::sync::Arc;
use std::time::Duration;

use super::{Inner, blocking};
use crate::now_ms;

pub(super) async fn run(inner: Arc<Inner>) {
    let every = Duration::from_millis(inner.cfg.retention.prune_interval_ms.max(1000));
    loop {
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let ob = inner.outbox.clone();
        let ret = inner.cfg.retention.clone();
        match blocking(move || ob.prune(now_ms(), &ret)).await {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "pruned finished calls"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "prune failed"),
        }
    }
}
