//! Room names: the alphabet (shared with listing prefixes) and the validation every entry point
//! applies before a name is used as a key.
//!
//! Names are keys (redb table keys, escaped NATS tokens in weaver-cluster), never file paths,
//! anywhere. The alphabet still leaves out what is unsafe in URLs, logs and headers (spaces,
//! `%`, `?`, `#`, quotes, control bytes, non-ASCII), and a `/` must separate non-empty segments
//! other than `.` and `..`, so no proxy or client library that normalises paths can turn one
//! name into another.

use crate::error::RelayError;

/// The alphabet of room names (and of listing prefixes): `[A-Za-z0-9._~-]` plus `:`, `@` and
/// `/`, so names of apps migrating from y-websocket (`doc:123`, `org.team/doc`) fit.
pub(crate) fn room_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b':' | b'@' | b'/')
}

/// Room names: 1–128 characters of `[A-Za-z0-9._~:@/-]`, not a reserved top-level path (the
/// web demo's files among them); a `/` only between segments that are neither empty nor `.`
/// or `..` (`org.team/doc`, sent URL-encoded as `org.team%2Fdoc`). Names are keys, never file
/// paths.
pub fn validate_room_name(room: &str) -> Result<(), RelayError> {
    const RESERVED: &[&str] = &[
        "api",
        "assets",
        "healthz",
        "readyz",
        "metrics",
        "index.html",
        "sw.js",
    ];
    let ok = !room.is_empty()
        && room.len() <= 128
        && room.bytes().all(room_name_byte)
        && room
            .split('/')
            .all(|segment| !matches!(segment, "" | "." | ".."))
        && !RESERVED.contains(&room);
    if ok {
        Ok(())
    } else {
        let shown: String = room.chars().take(140).collect();
        Err(RelayError::InvalidRoomName(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_and_refused_names() {
        for ok in [
            "a",
            "doc:123",
            "org.team/doc",
            "org.team/doc/v2",
            "user@example.com",
            "a.b_c~d-e",
            "...a",
            &"x".repeat(128),
        ] {
            assert!(validate_room_name(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "/a",
            "a/",
            "a//b",
            "a/./b",
            "a/../b",
            "../a",
            "a b",
            "a%2Fb",
            "a?b",
            "a#b",
            "é",
            "a\0b",
            "api",
            "index.html",
            &"x".repeat(129),
        ] {
            assert!(validate_room_name(bad).is_err(), "{bad:?}");
        }
    }
}
