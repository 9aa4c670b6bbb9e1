//! The dispatcher: one task that rescues expired leases, claims due calls within each
//! integration's free concurrency slots and spawns a worker per claim. It sleeps until the
//! next call is due or a lease expires, or until woken (new calls, a freed slot).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, blocking, worker};
use crate::now_ms;

/// Longest sleep between two looks at the outbox.
const IDLE_POLL: Duration = Duration::from_millis(1000);

pub(super) async fn run(inner: Arc<Inner>) {
    // Leases recorded by a previous process are dead: redb admits one process per file.
    let ob = inner.outbox.clone();
    match blocking(move || ob.rescue_expired(now_ms(), true, &mut rand::rng())).await {
        Ok(v) if !v.is_empty() => {
            metrics::counter!(crate::metrics::LEASES_RESCUED_TOTAL).increment(v.len() as u64);
            tracing::info!(rescued = v.len(), "rescued calls leased by a previous run");
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "start-up lease rescue failed"),
    }
    inner.notify_writebacks();
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let now = now_ms();
        let mut store_error = false;
        let ob = inner.outbox.clone();
        let (next_due, next_exp) = match blocking(move || {
            if let Ok((ready, leased, wb)) = ob.queue_sizes() {
                metrics::gauge!(crate::metrics::READY_CALLS).set(ready as f64);
                metrics::gauge!(crate::metrics::LEASED_CALLS).set(leased as f64);
                metrics::gauge!(crate::metrics::PENDING_WRITEBACKS).set(wb as f64);
            }
            Ok::<_, crate::OutboxError>((ob.next_due()?, ob.next_lease_expiry()?))
        })
        .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "outbox read failed");
                store_error = true;
                (None, None)
            }
        };
        if next_exp.is_some_and(|t| t <= now) {
            let ob = inner.outbox.clone();
            match blocking(move || ob.rescue_expired(now, false, &mut rand::rng())).await {
                Ok(v) => {
                    metrics::counter!(crate::metrics::LEASES_RESCUED_TOTAL)
                        .increment(v.len() as u64);
                }
                Err(e) => {
                    tracing::error!(error = %e, "lease rescue failed");
                    store_error = true;
                }
            }
        }
        let mut claimed = 0;
        if next_due.is_some_and(|t| t <= now) {
            let slots: HashMap<String, usize> = inner
                .slots
                .iter()
                .map(|(k, s)| (k.clone(), s.available_permits()))
                .collect();
            if slots.values().any(|n| *n > 0) {
                let ob = inner.outbox.clone();
                match blocking(move || ob.claim_due(now, &slots, 64)).await {
                    Ok(claims) => {
                        claimed = claims.len();
                        for c in claims {
                            let permit = inner
                                .slots
                                .get(&c.call.integration)
                                .and_then(|s| s.clone().try_acquire_owned().ok());
                            inner.tracker.spawn(worker::run(inner.clone(), c, permit));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claim failed");
                        store_error = true;
                    }
                }
            }
        }
        if claimed > 0 {
            inner.notify_writebacks();
            continue;
        }
        let wait = [next_due, next_exp]
            .into_iter()
            .flatten()
            .map(|t| Duration::from_millis(t.saturating_sub(now)))
            .min()
            .unwrap_or(IDLE_POLL)
            .clamp(Duration::from_millis(5), IDLE_POLL);
        // A store that fails (full disk, I/O error) fails again at once: retry at the idle pace
        // instead of every 5 ms, which only floods the log.
        let wait = if store_error { IDLE_POLL } else { wait };
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            () = inner.dispatch_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("bridge dispatcher stopped");
}
