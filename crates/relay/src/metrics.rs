//! Metric names the relay records (via the `metrics` facade). The binary installs the recorder
//! and renders `/metrics`; nothing here does IO. Names follow Prometheus conventions: units in
//! the name, `_total` for counters.

/// Gauge: open WebSocket connections.
pub const CONNECTIONS: &str = "weaver_connections";
/// Gauge: WebSocket connections forwarded to the node owning their room (cluster mode).
pub const FORWARDED_CONNECTIONS: &str = "weaver_forwarded_connections";
/// Gauge: documents open over Hocuspocus sockets (each is also one room subscription; each
/// socket is one of `weaver_connections`).
pub const HOCUSPOCUS_DOCUMENTS: &str = "weaver_hocuspocus_documents";
/// Counter: accepted WebSocket connections.
pub const CONNECTIONS_TOTAL: &str = "weaver_connections_total";
/// Gauge: open change feeds (`GET /api/rooms/{room}/changes`).
pub const CHANGE_FEEDS: &str = "weaver_change_feeds";
/// Counter: change feeds ended, label `reason` = deleted|lagged|token_expired|shutdown|client_gone.
pub const CHANGE_FEED_ENDS_TOTAL: &str = "weaver_change_feed_ends_total";
/// Counter: update events sent on change feeds (the first full or diff state included).
pub const CHANGE_FEED_EVENTS_TOTAL: &str = "weaver_change_feed_events_total";
/// Gauge: rooms currently loaded in memory.
pub const ROOMS_LOADED: &str = "weaver_rooms_loaded";
/// Counter: room loads from storage.
pub const ROOM_LOADS_TOTAL: &str = "weaver_room_loads_total";
/// Counter: updates accepted (applied and persisted), label `origin` = client|http|internal.
pub const UPDATES_IN_TOTAL: &str = "weaver_updates_in_total";
/// Counter: bytes of accepted updates.
pub const UPDATE_BYTES_IN_TOTAL: &str = "weaver_update_bytes_in_total";
/// Counter: frames queued to connections.
pub const MESSAGES_OUT_TOTAL: &str = "weaver_messages_out_total";
/// Counter: bytes queued to connections.
pub const BYTES_OUT_TOTAL: &str = "weaver_bytes_out_total";
/// Histogram: seconds from a room's persist request to its durable acknowledgement.
pub const PERSIST_SECONDS: &str = "weaver_persist_seconds";
/// Histogram: requests folded into one group commit.
pub const GROUP_COMMIT_OPS: &str = "weaver_group_commit_ops";
/// Histogram: seconds one group commit (write transaction + fsync) took.
pub const GROUP_COMMIT_SECONDS: &str = "weaver_group_commit_seconds";
/// Counter: batches a room held to gather more updates (it was receiving a write storm).
pub const HELD_BATCHES_TOTAL: &str = "weaver_held_batches_total";
/// Counter: failed group commits.
pub const PERSIST_FAILURES_TOTAL: &str = "weaver_persist_failures_total";
/// 1 once a group commit failed (writes refused until a restart), else 0.
pub const STORE_FAILED: &str = "weaver_store_failed";
/// Counter: group commits made durable by a journal frame (fdatasync of `weaver.journal`).
pub const JOURNAL_FRAMES_TOTAL: &str = "weaver_journal_frames_total";
/// Counter: journal checkpoints (durable redb commits after which the journal starts over).
pub const JOURNAL_CHECKPOINTS_TOTAL: &str = "weaver_journal_checkpoints_total";
/// Counter: compactions committed.
pub const COMPACTIONS_TOTAL: &str = "weaver_compactions_total";
/// Counter: messages refused, label `reason`.
pub const REJECTED_MESSAGES_TOTAL: &str = "weaver_rejected_messages_total";
/// Counter: connections closed because their outbound queue was full.
pub const SLOW_CONSUMER_CLOSES_TOTAL: &str = "weaver_slow_consumer_closes_total";
/// Counter: stored or incoming updates that made yrs panic or could not be read back.
pub const POISON_UPDATES_TOTAL: &str = "weaver_poison_updates_total";

/// Histogram metric names (the binary gives them buckets).
pub const HISTOGRAMS: &[&str] = &[PERSIST_SECONDS, GROUP_COMMIT_OPS, GROUP_COMMIT_SECONDS];
