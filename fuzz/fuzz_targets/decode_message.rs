//! Any frame: the envelope decoder, then the validator for whatever payload it carries. Nothing
//! may panic; a validated update or state vector must decode in yrs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{
    Message, UpdateLimits, decode_awareness, decode_message, validate_state_vector,
    validate_update_v1,
};
use yrs::updates::decoder::Decode;

fuzz_target!(|data: &[u8]| {
    match decode_message(data) {
        Ok(Message::SyncStep1(sv)) => {
            if validate_state_vector(sv).is_ok() {
                assert!(yrs::StateVector::decode_v1(sv).is_ok());
            }
        }
        Ok(Message::SyncStep2(u) | Message::Update(u)) => {
            if validate_update_v1(u, &UpdateLimits::default()).is_ok() {
                assert!(yrs::Update::decode_v1(u).is_ok());
            }
        }
        Ok(Message::Awareness(a)) => {
            let _ = decode_awareness(a);
        }
        _ => {}
    }
});
