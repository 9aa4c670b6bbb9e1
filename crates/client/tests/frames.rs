//! Property tests of the client's frame handling against hostile servers: arbitrary bytes,
//! and valid frames garbled by flips, truncation and splicing, are refused or applied but never
//! panic, and the replica stays usable (a valid update still applies, local edits still land).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use weaver_client::fuzzing::FrameHarness;
use weaver_doc::Workspace;
use weaver_protocol::{
    AwarenessEntry, encode_awareness, encode_awareness_message, encode_permission_denied,
    encode_sync_step1, encode_sync_step2, encode_update,
};

/// Valid server frames: a step1, step2 and update of a real document, awareness, auth.
fn valid_frames() -> Vec<Vec<u8>> {
    let ws = Workspace::with_client_id(7);
    let (_, u1) = ws
        .transact("server", |t| t.add_block("s1", "text", "server text"))
        .unwrap();
    let (_, u2) = ws
        .transact("server", |t| t.insert_text("s1", 0, "more "))
        .unwrap();
    let aw = encode_awareness(&[AwarenessEntry {
        client_id: 9,
        clock: 1,
        state: r#"{"user":{"name":"x"}}"#.into(),
    }]);
    vec![
        encode_sync_step1(&ws.state_vector_v1().unwrap()),
        encode_sync_step2(&ws.encode_state_v1().unwrap()),
        encode_update(&u1),
        encode_update(&u2),
        encode_awareness_message(&aw),
        encode_permission_denied("read-only access"),
        vec![3],
    ]
}

#[derive(Debug, Clone)]
enum Garble {
    Flip(usize, u8),
    Truncate(usize),
    Splice(usize, Vec<u8>),
}

fn garble() -> impl Strategy<Value = Garble> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Garble::Flip(i, b)),
        any::<usize>().prop_map(Garble::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(i, v)| Garble::Splice(i, v)),
    ]
}

fn apply(frame: &mut Vec<u8>, g: &Garble) {
    if frame.is_empty() {
        return;
    }
    match g {
        Garble::Flip(i, b) => {
            let i = i % frame.len();
            frame[i] ^= b | 1;
        }
        Garble::Truncate(n) => frame.truncate(n % frame.len()),
        Garble::Splice(i, v) => {
            let i = i % frame.len();
            frame.splice(i..i, v.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut h = FrameHarness::open(dir.path()).unwrap();
        for f in &frames {
            let _ = h.feed(f);
        }
        h.add_block("local", "still works").unwrap();
        prop_assert!(h.json().unwrap().to_string().contains("still works"));
    }

    #[test]
    fn garbled_valid_frames_never_panic_and_the_replica_recovers(
        picks in proptest::collection::vec((0usize..7, proptest::collection::vec(garble(), 1..4)), 1..6)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut h = FrameHarness::open(dir.path()).unwrap();
        let valid = valid_frames();
        let mut all_refused = true;
        for (which, gs) in &picks {
            let mut f = valid[*which].clone();
            for g in gs {
                apply(&mut f, g);
            }
            // A garbled update may still be a well-formed one (other content under the same
            // ids): the CRDT then keeps what came first, as any Yjs peer would.
            all_refused &= h.feed(&f).is_err() || f == valid[*which] || *which == 0 || *which >= 4;
        }
        let _ = h.feed(&valid[1]);
        let _ = h.feed(&valid[3]);
        if all_refused {
            let json = h.json().unwrap().to_string();
            prop_assert!(json.contains("more server text"), "{}", json);
        }
        h.add_block("local", "ok").unwrap();
        prop_assert_eq!(h.unsynced(), 1);
    }
}

#[test]
fn the_harness_acknowledges_an_echo() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = FrameHarness::open(dir.path()).unwrap();
    h.add_block("mine", "x").unwrap();
    assert_eq!(h.unsynced(), 1);
    // The server's step1 for an empty room, then the echo of our update as the relay sends it.
    let replies = h.feed(&encode_sync_step1(&[0])).unwrap();
    assert_eq!(replies.len(), 1);
    let mut r = weaver_protocol::Reader::new(&replies[0][2..]);
    let step2 = r.read_var_u8_array().unwrap().to_vec();
    h.feed(&encode_update(&step2)).unwrap();
    assert_eq!(h.unsynced(), 0);
}

#[test]
fn a_server_cannot_grow_the_replica_past_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    // The harness's replica allows 1 MiB.
    let mut h = FrameHarness::open(dir.path()).unwrap();
    let ws = Workspace::with_client_id(7);
    let (_, big) = ws
        .transact("server", |t| {
            t.add_block("big", "text", &"x".repeat(2 << 20))
        })
        .unwrap();
    let err = h.feed(&encode_update(&big)).unwrap_err();
    assert!(
        matches!(
            err,
            weaver_client::FrameError::Apply(weaver_client::ReplicaError::TooLarge { .. })
        ),
        "{err:?}"
    );
    assert_eq!(h.json().unwrap()["blocks"], serde_json::json!([]));
    // Oversized awareness states are refused too.
    let aw = encode_awareness(&[AwarenessEntry {
        client_id: 9,
        clock: 1,
        state: format!("\"{}\"", "y".repeat(weaver_client::MAX_STATE_BYTES)),
    }]);
    assert!(h.feed(&encode_awareness_message(&aw)).is_err());
}
