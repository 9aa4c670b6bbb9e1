//! weaver-protocol's integration tests as one test binary (`cargo test -p weaver-protocol
//! --test it`; one link instead of one per file). Inputs stay beside this folder:
//! `tests/data` (fuzz regressions, divergent Yjs output), `tests/js` (the corpus generator),
//! and `fuzz/corpus` at the repository root; a property test's regressions sit next to its
//! file (`yrs_generated.proptest-regressions`).
//!
//! One suite stays a binary of its own: `tests/yrs_subdoc_leak.rs` measures the process's RSS,
//! which the other tests of this binary, run in parallel threads, would move meanwhile.

// Tests may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod corpus;
mod hostile;
mod inputs;
mod no_panic;
mod yrs_generated;
mod yrs_integration_panics;
