//! The journal decoder (`weaver_relay::journal`, what start-up replays after a crash): never
//! panics on any file; what it accepts re-encodes to exactly the bytes before its cut, and
//! the cut (if any) is at a frame boundary inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_relay::journal::{HEADER_LEN, decode_frames, decode_header, encode_frame};

fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    let decoded = decode_frames(data);
    let head = HEADER_LEN.min(data.len());
    let mut again = data[..head].to_vec();
    for rows in &decoded.frames {
        encode_frame(
            rows.iter()
                .map(|r| (r.room.as_str(), r.seq, r.update.as_slice())),
            &mut again,
        );
    }
    let end = decoded.cut.as_ref().map_or(data.len(), |c| c.offset);
    assert!(end <= data.len());
    assert_eq!(&again[..], &data[..end]);
});
