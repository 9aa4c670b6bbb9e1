//! A worker: one task per claimed call. It runs one try through the call's integration within
//! the lease (or decides without calling: unknown integration, async deadline passed), hands
//! the outcome to the completer and keeps its concurrency slot until the outcome is durable.
//! On shutdown it stops at once; the lease is rescued at the next start and the idempotency
//! key makes the repeated try harmless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::Inner;
use super::completer::Done;
use crate::model::{ApiCall, FailureReason};
use crate::now_ms;
use crate::outbox::{Claim, Completion, Outcome, Phase};

fn past_deadline(call: &ApiCall, timeout_ms: u64) -> bool {
    call.started_at
        .is_some_and(|t| now_ms().saturating_sub(t) >= timeout_ms)
}

pub(super) async fn run(inner: Arc<Inner>, claim: Claim, permit: Option<OwnedSemaphorePermit>) {
    let call = &claim.call;
    let lease = Duration::from_millis(inner.cfg.retry.lease_ms.saturating_sub(500).max(100));
    let outcome = match inner.registry.get(&call.integration) {
        None => Outcome::Failed {
            error: format!("integration {:?} is not configured", call.integration),
            retryable: false,
            retry_after_ms: None,
            reason: FailureReason::NotConfigured,
        },
        Some(integ)
            if claim.phase == Phase::Poll && past_deadline(call, integ.async_timeout_ms()) =>
        {
            Outcome::Failed {
                error: format!(
                    "no completion within {} s of the external system accepting the call",
                    integ.async_timeout_ms() / 1000
                ),
                retryable: false,
                retry_after_ms: None,
                reason: FailureReason::AsyncTimeout,
            }
        }
        Some(integ) if claim.phase == Phase::Poll && !integ.can_poll() => {
            // Webhook-only integration woken before its deadline (clock change, restart):
            // sleep until the deadline.
            let left = call.started_at.map_or(integ.async_timeout_ms(), |t| {
                (t + integ.async_timeout_ms()).saturating_sub(now_ms())
            });
            Outcome::Pending {
                poll_after_ms: left.max(100),
            }
        }
        Some(integ) => {
            let fut = match claim.phase {
                Phase::Submit => integ.submit(call),
                Phase::Poll => integ.poll(call),
            };
            let started = std::time::Instant::now();
            let outcome = tokio::select! {
                // The lease will be rescued by the next start; the idempotency key makes the
                // repeat safe.
                () = inner.shutdown.cancelled() => return,
                r = tokio::time::timeout(lease, fut) => r.unwrap_or_else(|_| Outcome::Failed {
                    error: "no answer within the lease".into(),
                    retryable: true,
                    retry_after_ms: None,
                    reason: FailureReason::Timeout,
                }),
            };
            metrics::histogram!(crate::metrics::TRY_DURATION_SECONDS, "integration" => call.integration.clone())
                .record(started.elapsed().as_secs_f64());
            outcome
        }
    };
    tracing::debug!(call_id = %call.id, room = %call.room, r#try = call.tries, ?outcome, "try finished");
    let result = match &outcome {
        Outcome::Completed { .. } => "completed",
        Outcome::Started { .. } => "started",
        Outcome::Pending { .. } => "pending",
        Outcome::Failed {
            retryable: true, ..
        } => "retry",
        Outcome::Failed {
            retryable: false, ..
        } => "failed",
    };
    metrics::counter!(crate::metrics::TRIES_TOTAL, "integration" => call.integration.clone(), "result" => result).increment(1);
    let retry_reason = match &outcome {
        Outcome::Failed {
            retryable: true,
            reason,
            ..
        } => Some(*reason),
        _ => None,
    };
    let (id, token) = (call.id, claim.token);
    let (reply, rx) = oneshot::channel();
    if inner
        .done_tx
        .send(Done {
            id,
            token,
            outcome,
            reply,
        })
        .is_err()
    {
        return; // shutting down: the lease will be rescued at the next start
    }
    let Ok(result) = rx.await else { return };
    match result {
        Ok(Completion::Recorded(c)) => {
            if c.status.is_terminal() {
                metrics::counter!(crate::metrics::CALLS_FINISHED_TOTAL, "integration" => c.integration.clone(), "status" => c.status.as_str()).increment(1);
            } else if let Some(reason) = retry_reason {
                // Still unfinished after a retryable failure: the transition scheduled a retry.
                metrics::counter!(crate::metrics::RETRIES_TOTAL, "integration" => c.integration.clone(), "reason" => reason.as_str()).increment(1);
            }
            tracing::info!(call_id = %c.id, room = %c.room, status = c.status.as_str(), tries = c.tries, error = ?c.error, "outcome recorded");
        }
        Ok(Completion::Fenced) => {
            tracing::warn!(call_id = %id, token, "stale lease: outcome not recorded")
        }
        Ok(Completion::Ignored) => {}
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "cannot record outcome; the lease will expire and the call be retried")
        }
    }
    drop(permit);
    inner.notify_writebacks();
    inner.dispatch_wake.notify_one();
}
