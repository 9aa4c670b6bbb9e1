//! Cases for creating, claiming and finishing calls: unique triggers, leases and fencing,
//! outcomes, retries, rescue, concurrency slots.

use super::*;

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
