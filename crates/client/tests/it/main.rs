//! Integration tests of weaver-client against the real relay, in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hostile;
mod offline;
mod online;
mod support;
mod tokens;
