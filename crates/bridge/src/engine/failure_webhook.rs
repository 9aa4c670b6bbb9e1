//! The `call.failed` webhook: one task that delivers the outbox's failure notices, oldest
//! first, to the configured URL as signed Standard Webhooks POSTs (weaver-auth's signing, the
//! same as the room-change webhooks'), retries with weaver-retry's backoff until the receiver
//! takes them, and only then deletes them. A notice is queued in the transaction that fails
//! its call, so a crash anywhere after that commit still delivers it after the restart: at
//! least once, under a `webhook-id` derived from the call id, so receivers deduplicate.
//!
//! One delivery at a time, in order: every notice goes to the same receiver, so when it is
//! down the next one would fail the same way. Never holds a write transaction across the
//! request (reads, then POSTs, then acknowledges in a transaction of its own).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use weaver_retry::{Backoff, Jitter, StatusClass, classify, parse_retry_after};

use super::{Inner, blocking};
use crate::BridgeError;
use crate::config::FailureWebhookConfig;
use crate::metrics as m;
use crate::outbox::FailureNotice;

/// Most notices read per look at the queue.
const BATCH: usize = 64;
/// Longest wait between two looks when nothing woke the task (a safety net: every path that
/// fails a call wakes it).
const IDLE_POLL: Duration = Duration::from_secs(5);
/// First retry delay; also the least a `Retry-After` is honoured with (`0` must not spin).
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The task's fixed parts: where to send, and how.
pub(super) struct FailureWebhook {
    cfg: FailureWebhookConfig,
    client: reqwest::Client,
}

impl std::fmt::Debug for FailureWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureWebhook")
            .field("url", &self.cfg.url.as_str())
            .finish_non_exhaustive()
    }
}

/// What one delivery came to.
enum Delivery {
    /// 2xx: delivered.
    Delivered,
    /// A final status (other 4xx, 3xx: a redirected POST would lose its body): given up.
    Rejected(u16),
    /// Transport error, timeout, 408/425/429/5xx: tried again after a backoff.
    Retry {
        why: String,
        after: Option<Duration>,
    },
}

/// The webhook body of `notice`: the same bytes on every retry (the timestamp is the time of
/// the failure), so a receiver sees one message however often it arrives.
pub(super) fn body(notice: &FailureNotice) -> String {
    json!({
        "type": "call.failed",
        "timestamp": notice.failed_at,
        "data": {
            "call_id": notice.call_id.to_string(),
            "room": notice.room,
            "block_id": notice.block_id,
            "index": notice.index_name,
            "attempt": notice.attempt,
            "integration": notice.integration,
            "attempts": notice.tries,
            "error": notice.error,
            "reason": notice.reason.as_str(),
        },
    })
    .to_string()
}

/// The `webhook-id` of `notice`: one failure per call, so the call id names it.
pub(super) fn webhook_id(notice: &FailureNotice) -> String {
    format!("msg_call_failed_{}", notice.call_id)
}

impl FailureWebhook {
    /// Builds the HTTP client (redirects not followed, the configured timeout).
    pub(super) fn new(cfg: FailureWebhookConfig) -> Result<Self, BridgeError> {
        let client = crate::tls::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .build()
            .map_err(BridgeError::FailureWebhookClient)?;
        Ok(Self { cfg, client })
    }

    /// Delivers notices until shutdown.
    pub(super) async fn run(self, inner: Arc<Inner>) {
        tracing::info!(url = %self.cfg.url, signed = self.cfg.secret.is_some(), "call.failed webhooks on");
        // Consecutive failed deliveries of the notice at the head of the queue.
        let mut failures = 0u32;
        loop {
            if inner.shutdown.is_cancelled() {
                break;
            }
            let ob = inner.outbox.clone();
            let batch = match blocking(move || {
                if let Ok(n) = ob.failure_notice_count() {
                    metrics::gauge!(m::PENDING_FAILURE_WEBHOOKS).set(n as f64);
                }
                ob.failure_notices(BATCH)
            })
            .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading the failure notices failed");
                    if !pause(&inner, IDLE_POLL).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = inner.shutdown.cancelled() => break,
                    () = inner.failure_wake.notified() => {}
                    () = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            let mut handled = Vec::new();
            let mut wait = None;
            for (seq, notice) in batch {
                let outcome = tokio::select! {
                    // Not acknowledged: sent again after the restart, under the same id.
                    () = inner.shutdown.cancelled() => break,
                    d = self.deliver(&notice) => d,
                };
                match outcome {
                    Delivery::Delivered => {
                        metrics::counter!(m::FAILURE_WEBHOOKS_TOTAL, "outcome" => "ok")
                            .increment(1);
                        tracing::debug!(call_id = %notice.call_id, "call.failed delivered");
                        failures = 0;
                        handled.push(seq);
                    }
                    Delivery::Rejected(status) => {
                        metrics::counter!(m::FAILURE_WEBHOOKS_TOTAL, "outcome" => "rejected")
                            .increment(1);
                        tracing::warn!(call_id = %notice.call_id, status, "call.failed refused by the receiver; given up");
                        failures = 0;
                        handled.push(seq);
                    }
                    Delivery::Retry { why, after } => {
                        metrics::counter!(m::FAILURE_WEBHOOKS_TOTAL, "outcome" => "retry")
                            .increment(1);
                        failures = failures.saturating_add(1);
                        let delay = self.backoff(failures, after);
                        tracing::warn!(call_id = %notice.call_id, reason = %why, retry_in = ?delay, "call.failed delivery failed");
                        wait = Some(delay);
                        break;
                    }
                }
            }
            let ob = inner.outbox.clone();
            if let Err(e) = blocking(move || ob.ack_failure_notices(&handled)).await {
                // Delivered but still queued: sent again (same id), the safe side.
                tracing::error!(error = %e, "acknowledging failure notices failed");
                wait = Some(wait.unwrap_or(IDLE_POLL));
            }
            if let Some(delay) = wait
                && !pause(&inner, delay).await
            {
                break;
            }
        }
        tracing::info!("call.failed webhooks stopped");
    }

    /// Exponential from 1 s, capped, with jitter in its upper half; the receiver's
    /// `Retry-After` wins, capped the same way (as the room-change webhooks).
    fn backoff(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let retry_after = retry_after.map(|ra| ra.max(FIRST_RETRY));
        Backoff::new(FIRST_RETRY, self.cfg.max_backoff)
            .with_jitter(Jitter::Equal)
            .delay_or_retry_after(failures, retry_after, &mut rand::rng())
    }

    async fn deliver(&self, notice: &FailureNotice) -> Delivery {
        let body = body(notice);
        let id = webhook_id(notice);
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut req = self
            .client
            .post(self.cfg.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string());
        if let Some(secret) = &self.cfg.secret {
            req = req.header("webhook-signature", secret.sign(&id, ts, body.as_bytes()));
        }
        match req.body(body).send().await {
            Err(e) => Delivery::Retry {
                why: format!("request failed: {e}"),
                after: None,
            },
            Ok(res) => {
                let status = res.status().as_u16();
                let after = res
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                match classify(status) {
                    StatusClass::Success => Delivery::Delivered,
                    class if class.is_retryable() => Delivery::Retry {
                        why: format!("HTTP {status}"),
                        after,
                    },
                    _ => Delivery::Rejected(status),
                }
            }
        }
    }
}

/// Sleeps `d` unless shutdown comes first; false on shutdown.
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        () = inner.shutdown.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::model::FailureReason;

    #[test]
    fn the_body_names_the_call_and_is_stable() {
        let notice = FailureNotice {
            call_id: Uuid::nil(),
            room: "r".into(),
            block_id: "b".into(),
            index_name: "search".into(),
            attempt: 2,
            integration: "api".into(),
            tries: 3,
            error: "HTTP 500".into(),
            reason: FailureReason::Http5xx,
            failed_at: 1_764_640_000_123,
        };
        let v: Value = serde_json::from_str(&body(&notice)).unwrap();
        assert_eq!(
            v,
            json!({
                "type": "call.failed",
                "timestamp": 1_764_640_000_123_u64,
                "data": {
                    "call_id": Uuid::nil().to_string(), "room": "r", "block_id": "b",
                    "index": "search", "attempt": 2, "integration": "api", "attempts": 3,
                    "error": "HTTP 500", "reason": "http_5xx",
                },
            })
        );
        assert_eq!(body(&notice), body(&notice.clone()));
        assert_eq!(
            webhook_id(&notice),
            format!("msg_call_failed_{}", Uuid::nil())
        );
    }
}
