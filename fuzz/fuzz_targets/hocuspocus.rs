//! Any Hocuspocus frame: the framing decoder, then the validator for whatever y-websocket
//! payload it carries, as the relay's Hocuspocus connection runs them. Nothing may panic; a
//! validated update or state vector must decode in yrs; a decoded address is within the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{
    HocusFrame, HocusMessage, MAX_ADDRESS_BYTES, Message, UpdateLimits, decode_awareness,
    decode_hocus_frame, split_address, validate_state_vector, validate_update_v1,
};
use yrs::updates::decoder::Decode;

fuzz_target!(|data: &[u8]| {
    let Ok(HocusFrame::Document { address, message }) = decode_hocus_frame(data) else {
        return;
    };
    assert!(address.len() <= MAX_ADDRESS_BYTES);
    let _ = split_address(address);
    if let HocusMessage::Yjs { message, raw } = message {
        assert!(data.ends_with(raw));
        match message {
            Message::SyncStep1(sv) => {
                if validate_state_vector(sv).is_ok() {
                    assert!(yrs::StateVector::decode_v1(sv).is_ok());
                }
            }
            Message::SyncStep2(u) | Message::Update(u) => {
                if validate_update_v1(u, &UpdateLimits::default()).is_ok() {
                    assert!(yrs::Update::decode_v1(u).is_ok());
                }
            }
            Message::Awareness(a) => {
                let _ = decode_awareness(a);
            }
            _ => {}
        }
    }
});
