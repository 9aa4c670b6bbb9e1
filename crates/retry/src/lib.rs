//! weaver-retry: when to try a failed delivery again.
//!
//! Owns the arithmetic every retrying part of Weaver shares: exponential backoff with jitter
//! ([`Backoff`]), the `Retry-After` header in both of its forms ([`parse_retry_after`]), and
//! which HTTP statuses are worth another try ([`classify`]). The bridge's APICall outbox, its
//! write-back queue and the room-change notifier all use it.
//!
//! Must not know: I/O, clocks, tokio, HTTP client types. Callers pass the current time and a
//! random source, and decide themselves what a delay means for their queue.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod backoff;
mod retry_after;
mod status;

pub use backoff::{Backoff, Jitter};
pub use retry_after::parse_retry_after;
pub use status::{StatusClass, classify};
