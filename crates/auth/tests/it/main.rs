//! weaver-auth's integration tests as one test binary (`cargo test -p weaver-auth --test it`;
//! one link instead of one per file): token properties, and the webhook verifier against the
//! fuzz seeds node:crypto signed (`fuzz/corpus/webhook_verify`).

// Tests may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod props;
mod webhook_seeds;
