//! Updates that pass the validator and decode in yrs 0.28.1, but make `apply_update` panic
//! (found by the `apply_update` fuzz target; files `apply_update-panic-*` in
//! tests/data/fuzz-regressions). The validator cannot see these: they are integration bugs in
//! yrs:
//! - `apply_update-panic-block-len-underflow.bin`: `parent.block_len -= item.len()` underflows in
//!   `TransactionMut::delete` (debug builds panic; release builds wrap and corrupt the length);
//! - `apply_update-panic-blockstore-push-unwrap.bin` (32 bytes: a deleted item, skips and GC
//!   ranges of one client): `find_index(..).unwrap()` on `None` in `BlockStore::push`, a panic
//!   in release builds too.
//!
//! Whoever applies client updates must run `apply_update` under `catch_unwind` and throw the
//! doc away after a panic. If this test fails because yrs stopped panicking: good, update it.

use weaver_protocol::{UpdateLimits, validate_update_v1};
use yrs::updates::decoder::Decode;
use yrs::{Doc, Transact, Update};

use crate::inputs::fuzz_regressions;

#[test]
fn validated_updates_can_still_panic_yrs_integration() {
    let mut n = 0;
    for (name, bytes) in fuzz_regressions() {
        if !name.starts_with("apply_update-panic-") {
            continue;
        }
        assert!(
            validate_update_v1(&bytes, &UpdateLimits::default()).is_ok(),
            "{name}"
        );
        assert!(Update::decode_v1(&bytes).is_ok(), "{name}");
        let outcome = std::panic::catch_unwind(move || {
            let update = Update::decode_v1(&bytes).unwrap();
            let doc = Doc::new();
            let mut txn = doc.transact_mut();
            let _ = txn.apply_update(update);
        });
        if cfg!(debug_assertions) || name.contains("unwrap") {
            assert!(outcome.is_err(), "{name}: yrs no longer panics");
        }
        n += 1;
    }
    assert!(n >= 1);
}
