//! Room names: the alphabet (shared with listing prefixes) and the validation every entry point
//! applies before a name is used as a key.

use crate::error::RelayError;

/// The alphabet of room names (and of listing prefixes).
pub(crate) fn room_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// Room names: 1–128 characters of `[A-Za-z0-9._~-]`, not `.`/`..` and not a reserved top-level
/// path (including the web demo's files). Names are keys, never file paths.
pub fn validate_room_name(room: &str) -> Result<(), RelayError> {
    const RESERVED: &[&str] = &[
        "api",
        "assets",
        "healthz",
        "readyz",
        "metrics",
        "index.html",
        "sw.js",
        ".",
        "..",
    ];
    let ok = !room.is_empty()
        && room.len() <= 128
        && room.bytes().all(room_name_byte)
        && !RESERVED.contains(&room);
    if ok {
        Ok(())
    } else {
        let shown: String = room.chars().take(140).collect();
        Err(RelayError::InvalidRoomName(shown))
    }
}
