//! weaver-doc's integration tests as one test binary (`cargo test -p weaver-doc --test it`;
//! one link instead of one per file). Fixtures stay beside this folder: `tests/fixtures` (yjs
//! regression documents), `tests/js` (the Node scripts of the interop tests); a property
//! test's regressions sit next to its file (`convergence.proptest-regressions`).

// Tests may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod bounded_blocks;
mod convergence;
mod interop;
mod pending_regression;
