//! Real Yjs 13.6 output (written by tests/js/make-corpus.mjs, committed as the fuzz seed corpus)
//! must pass the validators and decode in yrs; Yjs output that yrs reads differently must be
//! refused. Also replays every file under fuzz/corpus (including inputs the fuzzer found).

use weaver_protocol::{
    Message, ProtocolError, UpdateLimits, decode_awareness, decode_message, validate_state_vector,
    validate_update_v1,
};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

use crate::inputs::files;

#[test]
fn yjs_updates_validate_and_decode_in_yrs() {
    let corpus = files("fuzz/corpus/validate_update");
    let yjs: Vec<_> = corpus
        .iter()
        .filter(|(n, _)| n.starts_with("yjs-"))
        .collect();
    assert!(yjs.len() > 50, "corpus missing: run make-corpus.mjs");
    for (name, bytes) in yjs {
        let stats = validate_update_v1(bytes, &UpdateLimits::default())
            .unwrap_or_else(|e| panic!("{name}: validator refused real Yjs output: {e}"));
        let update =
            Update::decode_v1(bytes).unwrap_or_else(|e| panic!("{name}: yrs decode failed: {e}"));
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(update)
            .unwrap_or_else(|e| panic!("{name}: yrs apply failed: {e}"));
        if name != "yjs-empty.bin" {
            assert!(stats.structs + stats.delete_ranges > 0, "{name}: {stats:?}");
        }
    }
}

#[test]
fn yjs_full_states_round_trip_through_yrs() {
    // A full-state update applied to a yrs doc and re-encoded must validate too (yrs output of
    // Yjs-made content: formats, embeds, xml, subdocs).
    for (name, bytes) in files("fuzz/corpus/validate_update") {
        if !(name.starts_with("yjs-") && name.ends_with("-full.bin")) {
            continue;
        }
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(&bytes).unwrap())
            .unwrap();
        let again = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        validate_update_v1(&again, &UpdateLimits::default())
            .unwrap_or_else(|e| panic!("{name}: yrs re-encoding refused: {e}"));
    }
}

#[test]
fn every_fuzz_corpus_file_is_handled_without_panic() {
    // Fuzzer-found files are kept here too; whatever they are, validation must return, and
    // whatever validates must decode in yrs.
    for (name, bytes) in files("fuzz/corpus/validate_update") {
        if validate_update_v1(&bytes, &UpdateLimits::default()).is_ok() {
            assert!(
                Update::decode_v1(&bytes).is_ok(),
                "{name}: validated but yrs refused"
            );
        }
    }
}

#[test]
fn yjs_state_vectors_validate() {
    let svs = files("fuzz/corpus/state_vector");
    assert!(!svs.is_empty());
    for (name, bytes) in svs.iter().filter(|(n, _)| n.starts_with("yjs-")) {
        validate_state_vector(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        StateVector::decode_v1(bytes).unwrap_or_else(|e| panic!("{name}: yrs: {e}"));
    }
}

#[test]
fn yjs_awareness_updates_decode() {
    let aw = files("fuzz/corpus/awareness");
    assert!(!aw.is_empty());
    for (name, bytes) in aw.iter().filter(|(n, _)| n.starts_with("yjs-")) {
        let entries = decode_awareness(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!entries.is_empty(), "{name}");
    }
    let removed = decode_awareness(
        &files("fuzz/corpus/awareness")
            .into_iter()
            .find(|(n, _)| n == "yjs-removed.bin")
            .unwrap()
            .1,
    )
    .unwrap();
    assert!(removed[0].is_removal());
}

#[test]
fn yjs_frames_decode() {
    let frames = files("fuzz/corpus/decode_message");
    assert!(!frames.is_empty());
    for (name, bytes) in frames.iter().filter(|(n, _)| n.starts_with("yjs-")) {
        let msg = decode_message(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match msg {
            Message::SyncStep1(sv) => validate_state_vector(sv).unwrap(),
            Message::SyncStep2(u) | Message::Update(u) => {
                validate_update_v1(u, &UpdateLimits::default())
                    .map(|_| ())
                    .unwrap()
            }
            Message::Awareness(a) => assert!(decode_awareness(a).is_ok()),
            _ => {}
        }
    }
}

#[test]
fn yjs_output_that_yrs_reads_differently_is_refused() {
    let div = files("crates/protocol/tests/data/divergent");
    assert!(div.len() >= 2);
    for (name, bytes) in div {
        let err = validate_update_v1(&bytes, &UpdateLimits::default()).unwrap_err();
        assert!(
            matches!(err, ProtocolError::Unsupported(_)),
            "{name}: {err:?}"
        );
        // Why it is refused: yrs either fails on it or decodes something other than what
        // Yjs wrote (it re-encodes to different bytes).
        let reencoded = Update::decode_v1(&bytes).map(|u| {
            let doc = Doc::new();
            let mut txn = doc.transact_mut();
            let _ = txn.apply_update(u);
            txn.encode_state_as_update_v1(&StateVector::default())
        });
        assert!(
            reencoded.as_ref().map_or(true, |b| b != &bytes),
            "{name}: yrs now round-trips this; the refusal may be obsolete"
        );
    }
}
