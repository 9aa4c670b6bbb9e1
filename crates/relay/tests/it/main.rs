//! The relay's integration tests: the real server on 127.0.0.1:0 over a temp redb, driven with
//! raw y-websocket frames and plain HTTP.

// Tests may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod feed;
mod merge;
mod persist;
mod shutdown;
mod store_contract;
mod support;
mod sync;
mod versions;
