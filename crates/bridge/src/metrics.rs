//! Metric names the bridge records through the `metrics` facade (the binary installs the
//! recorder, gives the histograms their buckets from [`HISTOGRAMS`] and serves `/metrics`),
//! their descriptions ([`describe`], once at start), and [`Finished`], what the outbox reports
//! of a call that reached a terminal state. Nothing here does IO. Prometheus conventions: units
//! in the name, `_total` for counters.
//!
//! Label values are bounded: `integration` comes from the configuration file (plus `local`),
//! never from a document or a request; `outcome`, `result`, `reason` and `status` are closed
//! sets. Room names never become labels.

use crate::model::{ApiCall, CallStatus, FailureReason};

/// Counter: APICalls created, label `integration`.
pub const CALLS_CREATED_TOTAL: &str = "weaver_bridge_calls_created_total";
/// Counter: tries that finished, labels `integration`, `result` = completed|started|pending|retry|failed.
pub const TRIES_TOTAL: &str = "weaver_bridge_tries_total";
/// Counter: calls a worker's outcome made terminal, labels `integration`, `status`.
pub const CALLS_FINISHED_TOTAL: &str = "weaver_bridge_calls_finished_total";
/// Counter: calls that reached a terminal state by any path (a worker's outcome, a webhook, a
/// lease rescue, a cancellation), labels `integration`, `outcome` = done|failed|cancelled.
pub const CALLS_TOTAL: &str = "weaver_bridge_calls_total";
/// Counter: calls that failed (gave up), labels `integration`, `reason` (a [`FailureReason`]:
/// why the last try failed). Sums to `CALLS_TOTAL{outcome="failed"}`.
pub const CALL_FAILURES_TOTAL: &str = "weaver_bridge_call_failures_total";
/// Counter: retries scheduled after a retryable failed try, labels `integration`, `reason`.
pub const RETRIES_TOTAL: &str = "weaver_bridge_retries_total";
/// Histogram: seconds from a call's creation to its terminal state, labels `integration`,
/// `outcome`; one observation per `CALLS_TOTAL` increment.
pub const CALL_DURATION_SECONDS: &str = "weaver_bridge_call_duration_seconds";
/// Histogram: seconds one try spent in its integration (a submit or a status poll), label
/// `integration`.
pub const TRY_DURATION_SECONDS: &str = "weaver_bridge_attempt_duration_seconds";
/// Counter: leases rescued after expiry or a restart.
pub const LEASES_RESCUED_TOTAL: &str = "weaver_bridge_leases_rescued_total";
/// Counter: inbound webhooks, labels `integration`, `result` = applied|duplicate|parked|rejected.
pub const WEBHOOKS_TOTAL: &str = "weaver_bridge_webhooks_total";
/// Counter: status records written back into documents, label `status`.
pub const WRITEBACKS_TOTAL: &str = "weaver_bridge_writebacks_total";
/// Gauge: calls waiting in the ready queue (due now or scheduled for a retry/poll).
pub const READY_CALLS: &str = "weaver_bridge_ready_calls";
/// Gauge: calls currently leased by a worker.
pub const LEASED_CALLS: &str = "weaver_bridge_leased_calls";
/// Gauge: outcomes waiting to be written back into documents.
pub const PENDING_WRITEBACKS: &str = "weaver_bridge_pending_writebacks";
/// Counter: `call.failed` webhook deliveries, label `outcome` = ok|retry|rejected.
pub const FAILURE_WEBHOOKS_TOTAL: &str = "weaver_bridge_failure_webhooks_total";
/// Gauge: `call.failed` webhooks queued and not delivered yet.
pub const PENDING_FAILURE_WEBHOOKS: &str = "weaver_bridge_pending_failure_webhooks";

/// Histogram names with their buckets (seconds). A call spans retries with backoff and
/// asynchronous jobs (minutes to hours); a try is one HTTP exchange (bounded by the lease).
pub const HISTOGRAMS: &[(&str, &[f64])] = &[
    (
        CALL_DURATION_SECONDS,
        &[
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            21600.0,
        ],
    ),
    (
        TRY_DURATION_SECONDS,
        &[
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ],
    ),
];

/// Describes the bridge's metrics to the installed recorder (the `# HELP` lines). Called once
/// when the bridge starts.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(CALLS_CREATED_TOTAL, "APICalls created");
    describe_counter!(TRIES_TOTAL, "Tries that finished, by result");
    describe_counter!(
        CALLS_FINISHED_TOTAL,
        "Calls a worker's outcome made terminal, by status"
    );
    describe_counter!(
        CALLS_TOTAL,
        "Calls that reached a terminal state, by outcome (done, failed, cancelled)"
    );
    describe_counter!(
        CALL_FAILURES_TOTAL,
        "Calls that failed (gave up), by the reason of their last try"
    );
    describe_counter!(
        RETRIES_TOTAL,
        "Retries scheduled after a retryable failed try, by reason"
    );
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "From a call's creation to its terminal state"
    );
    describe_histogram!(
        TRY_DURATION_SECONDS,
        Unit::Seconds,
        "One try (submit or status poll) in its integration"
    );
    describe_counter!(
        LEASES_RESCUED_TOTAL,
        "Leases rescued after expiry or a restart"
    );
    describe_counter!(WEBHOOKS_TOTAL, "Inbound webhooks, by result");
    describe_counter!(
        WRITEBACKS_TOTAL,
        "Status records written back into documents"
    );
    describe_gauge!(READY_CALLS, "Calls in the ready queue (due or scheduled)");
    describe_gauge!(LEASED_CALLS, "Calls leased by a worker");
    describe_gauge!(PENDING_WRITEBACKS, "Outcomes waiting to be written back");
    describe_counter!(
        FAILURE_WEBHOOKS_TOTAL,
        "call.failed webhook deliveries, by outcome (ok, retry, rejected)"
    );
    describe_gauge!(
        PENDING_FAILURE_WEBHOOKS,
        "call.failed webhooks queued and not delivered yet"
    );
}

/// A call that became terminal, as its metrics need it (taken inside the transaction,
/// recorded after the commit).
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    integration: String,
    status: CallStatus,
    reason: Option<FailureReason>,
    seconds: f64,
}

impl Finished {
    /// What `call`, terminal now, contributes to the metrics.
    pub fn of(call: &ApiCall) -> Self {
        let end = call.completed_at.unwrap_or(call.created_at);
        Self {
            integration: call.integration.clone(),
            status: call.status,
            reason: call.failure_reason,
            seconds: end.saturating_sub(call.created_at) as f64 / 1000.0,
        }
    }

    /// The `outcome` label: done, failed or cancelled.
    pub fn outcome(&self) -> &'static str {
        match self.status {
            CallStatus::Failed => "failed",
            CallStatus::Cancelled => "cancelled",
            _ => "done",
        }
    }

    /// Records the call's terminal metrics.
    pub fn record(&self) {
        let outcome = self.outcome();
        metrics::counter!(CALLS_TOTAL, "integration" => self.integration.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(CALL_DURATION_SECONDS, "integration" => self.integration.clone(), "outcome" => outcome)
            .record(self.seconds);
        if self.status == CallStatus::Failed {
            let reason = self.reason.unwrap_or_default().as_str();
            metrics::counter!(CALL_FAILURES_TOTAL, "integration" => self.integration.clone(), "reason" => reason)
                .increment(1);
        }
    }
}
