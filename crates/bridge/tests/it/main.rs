//! weaver-bridge's integration tests as one test binary (`cargo test -p weaver-bridge --test it`;
//! one link instead of one per file). `common` holds the shared support: a fake external API over
//! real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bridge_e2e;
mod common;
mod outbox;
