//! weaver-cluster-outbox against a real nats-server (one per test binary, streams isolated by
//! unique names): the `OutboxStore` conformance suite (`weaver_bridge::outbox::conformance`), and what only the
//! JetStream engine has (`jetstream.rs`): fencing by a newer handle, reopening from a
//! snapshot and a tail, de-duplicated appends, a damaged log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod env;
mod jetstream;
