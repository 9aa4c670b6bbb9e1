//! Access-token parser: never panics on any text; whatever verifies re-mints to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weaver_auth::TokenKey;

// Same key as the seed tokens written by crates/protocol/tests/js/make-corpus.mjs.
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Ok(key) = TokenKey::new(KEY) else { return };
    let text = String::from_utf8_lossy(data);
    let now = 1_700_000_000;
    if let Ok(claims) = key.verify(&text, now) {
        assert_eq!(key.mint(&claims), text);
        assert!(claims.expires_at > now);
    }
    let _ = TokenKey::from_base64(&text);
});
