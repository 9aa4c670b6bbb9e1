//! Cases for the rest of a call's life: terminal states, cancel and prune, room deletion,
//! the write-back queue, listing.

use super::*;

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
