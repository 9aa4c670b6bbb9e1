//! State vector validator; validated input must decode in yrs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::validate_state_vector;
use yrs::updates::decoder::Decode;

fuzz_target!(|data: &[u8]| {
    if validate_state_vector(data).is_ok() {
        assert!(yrs::StateVector::decode_v1(data).is_ok());
    }
});
