//! Documents a yrs 0.28.1 leak found by the `apply_update` fuzz target (LeakSanitizer): a `Doc`
//! that has integrated a subdocument (ContentDoc) is never freed after it is dropped, together
//! with the subdocument's store: about 2.6 KB per doc, more with content. For the relay this
//! means every unload of a room whose document contains a subdocument leaks that room's whole
//! in-memory document. [`weaver_protocol::UpdateStats::subdocs`] lets the relay refuse
//! subdocuments by policy. If this test starts failing, yrs fixed the leak: delete it.
//!
//! Measured through RSS (the crate forbids `unsafe`, so no counting allocator); alone in its
//! own test binary so no other test allocates meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use weaver_protocol::{UpdateLimits, validate_update_v1};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/validate_update")
            .join(name),
    )
    .unwrap()
}

/// RSS growth over `n` rounds of: new doc, apply `update`, drop.
fn growth(update: &[u8], n: usize) -> u64 {
    // Warm up allocator pools first.
    for _ in 0..50 {
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
    }
    let before = rss_bytes();
    for _ in 0..n {
        let doc = Doc::new();
        doc.transact_mut()
            .apply_update(Update::decode_v1(update).unwrap())
            .unwrap();
    }
    rss_bytes().saturating_sub(before)
}

#[test]
fn yrs_leaks_docs_that_contain_subdocuments() {
    if !Path::new("/proc/self/statm").exists() {
        return;
    }
    let with_subdocs = corpus("yjs-subdocs-full.bin");
    let without = corpus("yjs-nested-types-full.bin");
    assert!(
        validate_update_v1(&with_subdocs, &UpdateLimits::default())
            .unwrap()
            .subdocs
            > 0
    );
    assert_eq!(
        validate_update_v1(&without, &UpdateLimits::default())
            .unwrap()
            .subdocs,
        0
    );
    let n = 4000;
    let leak = growth(&with_subdocs, n);
    let control = growth(&without, n);
    eprintln!("RSS growth over {n} docs: with subdocs {leak} B, without {control} B");
    assert!(
        leak > 4 * 1024 * 1024,
        "yrs no longer leaks subdoc docs ({leak} B)?"
    );
    assert!(control < 1024 * 1024, "control grew {control} B");
}
