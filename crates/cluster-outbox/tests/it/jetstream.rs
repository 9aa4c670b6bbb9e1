//! What only the JetStream engine has: a newer handle fences an older one, a reopen from a
//! snapshot and a tail gives the same state, a duplicated append is applied once, and a
//! damaged log is refused with a clear error.

use async_nats::jetstream;
use serde_json::json;
use weaver_bridge::OutboxError;
use weaver_bridge::model::{CallStatus, EventKind, FailureReason};
use weaver_bridge::outbox::conformance::{rng, slots, spec};
use weaver_bridge::outbox::{CallFilter, DocStatus, OutboxStore, Outcome, Writeback};

use crate::env::{config, env, open, try_open};

fn all(ob: &dyn OutboxStore) -> Vec<weaver_bridge::model::ApiCall> {
    ob.list(&CallFilter {
        limit: Some(1000),
        ..Default::default()
    })
    .unwrap()
}

/// Publishes a raw message on the outbox's op subject, as another writer (or damage) would.
fn publish_raw(cfg: &weaver_cluster_outbox::OutboxConfig, payload: &[u8], msg_id: Option<&str>) {
    let e = env();
    e.rt.block_on(async {
        let js = jetstream::new(e.client.clone());
        let mut headers = async_nats::HeaderMap::new();
        if let Some(id) = msg_id {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        }
        js.publish_with_headers(
            format!("{}.op", cfg.subject_prefix),
            headers,
            payload.to_vec().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    });
}

#[test]
fn second_open_fences_the_first() {
    let cfg = config();
    let a = open(&cfg);
    let (first, _) = a.create_call(spec(1), 0).unwrap();
    let b = open(&cfg);
    assert!(!a.fenced().is_cancelled(), "nothing refused yet");
    let err = a.create_call(spec(2), 1).unwrap_err();
    assert!(matches!(err, OutboxError::Fenced), "{err}");
    assert!(a.fenced().is_cancelled());
    assert!(matches!(
        a.claim_due(5, &slots(), 10).unwrap_err(),
        OutboxError::Fenced
    ));
    // The refused write changed nothing, for the new handle or for a third one.
    assert_eq!(all(&b).len(), 1);
    let claim = b.claim_due(5, &slots(), 10).unwrap().pop().unwrap();
    assert_eq!(claim.call.id, first.id);
    let c = open(&cfg);
    assert_eq!(all(&c).len(), 1);
    assert!(c.find_by_trigger("r", "b", "search", 2).unwrap().is_none());
}

#[test]
fn reopen_after_snapshot_and_tail_gives_identical_state() {
    let mut cfg = config();
    cfg.snapshot_every = 7;
    let a = try_open(&cfg, true).unwrap();
    let mut max_token = 0;
    for attempt in 1..=6 {
        a.create_call(spec(attempt), u64::from(attempt)).unwrap();
    }
    let claims = a.claim_due(10, &slots(), 10).unwrap();
    assert_eq!(claims.len(), 6);
    for (i, claim) in claims.iter().enumerate() {
        max_token = max_token.max(claim.token);
        let outcome = match i {
            0 => Outcome::Completed {
                external_id: None,
                data: json!({"ok": i}),
            },
            1 => Outcome::Failed {
                error: "boom".into(),
                retryable: false,
                retry_after_ms: None,
                reason: FailureReason::Http4xx,
            },
            2 => Outcome::Failed {
                error: "later".into(),
                retryable: true,
                retry_after_ms: None,
                reason: FailureReason::Http5xx,
            },
            3 => Outcome::Started {
                external_id: "ext-3".into(),
                poll_after_ms: None,
            },
            _ => continue,
        };
        a.complete(&claim.call.id, Some(claim.token), outcome, 20, &mut rng())
            .unwrap();
    }
    a.apply_webhook("api", "wh-1", "ext-3", EventKind::Processing, 30)
        .unwrap();
    a.apply_webhook("api", "wh-2", "ext-unknown", EventKind::Processing, 31)
        .unwrap();
    a.push_writeback(&Writeback {
        room: "r2".into(),
        block_id: "b9".into(),
        index_name: "search".into(),
        attempt: 1,
        status: DocStatus::NotStarted,
        api_call_id: None,
        result: None,
        error: None,
        completed_at: None,
    })
    .unwrap();
    let wbs = a.writebacks(2).unwrap();
    a.ack_writebacks(&[wbs[0].0]).unwrap();
    a.rescue_expired(10_000_000, false, &mut rng()).unwrap();
    assert!(a.commits() > 2 * cfg.snapshot_every, "snapshots were taken");

    let state = |ob: &dyn OutboxStore| {
        let calls = all(ob);
        let events: Vec<_> = calls.iter().map(|c| ob.events(&c.id).unwrap()).collect();
        (
            calls,
            events,
            ob.queue_sizes().unwrap(),
            ob.writebacks(1000).unwrap(),
            ob.failure_notices(1000).unwrap(),
            ob.next_due().unwrap(),
            ob.next_lease_expiry().unwrap(),
        )
    };
    let before = state(&a);
    assert!(before.0.iter().any(|c| c.status == CallStatus::Completed));
    assert!(before.0.iter().any(|c| c.status == CallStatus::Failed));
    assert_eq!(before.4.len(), 1, "one failure notice");
    drop(a);

    // The log was compacted: the first op left is a snapshot.
    let e = env();
    let first = e.rt.block_on(async {
        let js = jetstream::new(e.client.clone());
        let stream = js.get_stream(&cfg.stream).await.unwrap();
        stream
            .direct_get_next_for_subject(format!("{}.op", cfg.subject_prefix), Some(1))
            .await
            .unwrap()
    });
    assert!(first.sequence > 1, "ops before the snapshot were purged");
    assert!(
        std::str::from_utf8(&first.payload)
            .unwrap()
            .contains("\"snapshot\""),
        "the first op is the snapshot"
    );

    let b = try_open(&cfg, true).unwrap();
    assert_eq!(state(&b), before);
    // Tokens keep growing under the new handle.
    let claims = b.claim_due(10_000_000, &slots(), 10).unwrap();
    assert!(!claims.is_empty());
    assert!(claims.iter().all(|c| c.token > max_token));
    let statuses: Vec<_> = b
        .writebacks(1000)
        .unwrap()
        .into_iter()
        .map(|(_, w)| w.status)
        .collect();
    assert!(statuses.contains(&DocStatus::Done));
}

#[test]
fn duplicated_append_is_applied_once() {
    let cfg = config();
    let a = open(&cfg);
    a.create_call(spec(1), 0).unwrap();
    let id = uuid::Uuid::now_v7();
    let op = json!({
        "op": "create",
        "specs": [{
            "room": "r", "block_id": "b", "index_name": "search", "attempt": 2,
            "integration": "api", "request_params": {"content": "x"}
        }],
        "ids": [id],
        "now": 5
    })
    .to_string();
    // A writer whose ack was lost sends the same message (same id) again.
    publish_raw(&cfg, op.as_bytes(), Some("dup-1"));
    publish_raw(&cfg, op.as_bytes(), Some("dup-1"));
    let b = open(&cfg);
    let calls = all(&b);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(b.events(&id).unwrap().len(), 1, "created once, not twice");
}

#[test]
fn corrupted_op_is_a_clear_error() {
    let cfg = config();
    let a = open(&cfg);
    a.create_call(spec(1), 0).unwrap();
    publish_raw(&cfg, b"{\"op\":\"explode\"}", None);
    let err = try_open(&cfg, false).unwrap_err();
    assert!(
        matches!(err, OutboxError::Corrupt { seq, .. } if seq > 1),
        "{err}"
    );
    assert!(err.to_string().contains("unusable"), "{err}");
}

#[test]
fn op_larger_than_a_message_is_chunked_and_replayed() {
    let cfg = config();
    let a = open(&cfg);
    a.create_call(spec(1), 0).unwrap();
    let claim = a.claim_due(1, &slots(), 10).unwrap().pop().unwrap();
    // Above nats-server's default 1 MiB payload limit.
    let big = json!({ "blob": "x".repeat(1_500_000) });
    let done = a
        .complete(
            &claim.call.id,
            Some(claim.token),
            Outcome::Completed {
                external_id: None,
                data: big.clone(),
            },
            2,
            &mut rng(),
        )
        .unwrap();
    assert!(matches!(
        done,
        weaver_bridge::outbox::Completion::Recorded(_)
    ));
    assert!(!a.fenced().is_cancelled());
    drop(a);
    let b = open(&cfg);
    let call = b.get(&claim.call.id).unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.response_data, Some(big));
}
