//! Outbox behaviour against a real redb file in a temp dir: unique triggers, leases and
//! fencing, rescue, retries to a kept failure, webhook dedupe and parking, write-back queue,
//! pruning, and reopening after a "crash" (dropping the database mid-flight).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use weaver_bridge::config::{RetentionConfig, RetryPolicy};
use weaver_bridge::model::{CallStatus, EventKind, NewCall};
use weaver_bridge::outbox::{Completion, DocStatus, Outbox, Outcome, Phase, WebhookApply};

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_interval_ms: 100,
        max_interval_ms: 1_000,
        lease_ms: 5_000,
    }
}

fn open(dir: &tempfile::TempDir) -> Outbox {
    let db = redb::Database::create(dir.path().join("db.redb")).unwrap();
    Outbox::open(Arc::new(db), policy()).unwrap()
}

fn spec(attempt: u32) -> NewCall {
    NewCall {
        room: "r".into(),
        block_id: "b".into(),
        index_name: "search".into(),
        attempt,
        integration: "api".into(),
        request_params: json!({"content": "hello"}),
    }
}

fn slots() -> HashMap<String, usize> {
    HashMap::from([("api".to_owned(), 10)])
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn unique_trigger_gives_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
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
}

#[test]
fn claim_lease_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 1000).unwrap();
    // Not due before its time, due at it.
    assert!(ob.claim_due(999, &slots(), 10).unwrap().is_empty());
    let claims = ob.claim_due(1000, &slots(), 10).unwrap();
    assert_eq!(claims.len(), 1);
    let first = &claims[0];
    assert_eq!(first.phase, Phase::Submit);
    assert_eq!(first.call.status, CallStatus::Processing);
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
            Outcome::Failed {
                error: "x".into(),
                retryable: true,
                retry_after_ms: None,
            },
            100_001,
            &mut rng(),
        )
        .unwrap();
    assert_eq!(r, Completion::Fenced);
    // The current worker completes.
    let r = ob
        .complete(
            &call.id,
            Some(second.token),
            Outcome::Completed {
                external_id: None,
                data: json!({"n": 1}),
            },
            100_002,
            &mut rng(),
        )
        .unwrap();
    let Completion::Recorded(c) = r else {
        panic!("{r:?}")
    };
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
            Outcome::Completed {
                external_id: None,
                data: json!({"n": 2}),
            },
            100_003,
            &mut rng(),
        )
        .unwrap();
    assert_eq!(r, Completion::Ignored);
    let c = ob.get(&call.id).unwrap().unwrap();
    assert_eq!(c.response_data, Some(json!({"n": 1})));
    let types: Vec<&str> = ob
        .events(&call.id)
        .unwrap()
        .iter()
        .map(|e| e.event.kind.type_name())
        .collect();
    assert_eq!(
        types,
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
    let statuses: Vec<DocStatus> = wbs.iter().map(|(_, w)| w.status).collect();
    assert_eq!(statuses, vec![DocStatus::Processing, DocStatus::Done]);
    assert_eq!(wbs[1].1.result, Some(json!({"n": 1})));
    ob.ack_writebacks(&wbs.iter().map(|(s, _)| *s).collect::<Vec<_>>())
        .unwrap();
    assert!(ob.writebacks(100).unwrap().is_empty());
}

#[test]
fn stale_success_is_accepted_if_not_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let first = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    ob.rescue_expired(0, true, &mut rng()).unwrap();
    let _second = ob.claim_due(10, &slots(), 10).unwrap().pop().unwrap();
    // The API did the work for the first try (same idempotency key): accept it.
    let r = ob
        .complete(
            &call.id,
            Some(first.token),
            Outcome::Completed {
                external_id: Some("e1".into()),
                data: json!({}),
            },
            20,
            &mut rng(),
        )
        .unwrap();
    assert!(matches!(r, Completion::Recorded(ref c) if c.status == CallStatus::Completed));
}

#[test]
fn retries_with_backoff_then_kept_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let mut now = 0;
    for try_no in 1..=3u32 {
        let c = ob.claim_due(now, &slots(), 10).unwrap().pop().expect("due");
        assert_eq!(c.call.tries, try_no);
        let r = ob
            .complete(
                &call.id,
                Some(c.token),
                Outcome::Failed {
                    error: format!("HTTP 503 #{try_no}"),
                    retryable: true,
                    retry_after_ms: None,
                },
                now,
                &mut rng(),
            )
            .unwrap();
        let Completion::Recorded(rec) = r else {
            panic!()
        };
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
    let wbs = ob.writebacks(10).unwrap();
    assert_eq!(wbs.last().unwrap().1.status, DocStatus::Error);
}

#[test]
fn retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let r = ob
        .complete(
            &call.id,
            Some(c.token),
            Outcome::Failed {
                error: "429".into(),
                retryable: true,
                retry_after_ms: Some(700),
            },
            50,
            &mut rng(),
        )
        .unwrap();
    let Completion::Recorded(rec) = r else {
        panic!()
    };
    assert_eq!(rec.next_try_at, Some(750));
}

#[test]
fn non_retryable_fails_once() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let r = ob
        .complete(
            &call.id,
            Some(c.token),
            Outcome::Failed {
                error: "HTTP 422".into(),
                retryable: false,
                retry_after_ms: None,
            },
            1,
            &mut rng(),
        )
        .unwrap();
    let Completion::Recorded(rec) = r else {
        panic!()
    };
    assert_eq!(rec.status, CallStatus::Failed);
    assert_eq!(rec.tries, 1);
    assert_eq!(rec.error.as_deref(), Some("HTTP 422"));
}

#[test]
fn concurrency_slots_respected() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
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
}

#[test]
fn async_start_webhook_dedupe_and_parking() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
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
    let r = ob
        .complete(
            &call.id,
            Some(c.token),
            Outcome::Started {
                external_id: "ext-1".into(),
                poll_after_ms: None,
            },
            7,
            &mut rng(),
        )
        .unwrap();
    let Completion::Recorded(rec) = r else {
        panic!()
    };
    assert_eq!(rec.status, CallStatus::Completed);
    assert_eq!(rec.response_data, Some(json!({"chunks": 3})));
    assert_eq!(rec.external_id.as_deref(), Some("ext-1"));
    // A later different webhook for the finished call changes nothing.
    let late = EventKind::Failed {
        error: "late".into(),
        retryable: false,
    };
    let WebhookApply::Applied(after) = ob.apply_webhook("api", "wh_2", "ext-1", late, 8).unwrap()
    else {
        panic!()
    };
    assert_eq!(after.status, CallStatus::Completed);
    // Exactly one done write-back.
    let done_wbs = ob
        .writebacks(10)
        .unwrap()
        .into_iter()
        .filter(|(_, w)| w.status == DocStatus::Done)
        .count();
    assert_eq!(done_wbs, 1);
}

#[test]
fn polling_phase_and_pending() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
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
    let r = ob
        .complete(
            &call.id,
            Some(p.token),
            Outcome::Completed {
                external_id: None,
                data: json!({"ok": 1}),
            },
            230,
            &mut rng(),
        )
        .unwrap();
    assert!(
        matches!(r, Completion::Recorded(ref c) if c.status == CallStatus::Completed && c.external_id.as_deref() == Some("j1"))
    );
}

#[test]
fn cancel_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
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
        Outcome::Failed {
            error: "bad".into(),
            retryable: false,
            retry_after_ms: None,
        },
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
    ob.ack_writebacks(
        &ob.writebacks(10)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(ob.prune(500, &ret).unwrap(), 1); // the cancelled one
    assert!(ob.get(&a.id).unwrap().is_none());
    assert!(ob.get(&b.id).unwrap().is_some());
    assert_eq!(ob.prune(2_000, &ret).unwrap(), 1);
    assert!(ob.get(&b.id).unwrap().is_none());
    assert!(ob.events(&b.id).unwrap().is_empty());
}

#[test]
fn state_survives_reopen_and_startup_rescue() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let ob = open(&dir);
        let (call, _) = ob.create_call(spec(1), 0).unwrap();
        id = call.id;
        ob.claim_due(0, &slots(), 10).unwrap();
        // "crash": drop everything with the lease held.
    }
    let ob = open(&dir);
    assert!(ob.claim_due(1, &slots(), 10).unwrap().is_empty());
    assert_eq!(ob.rescue_expired(1, true, &mut rng()).unwrap(), vec![id]);
    let c = ob.claim_due(1, &slots(), 10).unwrap().pop().unwrap();
    assert_eq!(c.call.id, id);
    assert_eq!(
        c.call.idempotency_key,
        format!("weaver-{id}-1"),
        "same key after the crash"
    );
}

mod webhook_order {
    use super::*;
    use proptest::prelude::*;

    /// One delivery of the provider's webhooks (processing, completed), each sent 1–3 times, in
    /// any order relative to each other and to the 202 being recorded: the call ends completed
    /// with the data, the `completed` event is applied once, and one `done` write-back is queued.
    fn run(order: &[(usize, bool)]) {
        let dir = tempfile::tempdir().unwrap();
        let ob = open(&dir);
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
        let mut started = false;
        for (i, (which, start_first)) in order.iter().enumerate() {
            if *start_first && !started {
                ob.complete(
                    &call.id,
                    Some(claim.token),
                    Outcome::Started {
                        external_id: "ext".into(),
                        poll_after_ms: None,
                    },
                    10 + i as u64,
                    &mut rng(),
                )
                .unwrap();
                started = true;
            }
            let (id, kind) = &hooks[*which % 2];
            ob.apply_webhook("api", id, "ext", kind.clone(), 20 + i as u64)
                .unwrap();
        }
        if !started {
            ob.complete(
                &call.id,
                Some(claim.token),
                Outcome::Started {
                    external_id: "ext".into(),
                    poll_after_ms: None,
                },
                100,
                &mut rng(),
            )
            .unwrap();
        }
        let c = ob.get(&call.id).unwrap().unwrap();
        assert_eq!(c.status, CallStatus::Completed);
        assert_eq!(c.response_data, Some(json!({"chunks": 7})));
        let completed = ob
            .events(&call.id)
            .unwrap()
            .iter()
            .filter(|e| e.event.kind.type_name() == "completed")
            .count();
        assert_eq!(completed, 1);
        let dones = ob
            .writebacks(100)
            .unwrap()
            .iter()
            .filter(|(_, w)| w.status == DocStatus::Done)
            .count();
        assert_eq!(dones, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn any_order_and_duplicates_converge(
            order in proptest::collection::vec((0usize..2, any::<bool>()), 1..8)
                .prop_filter("completed must be delivered", |v| v.iter().any(|(w, _)| *w == 1))
        ) {
            run(&order);
        }
    }
}

#[test]
fn writeback_results_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    ob.complete(
        &call.id,
        Some(c.token),
        Outcome::Completed {
            external_id: None,
            data: deep,
        },
        1,
        &mut rng(),
    )
    .unwrap();
    let (_, wb) = ob.writebacks(10).unwrap().pop().unwrap();
    assert_eq!(wb.result.unwrap()["truncated"], true);
    let (call2, _) = ob.create_call(spec(2), 0).unwrap();
    let c = ob.claim_due(0, &slots(), 10).unwrap().pop().unwrap();
    let big = "e".repeat(100_000);
    ob.complete(
        &call2.id,
        Some(c.token),
        Outcome::Failed {
            error: big,
            retryable: false,
            retry_after_ms: None,
        },
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
