//! Goes one step further than `validate_update`: validated updates are *applied* to a fresh yrs
//! doc and re-encoded. Panics found here are yrs integration bugs that the validator cannot
//! see (the relay must contain them with catch_unwind); keep any crash as a regression file.
//! Not in the default scripts/fuzz.sh list for that reason: run it explicitly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{UpdateLimits, validate_update_v1};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact};

fuzz_target!(|data: &[u8]| {
    if validate_update_v1(data, &UpdateLimits::default()).is_err() {
        return;
    }
    let Ok(update) = yrs::Update::decode_v1(data) else {
        panic!("validated but yrs refused");
    };
    let doc = Doc::new();
    let mut txn = doc.transact_mut();
    if txn.apply_update(update).is_ok() {
        let _ = txn.encode_state_as_update_v1(&StateVector::default());
    }
});
