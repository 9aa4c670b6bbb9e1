//! Integration tests of weaver-cluster against a real nats-server (scripts/nats.sh installs
//! it; without it these tests fail with that hint).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod changes;
mod leader;
mod lease;
mod notify;
mod notify_faults;
mod placement;
mod registry;
mod room_log;
mod store_contract;
mod support;
mod transfer;
