//! Metric names the bridge records through the `metrics` facade (the binary installs the
//! recorder and serves `/metrics`). Prometheus conventions: `_total` for counters.

/// Counter: APICalls created, label `integration`.
pub const CALLS_CREATED_TOTAL: &str = "weaver_bridge_calls_created_total";
/// Counter: tries that finished, labels `integration`, `result` = completed|started|pending|retry|failed.
pub const TRIES_TOTAL: &str = "weaver_bridge_tries_total";
/// Counter: calls that reached a terminal state, labels `integration`, `status`.
pub const CALLS_FINISHED_TOTAL: &str = "weaver_bridge_calls_finished_total";
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
