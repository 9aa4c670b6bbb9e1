//! Cases for async calls: webhook dedupe and parking, polling, requeueing, and webhook
//! deliveries in any order.

use super::*;

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
