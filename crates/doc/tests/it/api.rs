//! Unit tests of the public API: writes and reads, validation and errors, malformed input,
//! typed change events (including origin filtering) and origin-scoped undo.

use std::sync::{Arc, Mutex};

use serde_json::json;
use weaver_doc::{
    BRIDGE_ORIGIN, Change, ChangeSet, DocError, LocalUndo, Status, StatusRecord, Workspace,
    WriteTxn,
};

fn ws(id: u64) -> Workspace {
    Workspace::with_client_id(id)
}

/// Runs `f` in one transaction of `origin` on `w`; both the transaction and `f` must succeed.
fn write<T>(
    w: &Workspace,
    origin: &str,
    f: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, DocError>,
) -> T {
    w.transact(origin, f).unwrap().0.unwrap()
}

/// Applies everything `from` has that `to` lacks.
fn sync(from: &Workspace, to: &Workspace, origin: &str) {
    let diff = from.encode_diff_v1(&to.state_vector_v1().unwrap()).unwrap();
    to.apply_update_v1(&diff, origin).unwrap();
}

#[test]
fn blocks_text_and_views() {
    let a = ws(1);
    let ((), update) = a
        .transact("local", |t| {
            t.add_block("b1", "text", "a😀b").unwrap();
            assert_eq!(t.content_len("b1").unwrap(), 4, "UTF-16 code units");
            t.insert_text("b1", 3, "🎉").unwrap(); // after the emoji
            t.replace_text("b1", 0, 1, "Z").unwrap();
            t.delete_text("b1", 5, 1).unwrap(); // the final "b"
            assert_eq!(t.content("b1").unwrap(), "Z😀🎉");
            assert!(t.has_block("b1"));
            assert_eq!(t.block("b1").unwrap().content, "Z😀🎉");
        })
        .unwrap();
    assert!(!update.is_empty());
    let v = a.block("b1").unwrap().unwrap();
    assert_eq!((v.id.as_str(), v.block_type.as_str()), ("b1", "text"));
    assert!(v.indexing_list.is_empty());
    assert_eq!(
        a.to_json().unwrap(),
        json!({"blocks": [{"id": "b1", "type": "text", "content": "Z😀🎉", "indexingList": []}]})
    );
    // The returned update carries the whole transaction to another replica.
    let b = Workspace::from_update_v1(&update).unwrap();
    assert_eq!(b.to_json().unwrap(), a.to_json().unwrap());
    assert!(a.block("nope").unwrap().is_none());
}

#[test]
fn text_errors_write_nothing() {
    let a = ws(1);
    write(&a, "local", |t| t.add_block("b", "text", "a😀"));
    let ((), update) = a
        .transact("local", |t| {
            assert!(matches!(
                t.add_block("b", "text", ""),
                Err(DocError::BlockExists(_))
            ));
            assert!(matches!(
                t.insert_text("b", 4, "x"),
                Err(DocError::OutOfRange { content_len: 3, .. })
            ));
            assert!(matches!(
                t.delete_text("b", 1, 3),
                Err(DocError::OutOfRange { .. })
            ));
            assert!(matches!(
                t.insert_text("b", 2, "x"),
                Err(DocError::Invalid { field: "index", .. })
            ));
            assert!(matches!(
                t.delete_text("b", 1, 1),
                Err(DocError::Invalid { field: "index", .. })
            ));
            assert!(matches!(
                t.insert_text("missing", 0, "x"),
                Err(DocError::NoBlock(_))
            ));
            assert!(matches!(
                t.request_index("missing", "s", &json!({})),
                Err(DocError::NoBlock(_))
            ));
            assert!(matches!(
                t.request_index("b", "s", &json!([1])),
                Err(DocError::Invalid { .. })
            ));
            assert!(!t.remove_block("missing"));
            assert_eq!(t.remove_index("b", "none"), 0);
            assert_eq!(t.remove_index("missing", "none"), 0);
        })
        .unwrap();
    assert!(update.is_empty(), "failed operations must not write");
    assert_eq!(a.block("b").unwrap().unwrap().content, "a😀");
}

#[test]
fn entries_attempts_and_outcomes() {
    let a = ws(1);
    let cfg = json!({"dim": 384});
    a.transact("local", |t| {
        t.add_block("b", "text", "x").unwrap();
        assert_eq!(t.request_index("b", "search", &cfg).unwrap(), 1);
        // A retry keeps the configs.
        assert_eq!(
            t.request_index("b", "search", &json!({"dim": 1})).unwrap(),
            2
        );
    })
    .unwrap();
    let e = a
        .block("b")
        .unwrap()
        .unwrap()
        .entry("search")
        .cloned()
        .unwrap();
    assert_eq!(
        (e.attempt, e.status, e.collection_configs),
        (2, Status::NotStarted, cfg)
    );

    let (wrote, _) = a
        .transact(BRIDGE_ORIGIN, |t| {
            let w1 = t
                .record_status("b", "search", &StatusRecord::processing(2, "c2"))
                .unwrap();
            let w2 = t
                .record_status("b", "search", &StatusRecord::processing(2, "c2"))
                .unwrap();
            // An older attempt's outcome arrives late: recorded, but it can't win.
            let w3 = t
                .record_status("b", "search", &StatusRecord::done(1, "c1", json!({}), 1))
                .unwrap();
            let w4 = t.record_status("gone", "search", &StatusRecord::new(1, Status::Done));
            let w5 = t.record_status("b", "other", &StatusRecord::new(1, Status::Done));
            let bad = t.record_status("b", "search", &StatusRecord::new(0, Status::Done));
            (w1, w2, w3, w4.unwrap(), w5.unwrap(), bad.is_err())
        })
        .unwrap();
    assert_eq!(wrote, (true, false, true, false, false, true));
    let e = a
        .block("b")
        .unwrap()
        .unwrap()
        .entry("search")
        .cloned()
        .unwrap();
    assert_eq!((e.attempt, e.status), (2, Status::Processing));
    assert_eq!(e.api_call_id.as_deref(), Some("c2"));

    let done = StatusRecord::done(
        2,
        "c2",
        json!({"chunks_indexed": 4, "duration_ms": 9}),
        1_763_900_000_000,
    );
    write(&a, BRIDGE_ORIGIN, |t| t.record_status("b", "search", &done));
    let e = a
        .block("b")
        .unwrap()
        .unwrap()
        .entry("search")
        .cloned()
        .unwrap();
    assert_eq!(e.status, Status::Done);
    assert_eq!(
        e.result,
        Some(json!({"chunks_indexed": 4, "duration_ms": 9}))
    );
    assert_eq!(e.completed_at, Some(1_763_900_000_000.0));
    assert_eq!(e.error, None);
    let j = a.to_json().unwrap();
    assert_eq!(
        j["blocks"][0]["indexingList"][0]["completed_at"],
        json!(1_763_900_000_000_u64)
    );

    // Pruning drops attempt-1 records and leaves the view as it was.
    let before = a.to_json().unwrap();
    let (n, _) = a
        .transact(BRIDGE_ORIGIN, |t| t.prune_status_log("b", "search"))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(a.to_json().unwrap(), before);

    let (n, _) = a
        .transact("local", |t| t.remove_index("b", "search"))
        .unwrap();
    assert_eq!(n, 1);
    assert!(a.block("b").unwrap().unwrap().indexing_list.is_empty());
    let (removed, _) = a.transact("local", |t| t.remove_block("b")).unwrap();
    assert!(removed);
    assert_eq!(a.to_json().unwrap(), json!({"blocks": []}));
}

#[test]
fn concurrent_same_name_adds_are_one_entry_and_retries_agree() {
    let (a, b) = (ws(1), ws(2));
    write(&a, "local", |t| t.add_block("b", "text", ""));
    sync(&a, &b, "relay");
    write(&a, "local", |t| {
        t.request_index("b", "s", &json!({"by": "a"}))
    });
    write(&b, "local", |t| {
        t.request_index("b", "s", &json!({"by": "b"}))
    });
    sync(&a, &b, "relay");
    sync(&b, &a, "relay");
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
    let v = a.block("b").unwrap().unwrap();
    assert_eq!(v.indexing_list.len(), 1);
    // Both ask for a retry concurrently: one attempt 2, not 3.
    let (ra, _) = a
        .transact("local", |t| t.request_index("b", "s", &json!({})))
        .unwrap();
    let (rb, _) = b
        .transact("local", |t| t.request_index("b", "s", &json!({})))
        .unwrap();
    assert_eq!((ra.unwrap(), rb.unwrap()), (2, 2));
    sync(&a, &b, "relay");
    sync(&b, &a, "relay");
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
    assert_eq!(a.block("b").unwrap().unwrap().indexing_list[0].attempt, 2);
    // Removing the name removes both underlying maps.
    let (n, _) = a.transact("local", |t| t.remove_index("b", "s")).unwrap();
    assert_eq!(n, 2);
}

#[test]
fn malformed_bytes_are_errors_not_panics() {
    let a = ws(1);
    write(&a, "local", |t| t.add_block("b", "text", "hello"));
    let good = a.encode_state_v1().unwrap();
    let mut bad_inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 16],
        vec![1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        vec![0x80; 40],
        good[..good.len() / 2].to_vec(),
    ];
    // Flip bytes of a valid update.
    for i in (0..good.len()).step_by(3) {
        let mut g = good.clone();
        g[i] ^= 0xa5;
        bad_inputs.push(g);
    }
    let mut errors = 0;
    for bytes in &bad_inputs {
        let fresh = ws(9);
        if fresh.apply_update_v1(bytes, "peer").is_err() {
            errors += 1;
        }
        // Whatever happened, the workspace stays usable.
        fresh.to_json().unwrap();
    }
    assert!(
        errors >= 4,
        "clearly broken updates must be rejected ({errors})"
    );
    assert!(matches!(
        a.apply_update_v1(&[0xff, 0xff, 0xff], "peer"),
        Err(DocError::Malformed { what: "update", .. })
    ));
    assert!(matches!(
        a.encode_diff_v1(&[0xff, 0xff, 0xff]),
        Err(DocError::Malformed {
            what: "state vector",
            ..
        })
    ));
    assert_eq!(a.block("b").unwrap().unwrap().content, "hello");
}

#[test]
fn out_of_order_updates_integrate_when_dependencies_arrive() {
    let a = ws(1);
    let (_, u1) = a
        .transact("local", |t| t.add_block("b", "text", "ab"))
        .unwrap();
    let (_, u2) = a
        .transact("local", |t| t.insert_text("b", 1, "😀"))
        .unwrap();
    let b = ws(2);
    b.apply_update_v1(&u2, "relay").unwrap();
    assert!(b.block("b").unwrap().is_none());
    b.apply_update_v1(&u1, "relay").unwrap();
    b.apply_update_v1(&u1, "relay").unwrap();
    assert_eq!(b.to_json().unwrap(), a.to_json().unwrap());
}

/// Records every change set an observer sees.
fn recorder(w: &Workspace) -> (Arc<Mutex<Vec<ChangeSet>>>, weaver_doc::ChangeSubscription) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let sub = w
        .observe(move |cs| sink.lock().unwrap().push(cs.clone()))
        .unwrap();
    (log, sub)
}

fn take(log: &Arc<Mutex<Vec<ChangeSet>>>) -> Vec<ChangeSet> {
    std::mem::take(&mut *log.lock().unwrap())
}

#[test]
fn change_events_follow_the_typed_view() {
    let a = ws(1);
    let (log, _sub) = recorder(&a);
    write(&a, "local", |t| {
        t.add_block("b", "text", "hi")?;
        t.request_index("b", "search", &json!({"dim": 3}))
    });
    let sets = take(&log);
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].origin.as_deref(), Some("local"));
    let c = &sets[0].changes;
    assert_eq!(c.len(), 3, "{c:?}");
    assert_eq!(
        c[0],
        Change::BlockAdded {
            block_id: "b".into(),
            block_type: "text".into()
        }
    );
    assert!(
        matches!(&c[1], Change::EntryAdded { index_name, collection_configs, .. }
        if index_name == "search" && collection_configs == &json!({"dim": 3}))
    );
    assert!(matches!(
        &c[2],
        Change::StatusChanged {
            attempt: 1,
            status: Status::NotStarted,
            ..
        }
    ));

    write(&a, "local", |t| t.insert_text("b", 2, "!"));
    assert_eq!(
        take(&log)[0].changes,
        [Change::ContentChanged {
            block_id: "b".into()
        }]
    );

    write(&a, BRIDGE_ORIGIN, |t| {
        t.record_status("b", "search", &StatusRecord::processing(1, "c1"))
    });
    let sets = take(&log);
    assert!(sets[0].is_from(BRIDGE_ORIGIN));
    assert!(
        matches!(&sets[0].changes[..], [Change::StatusChanged { attempt: 1, status: Status::Processing, entry, .. }]
        if entry.api_call_id.as_deref() == Some("c1"))
    );

    // A retry request is a StatusChanged to notStarted with the new attempt.
    write(&a, "local", |t| t.request_index("b", "search", &json!({})));
    assert!(matches!(
        &take(&log)[0].changes[..],
        [Change::StatusChanged {
            attempt: 2,
            status: Status::NotStarted,
            ..
        }]
    ));

    // A late outcome of attempt 1 changes no effective status: no event at all.
    write(&a, BRIDGE_ORIGIN, |t| {
        t.record_status("b", "search", &StatusRecord::done(1, "c1", json!({}), 1))
    });
    assert!(take(&log).is_empty());

    // Nothing written: no event.
    a.transact("local", |t| t.remove_index("b", "nothing"))
        .unwrap();
    assert!(take(&log).is_empty());

    a.transact("local", |t| t.remove_index("b", "search"))
        .unwrap();
    assert_eq!(
        take(&log)[0].changes,
        [Change::EntryRemoved {
            block_id: "b".into(),
            index_name: "search".into()
        }]
    );
    a.transact("local", |t| t.remove_block("b")).unwrap();
    assert_eq!(
        take(&log)[0].changes,
        [Change::BlockRemoved {
            block_id: "b".into()
        }]
    );
}

#[test]
fn remote_updates_carry_their_origin_and_the_bridge_can_ignore_its_own() {
    let app = ws(1);
    let bridge = ws(2);
    // What a bridge does: react to everything except its own writes.
    let reacted = Arc::new(Mutex::new(Vec::<Change>::new()));
    let sink = reacted.clone();
    let _sub = bridge
        .observe(move |cs| {
            if !cs.is_from(BRIDGE_ORIGIN) {
                sink.lock().unwrap().extend(cs.changes.iter().cloned());
            }
        })
        .unwrap();
    let (all, _sub2) = recorder(&bridge);

    let (_, u) = app
        .transact("local", |t| {
            t.add_block("b", "text", "x")?;
            t.request_index("b", "s", &json!({}))
        })
        .unwrap();
    bridge.apply_update_v1(&u, "relay").unwrap();
    let sets = take(&all);
    assert_eq!(sets[0].origin.as_deref(), Some("relay"));
    assert!(reacted.lock().unwrap().iter().any(|c| matches!(
        c,
        Change::StatusChanged {
            attempt: 1,
            status: Status::NotStarted,
            ..
        }
    )));
    reacted.lock().unwrap().clear();

    // The bridge's own writes are observed (origin weaver-bridge) but filtered by the bridge.
    write(&bridge, BRIDGE_ORIGIN, |t| {
        t.record_status("b", "s", &StatusRecord::processing(1, "c"))
    });
    assert_eq!(take(&all).len(), 1);
    assert!(reacted.lock().unwrap().is_empty());

    // An edit from the app reaches the bridge as ContentChanged.
    let (_, u) = app
        .transact("local", |t| t.insert_text("b", 1, "y"))
        .unwrap();
    bridge.apply_update_v1(&u, "relay").unwrap();
    assert_eq!(
        *reacted.lock().unwrap(),
        [Change::ContentChanged {
            block_id: "b".into()
        }]
    );
    // A concurrently added same-name entry merging in is not a new entry.
    let (_, u) = app
        .transact("local", |t| {
            t.yrs_txn(); // escape hatch is reachable
            t.request_index("b", "s", &json!({}))
        })
        .unwrap();
    reacted.lock().unwrap().clear();
    bridge.apply_update_v1(&u, "relay").unwrap();
    let r = reacted.lock().unwrap().clone();
    assert!(
        r.iter().all(|c| !matches!(c, Change::EntryAdded { .. })),
        "{r:?}"
    );
}

#[test]
fn observers_cannot_open_transactions_and_dropping_unsubscribes() {
    let a = ws(1);
    let inner = a.clone();
    let result = Arc::new(Mutex::new(None));
    let sink = result.clone();
    let sub = a
        .observe(move |_| {
            *sink.lock().unwrap() = Some(inner.transact("nested", |_| ()).is_err());
        })
        .unwrap();
    write(&a, "local", |t| t.add_block("b", "text", ""));
    assert_eq!(
        *result.lock().unwrap(),
        Some(true),
        "nested transaction is Busy"
    );
    drop(sub);
    *result.lock().unwrap() = None;
    write(&a, "local", |t| t.add_block("c", "text", ""));
    assert_eq!(*result.lock().unwrap(), None);
    // Observing from inside a transaction is refused rather than deadlocking.
    let (r, _) = a.transact("local", |_| a.observe(|_| {}).is_err()).unwrap();
    assert!(r);
}

#[test]
fn undo_reverts_only_local_edits() {
    let me = ws(1);
    let peer = ws(2);
    write(&me, "setup", |t| {
        t.add_block("b", "text", "base")?;
        t.request_index("b", "s", &json!({}))
    });
    sync(&me, &peer, "relay");
    let mut undo = LocalUndo::new(&me, "local", 0).unwrap();
    assert!(!undo.can_undo());

    write(&me, "local", |t| t.insert_text("b", 4, " mine"));
    // The peer edits the same text; the bridge records a status; both arrive here.
    let (_, u) = peer
        .transact("local", |t| t.insert_text("b", 0, "peer "))
        .unwrap();
    me.apply_update_v1(&u, "relay").unwrap();
    write(&me, BRIDGE_ORIGIN, |t| {
        t.record_status("b", "s", &StatusRecord::done(1, "c", json!({"n": 1}), 7))
    });
    write(&me, "local", |t| t.delete_text("b", 5, 1)); // "peer ase mine"
    assert_eq!(me.block("b").unwrap().unwrap().content, "peer ase mine");

    let (log, sub) = recorder(&me);
    assert!(undo.undo().unwrap());
    assert_eq!(me.block("b").unwrap().unwrap().content, "peer base mine");
    let sets = take(&log);
    assert_eq!(
        sets[0].changes,
        [Change::ContentChanged {
            block_id: "b".into()
        }]
    );
    assert!(
        sets[0]
            .origin
            .as_deref()
            .is_some_and(|o| o.starts_with("0x")),
        "{sets:?}"
    );
    drop(sub);
    assert!(undo.undo().unwrap());
    let v = me.block("b").unwrap().unwrap();
    assert_eq!(v.content, "peer base", "only my insert is gone");
    assert_eq!(
        v.entry("s").unwrap().status,
        Status::Done,
        "bridge write kept"
    );
    assert!(
        !undo.undo().unwrap(),
        "setup and remote writes are not undoable"
    );
    assert_eq!(me.block("b").unwrap().unwrap().content, "peer base");

    assert!(undo.can_redo());
    assert!(undo.redo().unwrap());
    assert_eq!(me.block("b").unwrap().unwrap().content, "peer base mine");
    // The undo is an ordinary update for peers.
    sync(&me, &peer, "relay");
    assert_eq!(peer.to_json().unwrap(), me.to_json().unwrap());
    undo.clear().unwrap();
    assert!(!undo.can_undo() && !undo.can_redo());
    // Called from inside a transaction: an error, not a deadlock.
    write(&me, "local", |t| t.insert_text("b", 0, "x"));
    let (r, _) = me.transact("local", |_| undo.undo().is_err()).unwrap();
    assert!(r);
}

#[test]
fn handles_can_move_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Workspace>();
    send_sync::<weaver_doc::ChangeSubscription>();
    send_sync::<ChangeSet>();
    let a = ws(1);
    let b = a.clone();
    std::thread::spawn(move || b.transact("t", |t| t.add_block("x", "text", "")).unwrap())
        .join()
        .unwrap()
        .0
        .unwrap();
    assert!(a.block("x").unwrap().is_some());
}

#[test]
fn tiny_inputs_cannot_claim_huge_counts() {
    let a = ws(1);
    // 2^28 clients declared in 5 bytes.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x01];
    assert!(matches!(
        a.apply_update_v1(&bomb, "peer"),
        Err(DocError::Malformed { what: "update", .. })
    ));
    assert!(matches!(
        a.encode_diff_v1(&bomb),
        Err(DocError::Malformed {
            what: "state vector",
            ..
        })
    ));
    // The smallest valid inputs still pass.
    a.apply_update_v1(&[0, 0], "peer").unwrap();
    a.encode_diff_v1(&[0]).unwrap();
}

#[test]
fn wraps_existing_docs_only_with_utf16_offsets() {
    let doc = weaver_doc::yrs::Doc::with_options(Workspace::doc_options());
    let w = Workspace::from_doc(doc.clone()).unwrap();
    write(&w, "local", |t| t.add_block("b", "text", "😀"));
    // Same document underneath.
    assert!(
        Workspace::from_doc(doc)
            .unwrap()
            .block("b")
            .unwrap()
            .is_some()
    );
    let bytes = weaver_doc::yrs::Doc::new();
    assert!(matches!(
        Workspace::from_doc(bytes),
        Err(DocError::Invalid {
            field: "offset_kind",
            ..
        })
    ));
}

#[test]
fn events_start_from_the_current_state_and_see_block_replacement() {
    let a = ws(1);
    let b = ws(2);
    write(&a, "local", |t| {
        t.add_block("x", "text", "")?;
        t.request_index("x", "s", &json!({}))
    });
    sync(&a, &b, "relay");
    // Subscribing later: existing blocks and entries are known, not reported as added.
    let (log, _sub) = recorder(&b);
    write(&b, BRIDGE_ORIGIN, |t| {
        t.record_status("x", "s", &StatusRecord::processing(1, "c"))
    });
    let sets = take(&log);
    assert!(matches!(
        &sets[0].changes[..],
        [Change::StatusChanged {
            status: Status::Processing,
            ..
        }]
    ));

    // Both replicas add block "y" concurrently: one map wins. The replica that held the losing
    // map sees a replacement (removed + added); the one that held the winner sees nothing.
    let (log_a, _sub_a) = recorder(&a);
    write(&a, "local", |t| t.add_block("y", "text", "from a"));
    write(&b, "local", |t| t.add_block("y", "text", "from b"));
    take(&log);
    take(&log_a);
    sync(&a, &b, "relay");
    sync(&b, &a, "relay");
    let winner = b.block("y").unwrap().unwrap().content;
    let flat = |l: &Arc<Mutex<Vec<ChangeSet>>>| -> Vec<Change> {
        take(l)
            .into_iter()
            .flat_map(|c| c.changes)
            .filter(|c| c.block_id() == "y")
            .collect()
    };
    let (loser_log, winner_log) = if winner == "from a" {
        (&log, &log_a)
    } else {
        (&log_a, &log)
    };
    assert_eq!(
        flat(loser_log),
        [
            Change::BlockRemoved {
                block_id: "y".into()
            },
            Change::BlockAdded {
                block_id: "y".into(),
                block_type: "text".into()
            },
        ]
    );
    assert!(flat(winner_log).is_empty());
    assert_eq!(a.to_json().unwrap(), b.to_json().unwrap());
}
