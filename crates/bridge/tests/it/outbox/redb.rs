//! The redb engine: the conformance suite, plus what only a file-backed engine has (state
//! after a crash and reopen, the schema version check, the backup copy of its tables).

use std::sync::Arc;

use redb::ReadableDatabase;
use weaver_bridge::OutboxError;
use weaver_bridge::outbox::{OutboxStore, RedbOutbox, copy_tables};

use weaver_bridge::outbox::conformance::{Fixture, policy, rng, slots, spec};

fn open(dir: &tempfile::TempDir) -> RedbOutbox {
    let db = redb::Database::create(dir.path().join("db.redb")).unwrap();
    RedbOutbox::open(Arc::new(db), policy()).unwrap()
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    Fixture {
        ob: Arc::new(ob),
        _keep: Box::new(dir),
    }
}

weaver_bridge::outbox_conformance_suite!(fixture);

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

#[test]
fn commits_count_durable_writes_only() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    ob.create_calls(vec![spec(1), spec(2)], 0).unwrap();
    ob.list(&Default::default()).unwrap();
    ob.ack_writebacks(&[]).unwrap();
    assert_eq!(
        ob.commits(),
        1,
        "one batch, one fsync; reads and no-ops none"
    );
}

#[test]
fn unknown_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(redb::Database::create(dir.path().join("db.redb")).unwrap());
    RedbOutbox::open(db.clone(), policy()).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<&str, u64>::new("bridge_meta"))
        .unwrap()
        .insert("schema_version", 99)
        .unwrap();
    txn.commit().unwrap();
    let err = RedbOutbox::open(db, policy()).unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::SchemaVersion {
                found: 99,
                supported: 1
            }
        ),
        "{err:?}"
    );
}

#[test]
fn backup_copies_every_bridge_table() {
    let dir = tempfile::tempdir().unwrap();
    let ob = open(&dir);
    let (call, _) = ob.create_call(spec(1), 0).unwrap();
    ob.claim_due(0, &slots(), 10).unwrap();
    drop(ob);
    let db = redb::Database::create(dir.path().join("db.redb")).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = redb::Database::create(out_dir.path().join("copy.redb")).unwrap();
    let copied = {
        let src = db.begin_read().unwrap();
        let txn = out.begin_write().unwrap();
        let copied = copy_tables(&src, &txn).unwrap();
        txn.commit().unwrap();
        copied
    };
    let mut names = copied.clone();
    names.sort();
    assert_eq!(
        names,
        [
            "bridge_calls",
            "bridge_calls_by_room",
            "bridge_events",
            "bridge_external",
            "bridge_failure_notices",
            "bridge_lease_expiry",
            "bridge_leases",
            "bridge_meta",
            "bridge_parked",
            "bridge_ready",
            "bridge_triggers",
            "bridge_webhook_seen",
            "bridge_writeback",
        ]
    );
    // The copy is a working outbox in the same state.
    let restored = RedbOutbox::open(Arc::new(out), policy()).unwrap();
    let got = restored.get(&call.id).unwrap().unwrap();
    assert_eq!(got.tries, 1);
    assert_eq!(restored.queue_sizes().unwrap(), (0, 1, 1));
    assert_eq!(restored.events(&call.id).unwrap().len(), 2);
}

#[test]
fn a_failed_call_queues_one_failure_notice_that_survives_a_crash() {
    use weaver_bridge::{FailureReason, Outcome};
    let failed = |reason| Outcome::Failed {
        error: "HTTP 400: no".into(),
        retryable: false,
        retry_after_ms: None,
        reason,
    };
    let dir = tempfile::tempdir().unwrap();
    let (a, b);
    {
        let ob = open(&dir).with_failure_notices(true);
        a = ob.create_call(spec(1), 0).unwrap().0;
        b = ob.create_call(spec(2), 0).unwrap().0;
        let claims = ob.claim_due(10, &slots(), 10).unwrap();
        assert_eq!(claims.len(), 2);
        let token = |id| claims.iter().find(|c| c.call.id == id).unwrap().token;
        ob.complete(
            &a.id,
            Some(token(a.id)),
            failed(FailureReason::Http4xx),
            20,
            &mut rng(),
        )
        .unwrap();
        let done = Outcome::Completed {
            external_id: None,
            data: serde_json::json!({}),
        };
        ob.complete(&b.id, Some(token(b.id)), done, 20, &mut rng())
            .unwrap();
        // A late result for the failed call notes it and queues nothing more.
        ob.complete(&a.id, None, failed(FailureReason::Http5xx), 30, &mut rng())
            .unwrap();
        // "crash" before the notice was delivered.
    }
    let ob = open(&dir);
    assert_eq!(ob.failure_notice_count().unwrap(), 1);
    let notices = ob.failure_notices(10).unwrap();
    let [(seq, n)] = notices.as_slice() else {
        panic!("{notices:?}")
    };
    assert_eq!(n.call_id, a.id);
    assert_eq!(
        (n.room.as_str(), n.block_id.as_str(), n.index_name.as_str()),
        ("r", "b", "search")
    );
    assert_eq!((n.attempt, n.tries, n.failed_at), (1, 1, 20));
    assert_eq!(n.integration, "api");
    assert_eq!(n.error, "HTTP 400: no");
    assert_eq!(n.reason, FailureReason::Http4xx);
    assert_eq!(
        ob.get(&a.id).unwrap().unwrap().failure_reason,
        Some(FailureReason::Http4xx)
    );
    ob.ack_failure_notices(&[*seq]).unwrap();
    assert!(ob.failure_notices(10).unwrap().is_empty());

    // Out of tries after lease expiries: the notice says so.
    let ob = ob.with_failure_notices(true);
    let c = ob.create_call(spec(3), 100).unwrap().0;
    for t in 0..3 {
        let now = 100 + t * 10_000;
        assert_eq!(ob.claim_due(now, &slots(), 10).unwrap().len(), 1);
        ob.rescue_expired(now + 5_000, false, &mut rng()).unwrap();
        ob.make_due(&c.id, now + 5_001).unwrap();
    }
    let notices = ob.failure_notices(10).unwrap();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0].1.call_id, c.id);
    assert_eq!(notices[0].1.reason, FailureReason::LeaseExpired);

    // Without failure notices nothing is queued.
    drop(ob);
    let ob = open(&dir);
    let d = ob.create_call(spec(4), 0).unwrap().0;
    let claim = ob.claim_due(200_000, &slots(), 10).unwrap().pop().unwrap();
    assert_eq!(claim.call.id, d.id);
    ob.complete(
        &d.id,
        Some(claim.token),
        failed(FailureReason::Http4xx),
        200_001,
        &mut rng(),
    )
    .unwrap();
    assert_eq!(
        ob.failure_notices(10).unwrap().len(),
        1,
        "only the earlier one"
    );
}
