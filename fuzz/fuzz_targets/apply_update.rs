//! Goes one step further than `validate_update`: validated updates are *applied* to a fresh yrs
//! doc and re-encoded. Panics found here are yrs integration bugs the validator cannot see (the
//! relay must contain them with catch_unwind); keep each new one as a regression file
//! (crates/protocol/tests/data/fuzz-regressions/apply_update-panic-*.bin).
//!
//! Panics at locations already known (KNOWN_PANICS) are caught and ignored so the fuzzer can
//! keep looking for new ones; any other panic aborts as usual. Leak detection must be off
//! (scripts/fuzz.sh does it): yrs leaks every doc holding a subdocument.
#![no_main]

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{UpdateLimits, validate_update_v1};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

/// `src/file:line` of yrs panics already reported, relative to the yrs crate root.
const KNOWN_PANICS: &[&str] = &[
    // `parent.block_len -= item.len()` in TransactionMut::delete (subtract with overflow).
    "src/transaction.rs:795",
    // `list.find_index(clock_start).unwrap()` in BlockStore::push (skip replacement): a panic
    // in release builds too.
    "src/block_store.rs:317",
];

/// Where a yrs crate root ends in a panic location: the registry copy, or the patched copy this
/// workspace builds through `[patch.crates-io]` (vendor/yrs/WEAVER.md; its edits leave these
/// two sites on the same lines). Both are the same yrs, so both are known.
const YRS_ROOTS: &[&str] = &["yrs-0.28.1/", "vendor/yrs/"];

fn is_known_panic(at: &str) -> bool {
    KNOWN_PANICS.iter().any(|k| {
        at.strip_suffix(k)
            .is_some_and(|root| YRS_ROOTS.iter().any(|r| root.ends_with(r)))
    })
}

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}
static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            if is_known_panic(&at) {
                LAST_PANIC.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
                std::process::abort();
            }
        }));
    });
    if validate_update_v1(data, &UpdateLimits::default()).is_err() {
        return;
    }
    let Ok(update) = yrs::Update::decode_v1(data) else {
        panic!("validated but yrs refused");
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let doc = Doc::new();
        let mut txn = doc.transact_mut();
        if txn.apply_update(update).is_ok() {
            let _ = txn.encode_state_as_update_v1(&StateVector::default());
        }
    }));
    // A known panic was caught (the hook aborted on any other).
    let _ = outcome;
});
