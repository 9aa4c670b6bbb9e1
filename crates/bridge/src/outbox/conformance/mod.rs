//! The `OutboxStore` contract as tests that know only the trait: unique triggers, leases and
//! fencing, rescue, retries to a kept failure, webhook dedupe and parking, the write-back
//! queue, room deletion and pruning.
//!
//! An engine runs the whole suite with `weaver_bridge::outbox_conformance_suite!(fixture)`,
//! where `fixture()` returns a fresh, empty store opened with [`policy`] (the redb engine's
//! `tests/it/outbox/redb.rs`, the JetStream engine's in `weaver-cluster-outbox`). Built with
//! the feature `conformance-tests` only.

// Test code: a breach of the contract is a panic with the assertion that caught it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{RetentionConfig, RetryPolicy};
use crate::model::{ApiCall, CallStatus, EventKind, FailureReason, NewCall};
use crate::outbox::{CallFilter, Completion, DocStatus, OutboxStore, Outcome, Phase, WebhookApply};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

mod calls;
mod lifecycle;
mod webhooks;

pub use calls::*;
pub use lifecycle::*;
pub use webhooks::*;

/// A store under test and whatever keeps it alive (a temp dir, a server).
#[allow(missing_debug_implementations)]
pub struct Fixture {
    pub ob: Arc<dyn OutboxStore>,
    pub _keep: Box<dyn Any>,
}

/// Generates one `#[test]` per conformance case for the engine built by `$fixture`.
#[macro_export]
macro_rules! outbox_conformance_suite {
    ($fixture:path) => {
        $crate::outbox_conformance_suite!(@cases $fixture;
            unique_trigger_gives_one_call,
            unique_trigger_within_one_batch,
            claim_lease_and_fencing,
            fencing_tokens_increase,
            stale_failure_changes_nothing,
            first_outcome_table,
            retries_with_backoff_then_kept_failure,
            rescue_out_of_tries_fails,
            concurrency_slots_respected,
            async_start_webhook_dedupe_and_parking,
            polling_phase_and_pending,
            make_due_requeues_only_unleased,
            terminal_is_absorbing,
            cancel_and_prune,
            forget_room_drops_writebacks_and_triggers,
            note_writeback_failed_keeps_status,
            writeback_results_are_bounded,
            list_filters_newest_first,
        );
        #[test]
        fn webhook_order_converges() {
            $crate::outbox::conformance::webhook_order_converges($fixture);
        }
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let f = $fixture();
                $crate::outbox::conformance::$case(&*f.ob);
            }
        )*
    };
}

/// The retry policy every fixture opens its store with.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_interval_ms: 100,
        max_interval_ms: 1_000,
        lease_ms: 5_000,
    }
}

pub fn spec(attempt: u32) -> NewCall {
    NewCall {
        room: "r".into(),
        block_id: "b".into(),
        index_name: "search".into(),
        attempt,
        integration: "api".into(),
        request_params: json!({"content": "hello"}),
    }
}

pub fn slots() -> HashMap<String, usize> {
    HashMap::from([("api".to_owned(), 10)])
}

pub fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn failed(error: &str, retryable: bool, retry_after_ms: Option<u64>) -> Outcome {
    Outcome::Failed {
        error: error.into(),
        retryable,
        retry_after_ms,
        reason: FailureReason::Http5xx,
    }
}

fn completed(data: serde_json::Value) -> Outcome {
    Outcome::Completed {
        external_id: None,
        data,
    }
}

fn recorded(r: Completion) -> ApiCall {
    match r {
        Completion::Recorded(c) => *c,
        other => panic!("expected Recorded, got {other:?}"),
    }
}

fn event_types(ob: &dyn OutboxStore, call: &ApiCall) -> Vec<&'static str> {
    ob.events(&call.id)
        .unwrap()
        .iter()
        .map(|e| e.event.kind.type_name())
        .collect()
}

fn writeback_statuses(ob: &dyn OutboxStore) -> Vec<DocStatus> {
    ob.writebacks(100)
        .unwrap()
        .iter()
        .map(|(_, w)| w.status)
        .collect()
}

/// A created and claimed call (first try, token of the claim).
fn claimed(ob: &dyn OutboxStore, attempt: u32, now: u64) -> (ApiCall, u64) {
    let (call, _) = ob.create_call(spec(attempt), now).unwrap();
    let c = ob.claim_due(now, &slots(), 10).unwrap().pop().unwrap();
    assert_eq!(c.call.id, call.id);
    (c.call, c.token)
}
