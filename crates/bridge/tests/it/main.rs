//! weaver-bridge's integration tests, one binary (`cargo test -p weaver-bridge --test it`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox;
