//! weaver-notify's integration tests as one test binary (`cargo test -p weaver-notify --test
//! it`), laid out as every crate's: room-change webhooks through a real relay and receiver.

// Tests may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod notify;
