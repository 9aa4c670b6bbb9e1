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

pub fn unique_trigger_gives_one_call(ob: &dyn OutboxStore) {
    let (a, created_a) = ob.create_call(spec(1), 1000).unwrap();
    let (b, created_b) = ob.create_call(spec(1), 1001).unwrap();
    assert!(created_a && !created_b);
    assert_eq!(a.id, b.id);
    let (c, created_c) = ob.create_call(spec(2), 1002).unwrap();
    assert!(created_c);
    assert_ne!(a.id, c.id);
    assert_eq!(a.idempotency_key, format!("weaver-{}-1", a.id));
    assert_eq!(
        ob.find_by_trigger("r", "b", "search", 1)
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    assert!(ob.find_by_trigger("r", "b", "search", 3).unwrap().is_none());
    // The second create wrote nothing: one `created` event, one queue entry.
    assert_eq!(event_types(ob, &a), ["created"]);
    assert_eq!(ob.queue_sizes().unwrap(), (2, 0, 0));
}

pub fn unique_trigger_within_one_batch(ob: &dyn OutboxStore) {
    let out = ob.create_calls(vec![spec(1), spec(1), spec(2)], 5).unwrap();
    let created: Vec<bool> = out.iter().map(|(_, c)| *c).collect();
    assert_eq!(created, [true, false, true]);
    assert_eq!(out[0].0.id, out[1].0.id);
    assert_eq!(ob.list(&Default::default()).unwrap().len(), 2);
}

pub fn claim_lease_and_fencing(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 1000).unwrap();
    // Not due before its time, due at it.
    assert!(ob.claim_due(999, &slots(), 10).unwrap().is_empty());
    let claims = ob.claim_due(1000, &slots(), 10).unwrap();
    assert_eq!(claims.len(), 1);
    let first = &claims[0];
    assert_eq!(first.phase, Phase::Submit);
    assert_eq!(first.call.status, CallStatus::Processing);
    assert_eq!(ob.next_lease_expiry().unwrap(), Some(1000 + 5_000));
    // Claimed calls are not claimed twice.
    assert!(ob.claim_due(2000, &slots(), 10).unwrap().is_empty());
    // The lease expires; the rescuer re-queues it; a second worker claims with a new token.
    let rescued = ob.rescue_expired(1000 + 5_001, false, &mut rng()).unwrap();
    assert_eq!(rescued, vec![call.id]);
    let second = ob.claim_due(100_000, &slots(), 10).unwrap().pop().unwrap();
    assert!(second.token > first.token);
    assert_eq!(second.call.tries, 2);
    // The first (stale) worker reports a failure: fenced, not recorded.
    let r = ob
        .complete(
            &call.id,
            Some(first.token),
            failed("x", true, None),
            100_001,
            &mut rng(),
        )
        .unwrap();
    assert_eq!(r, Completion::Fenced);
    // The current worker completes.
    let c = recorded(
        ob.complete(
            &call.id,
            Some(second.token),
            completed(json!({"n": 1})),
            100_002,
            &mut rng(),
        )
        .unwrap(),
    );
    assert_eq!(c.status, CallStatus::Completed);
    assert!(
        c.external_id.is_some(),
        "sync completion still gets an initialized external id"
    );
    // A late success of the stale worker changes nothing.
    let r = ob
        .complete(
            &call.id,
            Some(first.token),
            completed(json!({"n": 2})),
            100_003,
            &mut rng(),
        )
        .unwrap();
    assert_eq!(r, Completion::Ignored);
    let c = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(c.response_data, Some(json!({"n": 1})));
    assert_eq!(
        event_types(ob, &call),
        [
            "created",
            "claimed",
            "lease_expired",
            "claimed",
            "late_result_ignored",
            "initialized",
            "processing",
            "completed",
            "late_result_ignored"
        ]
    );
    // Write-backs: processing once (first claim), done once.
    let wbs = ob.writebacks(100).unwrap();
    assert_eq!(
        writeback_statuses(ob),
        [DocStatus::Processing, DocStatus::Done]
    );
    assert_eq!(wbs[1].1.result, Some(json!({"n": 1})));
    ob.ack_writebacks(&wbs.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        .unwrap();
    assert!(ob.writebacks(100).unwrap().is_empty());
    // Terminal: out of the queue and unleased.
    assert_eq!(ob.queue_sizes().unwrap(), (0, 0, 0));
}

pub fn fencing_tokens_increase(ob: &dyn OutboxStore) {
    let mut last = 0;
    for attempt in 1..=4 {
        let (_, token) = claimed(ob, attempt, 0);
        assert!(token > last, "token {token} after {last}");
        last = token;
    }
}

pub fn stale_failure_changes_nothing(ob: &dyn OutboxStore) {
    let (call, first) = claimed(ob, 1, 0);
    ob.rescue_expired(0, true, &mut rng()).unwrap();
    let second = ob.claim_due(10, &slots(), 10).unwrap().pop().unwrap();
    let before = ob.get(&call.id).unwrap().unwrap();
    let queues = ob.queue_sizes().unwrap();
    for outcome in [
        failed("x", true, None),
        failed("x", false, None),
        Outcome::Pending { poll_after_ms: 1 },
        Outcome::Started {
            external_id: "e".into(),
            poll_after_ms: Some(1),
        },
    ] {
        let r = ob
            .complete(&call.id, Some(first), outcome.clone(), 20, &mut rng())
            .unwrap();
        assert_eq!(r, Completion::Fenced, "{outcome:?}");
        let after = ob.get(&call.id).unwrap().unwrap();
        assert_eq!(
            (
                after.status,
                after.tries,
                after.next_try_at,
                &after.external_id
            ),
            (
                before.status,
                before.tries,
                before.next_try_at,
                &before.external_id
            ),
            "{outcome:?}"
        );
        assert_eq!(ob.queue_sizes().unwrap(), queues, "{outcome:?}");
    }
    // The holder of the lease still decides the call.
    let c = recorded(
        ob.complete(
            &call.id,
            Some(second.token),
            completed(json!(1)),
            30,
            &mut rng(),
        )
        .unwrap(),
    );
    assert_eq!(c.status, CallStatus::Completed);
}

/// The first outcome of a freshly claimed call (try 1 of 3, claimed at 0, reported at 50).
pub fn first_outcome_table(ob: &dyn OutboxStore) {
    struct Case {
        name: &'static str,
        stale: bool,
        outcome: Outcome,
        status: CallStatus,
        next_try_at: Option<u64>,
        error: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "retry-after is honoured",
            stale: false,
            outcome: failed("429", true, Some(700)),
            status: CallStatus::Processing,
            next_try_at: Some(750),
            error: Some("429"),
        },
        Case {
            name: "retry-after is capped by the policy",
            stale: false,
            outcome: failed("429", true, Some(60_000)),
            status: CallStatus::Processing,
            next_try_at: Some(1_050),
            error: Some("429"),
        },
        Case {
            name: "non-retryable fails once",
            stale: false,
            outcome: failed("HTTP 422", false, None),
            status: CallStatus::Failed,
            next_try_at: None,
            error: Some("HTTP 422"),
        },
        Case {
            name: "started without polling waits for a webhook",
            stale: false,
            outcome: Outcome::Started {
                external_id: "ext".into(),
                poll_after_ms: None,
            },
            status: CallStatus::Processing,
            next_try_at: None,
            error: None,
        },
        Case {
            name: "started with polling is due then",
            stale: false,
            outcome: Outcome::Started {
                external_id: "ext2".into(),
                poll_after_ms: Some(30),
            },
            status: CallStatus::Processing,
            next_try_at: Some(80),
            error: None,
        },
        Case {
            name: "a stale success is accepted (same idempotency key)",
            stale: true,
            outcome: Outcome::Completed {
                external_id: Some("e1".into()),
                data: json!({}),
            },
            status: CallStatus::Completed,
            next_try_at: None,
            error: None,
        },
    ];
    for (attempt, case) in (1..).zip(cases) {
        let (call, token) = claimed(ob, attempt, 0);
        if case.stale {
            ob.rescue_expired(0, true, &mut rng()).unwrap();
            let again = ob.claim_due(10, &slots(), 10).unwrap().pop().unwrap();
            assert!(again.token > token);
        }
        let rec = recorded(
            ob.complete(&call.id, Some(token), case.outcome, 50, &mut rng())
                .unwrap(),
        );
        let name = case.name;
        assert_eq!(rec.status, case.status, "{name}");
        assert_eq!(rec.next_try_at, case.next_try_at, "{name}");
        assert_eq!(rec.error.as_deref(), case.error, "{name}");
        assert_eq!(rec.tries, if case.stale { 2 } else { 1 }, "{name}");
        assert_eq!(
            rec.completed_at.is_some(),
            rec.status.is_terminal(),
            "{name}"
        );
    }
}

pub fn retries_with_backoff_then_kept_failure(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let mut now = 0;
    for try_no in 1..=3u32 {
        let c = ob.claim_due(now, &slots(), 10).unwrap().pop().expect("due");
        assert_eq!(c.call.tries, try_no);
        let rec = recorded(
            ob.complete(
                &call.id,
                Some(c.token),
                failed(&format!("HTTP 503 #{try_no}"), true, None),
                now,
                &mut rng(),
            )
            .unwrap(),
        );
        if try_no < 3 {
            assert_eq!(rec.status, CallStatus::Processing);
            let next = rec.next_try_at.unwrap();
            // Full jitter within the policy's cap.
            let cap = (100u64 << (try_no - 1)).min(1_000);
            assert!(
                next >= now && next <= now + cap,
                "try {try_no}: next {next} now {now} cap {cap}"
            );
            assert!(
                ob.claim_due(next.saturating_sub(1).max(now), &slots(), 10)
                    .unwrap()
                    .is_empty()
                    || next == now
            );
            now = next;
        } else {
            assert_eq!(rec.status, CallStatus::Failed);
            assert!(
                rec.error
                    .as_deref()
                    .unwrap()
                    .contains("gave up after 3 tries")
            );
            assert!(rec.completed_at.is_some());
        }
    }
    // Nothing more is due, the failure is kept and visible.
    assert!(ob.claim_due(u64::MAX / 2, &slots(), 10).unwrap().is_empty());
    assert_eq!(
        ob.get(&call.id).unwrap().unwrap().status,
        CallStatus::Failed
    );
    assert_eq!(writeback_statuses(ob).last(), Some(&DocStatus::Error));
}

pub fn rescue_out_of_tries_fails(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    for _ in 0..3 {
        ob.claim_due(u64::MAX / 4, &slots(), 10)
            .unwrap()
            .pop()
            .unwrap();
        ob.rescue_expired(0, true, &mut rng()).unwrap();
    }
    let c = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(c.status, CallStatus::Failed);
    assert!(
        c.error
            .unwrap()
            .contains("no result within the lease (gave up after 3 tries)")
    );
    assert_eq!(ob.queue_sizes().unwrap().0, 0);
}

pub fn concurrency_slots_respected(ob: &dyn OutboxStore) {
    for a in 1..=5 {
        ob.create_call(spec(a), 0).unwrap();
    }
    let claims = ob
        .claim_due(0, &HashMap::from([("api".to_owned(), 2)]), 10)
        .unwrap();
    assert_eq!(claims.len(), 2);
    let claims = ob
        .claim_due(0, &HashMap::from([("api".to_owned(), 0)]), 10)
        .unwrap();
    assert!(claims.is_empty());
    // An integration without an entry gets one slot; `max` bounds the batch.
    assert_eq!(ob.claim_due(0, &HashMap::new(), 10).unwrap().len(), 1);
    assert_eq!(ob.claim_due(0, &slots(), 1).unwrap().len(), 1);
}

pub fn async_start_webhook_dedupe_and_parking(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    // The provider calls back *before* our 202 is recorded: parked.
    let done = EventKind::Completed {
        data: json!({"chunks": 3}),
    };
    assert_eq!(
        ob.apply_webhook("api", "wh_1", "ext-1", done.clone(), 5)
            .unwrap(),
        WebhookApply::Parked
    );
    // A redelivery of the same webhook is a duplicate even while parked.
    assert_eq!(
        ob.apply_webhook("api", "wh_1", "ext-1", done.clone(), 6)
            .unwrap(),
        WebhookApply::Duplicate
    );
    // Now the 202 lands: `initialized` links ext-1 and the parked completion applies.
    let rec = recorded(
        ob.complete(
            &call.id,
            Some(c.token),
            Outcome::Started {
                external_id: "ext-1".into(),
                poll_after_ms: None,
            },
            7,
            &mut rng(),
        )
        .unwrap(),
    );
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.response_data, Some(json!({"chunks": 3})));
    assert_eq!(rec.external_id.as_deref(), Some("ext-1"));
    // A later different webhook for the finished call changes nothing.
    let late = EventKind::Failed {
        error: "late".into(),
        retryable: false,
        reason: FailureReason::JobFailed,
    };
    let WebhookApply::Applied(after) = ob.apply_webhook("api", "wh_2", "ext-1", late, 8).unwrap()
    else {
        panic!()
    };
    assert_eq!(after.status, CallStatus::Completed);
    // Exactly one done write-back.
    let dones = writeback_statuses(ob)
        .into_iter()
        .filter(|s| *s == DocStatus::Done)
        .count();
    assert_eq!(dones, 1);
}

pub fn polling_phase_and_pending(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    ob.complete(
        &call.id,
        Some(c.token),
        Outcome::Started {
            external_id: "j1".into(),
            poll_after_ms: Some(100),
        },
        10,
        &mut rng(),
    )
    .unwrap();
    assert!(ob.claim_due(109, &slots(), 10).unwrap().is_empty());
    let p = ob.claim_due(110, &slots(), 10).unwrap().pop().unwrap();
    assert_eq!(p.phase, Phase::Poll);
    assert_eq!(p.call.tries, 1, "polls do not consume tries");
    ob.complete(
        &call.id,
        Some(p.token),
        Outcome::Pending { poll_after_ms: 100 },
        120,
        &mut rng(),
    )
    .unwrap();
    let p = ob.claim_due(220, &slots(), 10).unwrap().pop().unwrap();
    // A failed poll counts as a try.
    let rec = recorded(
        ob.complete(
            &call.id,
            Some(p.token),
            failed("502", true, Some(10)),
            225,
            &mut rng(),
        )
        .unwrap(),
    );
    assert_eq!((rec.tries, rec.next_try_at), (2, Some(235)));
    let p = ob.claim_due(235, &slots(), 10).unwrap().pop().unwrap();
    let r = ob
        .complete(
            &call.id,
            Some(p.token),
            completed(json!({"ok": 1})),
            240,
            &mut rng(),
        )
        .unwrap();
    assert!(
        matches!(r, Completion::Recorded(ref c) if c.status == CallStatus::Completed && c.external_id.as_deref() == Some("j1"))
    );
}

pub fn make_due_requeues_only_unleased(ob: &dyn OutboxStore) {
    let (call, token) = claimed(ob, 1, 0);
    ob.complete(
        &call.id,
        Some(token),
        Outcome::Started {
            external_id: "j".into(),
            poll_after_ms: None,
        },
        1,
        &mut rng(),
    )
    .unwrap();
    assert_eq!(ob.next_due().unwrap(), None, "waits for a webhook");
    assert!(ob.make_due(&call.id, 5).unwrap());
    assert_eq!(ob.next_due().unwrap(), Some(5));
    // Leased: stays leased, not queued a second time.
    ob.claim_due(5, &slots(), 10).unwrap().pop().unwrap();
    assert!(ob.make_due(&call.id, 6).unwrap());
    assert_eq!(ob.queue_sizes().unwrap(), (0, 1, 1));
    assert!(!ob.make_due(&uuid::Uuid::now_v7(), 7).unwrap());
    ob.cancel(&call.id, "gone", 8).unwrap();
    assert!(!ob.make_due(&call.id, 9).unwrap(), "terminal");
}

pub fn terminal_is_absorbing(ob: &dyn OutboxStore) {
    let (call, token) = claimed(ob, 1, 0);
    recorded(
        ob.complete(
            &call.id,
            Some(token),
            failed("no", false, None),
            1,
            &mut rng(),
        )
        .unwrap(),
    );
    let before = ob.get(&call.id).unwrap().unwrap();
    let wbs = ob.writebacks(100).unwrap().len();
    for outcome in [completed(json!(1)), failed("again", true, None)] {
        for token in [Some(token), None] {
            let r = ob
                .complete(&call.id, token, outcome.clone(), 2, &mut rng())
                .unwrap();
            assert_eq!(r, Completion::Ignored);
        }
    }
    assert!(!ob.cancel(&call.id, "late", 3).unwrap());
    assert!(ob.rescue_expired(0, true, &mut rng()).unwrap().is_empty());
    let after = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(
        (after.status, &after.error, after.completed_at, after.tries),
        (
            before.status,
            &before.error,
            before.completed_at,
            before.tries
        )
    );
    assert_eq!(
        ob.writebacks(100).unwrap().len(),
        wbs,
        "one write-back per terminal state"
    );
    assert!(
        ob.complete(
            &uuid::Uuid::now_v7(),
            None,
            completed(json!(1)),
            4,
            &mut rng()
        )
        .unwrap()
            == Completion::Ignored
    );
}

pub fn cancel_and_prune(ob: &dyn OutboxStore) {
    let (a, _) = ob.create_call(spec(1), 0).unwrap();
    assert!(ob.cancel(&a.id, "entry removed", 1).unwrap());
    assert!(!ob.cancel(&a.id, "again", 2).unwrap());
    assert!(
        ob.claim_due(10, &slots(), 10).unwrap().is_empty(),
        "cancelled calls leave the queue"
    );
    let (b, _) = ob.create_call(spec(2), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    ob.complete(
        &b.id,
        Some(c.token),
        failed("bad", false, None),
        5,
        &mut rng(),
    )
    .unwrap();
    let ret = RetentionConfig {
        completed_ms: 100,
        failed_ms: 1_000,
        webhook_ids_ms: 100,
        prune_interval_ms: 1000,
    };
    // Failed calls are kept while a write-back is pending, and longer than completed ones.
    assert_eq!(ob.prune(2_000, &ret).unwrap(), 1, "only the cancelled one");
    assert!(ob.get(&a.id).unwrap().is_none());
    assert!(ob.get(&b.id).unwrap().is_some());
    ob.ack_writebacks(
        &ob.writebacks(10)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(ob.prune(500, &ret).unwrap(), 0);
    assert!(ob.get(&b.id).unwrap().is_some());
    assert_eq!(ob.prune(2_000, &ret).unwrap(), 1);
    assert!(ob.get(&b.id).unwrap().is_none());
    assert!(ob.events(&b.id).unwrap().is_empty());
    assert!(ob.find_by_trigger("r", "b", "search", 2).unwrap().is_none());
    // Webhook ids are forgotten after their retention: a redelivery is parked again.
    let kind = EventKind::Processing;
    assert_eq!(
        ob.apply_webhook("api", "w", "x", kind.clone(), 3_000)
            .unwrap(),
        WebhookApply::Parked
    );
    assert_eq!(
        ob.apply_webhook("api", "w", "x", kind.clone(), 3_001)
            .unwrap(),
        WebhookApply::Duplicate
    );
    ob.prune(3_200, &ret).unwrap();
    assert_eq!(
        ob.apply_webhook("api", "w", "x", kind, 3_300).unwrap(),
        WebhookApply::Parked
    );
}

pub fn forget_room_drops_writebacks_and_triggers(ob: &dyn OutboxStore) {
    let (call, token) = claimed(ob, 1, 0);
    let mut other = spec(1);
    other.room = "r2".into();
    let (kept, _) = ob.create_call(other, 0).unwrap();
    ob.claim_due(0, &slots(), 10).unwrap();
    assert!(ob.cancel(&call.id, "room deleted", 1).unwrap());
    let dropped = ob.forget_room("r").unwrap();
    assert_eq!(dropped.len(), 1);
    assert!(dropped.iter().all(|w| w.room == "r"));
    assert!(
        ob.writebacks(10)
            .unwrap()
            .iter()
            .all(|(_, w)| w.room == "r2")
    );
    // Content written to the room later is a new room: the same trigger gets a new call.
    let (again, created) = ob.create_call(spec(1), 2).unwrap();
    assert!(created);
    assert_ne!(again.id, call.id);
    assert_eq!(
        ob.find_by_trigger("r2", "b", "search", 1)
            .unwrap()
            .unwrap()
            .id,
        kept.id
    );
    // The old call stays fenced off from the new one.
    let r = ob
        .complete(&call.id, Some(token), completed(json!(1)), 3, &mut rng())
        .unwrap();
    assert_eq!(r, Completion::Ignored);
}

pub fn note_writeback_failed_keeps_status(ob: &dyn OutboxStore) {
    let (call, token) = claimed(ob, 1, 0);
    recorded(
        ob.complete(&call.id, Some(token), completed(json!(1)), 1, &mut rng())
            .unwrap(),
    );
    assert!(
        ob.note_writeback_failed(&call.id, "room refused", 2)
            .unwrap()
    );
    assert!(
        !ob.note_writeback_failed(&uuid::Uuid::now_v7(), "x", 2)
            .unwrap()
    );
    let c = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(c.status, CallStatus::Completed);
    assert_eq!(event_types(ob, &call).last(), Some(&"writeback_failed"));
    // A write-back not tied to an outcome queues behind the others.
    let mut wb = ob.writebacks(10).unwrap().pop().unwrap().1;
    wb.status = DocStatus::NotStarted;
    ob.push_writeback(&wb).unwrap();
    let seqs: Vec<u64> = ob.writebacks(10).unwrap().iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(writeback_statuses(ob).last(), Some(&DocStatus::NotStarted));
}

pub fn writeback_results_are_bounded(ob: &dyn OutboxStore) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    ob.complete(&call.id, Some(c.token), completed(deep), 1, &mut rng())
        .unwrap();
    let (_, wb) = ob.writebacks(10).unwrap().pop().unwrap();
    assert_eq!(wb.result.unwrap()["truncated"], true);
    let (call2, _) = ob.create_call(spec(2), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let big = "e".repeat(100_000);
    ob.complete(
        &call2.id,
        Some(c.token),
        failed(&big, false, None),
        1,
        &mut rng(),
    )
    .unwrap();
    let (_, wb) = ob.writebacks(10).unwrap().pop().unwrap();
    assert_eq!(wb.error.unwrap().len(), 2000);
    assert_eq!(
        ob.get(&call2.id).unwrap().unwrap().error.unwrap().len(),
        100_000,
        "the APICall keeps the full text"
    );
}

pub fn list_filters_newest_first(ob: &dyn OutboxStore) {
    let mk = |room: &str, block: &str, attempt: u32| NewCall {
        room: room.into(),
        block_id: block.into(),
        ..spec(attempt)
    };
    let specs = vec![
        mk("r", "b1", 1),
        mk("r", "b2", 1),
        mk("r2", "b1", 1),
        mk("r", "b1", 2),
    ];
    let mut ids = Vec::new();
    for s in specs {
        ids.push(ob.create_call(s, 0).unwrap().0.id);
    }
    ob.cancel(&ids[1], "gone", 1).unwrap();
    let list = |room: Option<&str>, block: Option<&str>, status, limit| {
        ob.list(&CallFilter {
            room: room.map(Into::into),
            block_id: block.map(Into::into),
            status,
            limit,
        })
        .unwrap()
        .into_iter()
        .map(|c| ids.iter().position(|i| *i == c.id).unwrap())
        .collect::<Vec<_>>()
    };
    /// room, block, status, limit → indexes of `ids` listed.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<CallStatus>,
        Option<usize>,
        Vec<usize>,
    );
    let cases: [Case; 7] = [
        (None, None, None, None, vec![3, 2, 1, 0]),
        (None, None, None, Some(2), vec![3, 2]),
        (Some("r"), None, None, None, vec![3, 1, 0]),
        (Some("r"), Some("b1"), None, None, vec![3, 0]),
        (Some("r"), None, Some(CallStatus::Cancelled), None, vec![1]),
        (
            None,
            Some("b1"),
            Some(CallStatus::Pending),
            Some(5),
            vec![3, 2, 0],
        ),
        (Some("nobody"), None, None, None, vec![]),
    ];
    for (room, block, status, limit, want) in cases {
        assert_eq!(
            list(room, block, status, limit),
            want,
            "{room:?} {block:?} {status:?} {limit:?}"
        );
    }
}

/// One delivery of the provider's webhooks (processing, completed), each sent 1–3 times, in
/// any order relative to each other and to the 202 being recorded: the call ends completed
/// with the data, the `completed` event is applied once, and one `done` write-back is queued.
fn webhook_order_run(ob: &dyn OutboxStore, order: &[(usize, bool)]) {
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let claim = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let hooks = [
        ("wh_p", EventKind::Processing),
        (
            "wh_c",
            EventKind::Completed {
                data: json!({"chunks": 7}),
            },
        ),
    ];
    let started = Outcome::Started {
        external_id: "ext".into(),
        poll_after_ms: None,
    };
    let mut is_started = false;
    for (i, (which, start_first)) in order.iter().enumerate() {
        if *start_first && !is_started {
            ob.complete(
                &call.id,
                Some(claim.token),
                started.clone(),
                10 + i as u64,
                &mut rng(),
            )
            .unwrap();
            is_started = true;
        }
        let (id, kind) = &hooks[*which % 2];
        ob.apply_webhook("api", id, "ext", kind.clone(), 20 + i as u64)
            .unwrap();
    }
    if !is_started {
        ob.complete(&call.id, Some(claim.token), started, 100, &mut rng())
            .unwrap();
    }
    let c = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(c.status, CallStatus::Completed);
    assert_eq!(c.response_data, Some(json!({"chunks": 7})));
    let completed = event_types(ob, &call)
        .into_iter()
        .filter(|t| *t == "completed")
        .count();
    assert_eq!(completed, 1);
    let dones = writeback_statuses(ob)
        .into_iter()
        .filter(|s| *s == DocStatus::Done)
        .count();
    assert_eq!(dones, 1);
}

/// `webhook_order_run` over generated orders, each on a fresh store from `fixture`.
pub fn webhook_order_converges(fixture: fn() -> Fixture) {
    let orders = proptest::collection::vec((0usize..2, any::<bool>()), 1..8)
        .prop_filter("completed must be delivered", |v| {
            v.iter().any(|(w, _)| *w == 1)
        });
    TestRunner::new(Config::with_cases(48))
        .run(&orders, |order| {
            let f = fixture();
            webhook_order_run(&*f.ob, &order);
            Ok(())
        })
        .unwrap();
}
