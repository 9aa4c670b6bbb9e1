//! Awareness decoder: never panics; what decodes re-encodes to the same bytes (one form only).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_protocol::{decode_awareness, encode_awareness};

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = decode_awareness(data) {
        assert_eq!(encode_awareness(&entries), data);
    }
});
