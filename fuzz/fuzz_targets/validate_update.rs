//! The v1 update validator. It must never panic, and whatever it accepts yrs 0.28.1 must decode
//! without panicking or failing (a stack overflow here would abort the fuzzer: that is the point).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{UpdateLimits, validate_update_v1};
use yrs::updates::decoder::Decode;

fuzz_target!(|data: &[u8]| {
    if validate_update_v1(data, &UpdateLimits::default()).is_ok() {
        if let Err(e) = yrs::Update::decode_v1(data) {
            panic!("validated but yrs refused: {e}");
        }
    }
});
