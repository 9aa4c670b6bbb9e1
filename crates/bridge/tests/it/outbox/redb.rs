//! The redb engine: the conformance suite, plus what only a file-backed engine has (state
//! after a crash and reopen, the schema version check, the backup copy of its tables).

use std::sync::Arc;

use redb::ReadableDatabase;
use weaver_bridge::OutboxError;
use weaver_bridge::outbox::{OutboxStore, RedbOutbox, copy_tables};

use super::conformance::{Fixture, policy, rng, slots, spec};

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

outbox_conformance_suite!(fixture);

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
