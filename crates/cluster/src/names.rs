//! How a room name becomes a NATS subject token or KV key, and which stream holds a room.
//!
//! Room names are arbitrary UTF-8 (they may contain `.`, `*`, `>`, spaces, `%`, unicode), while a
//! subject token must not contain `.`, `*`, `>` or whitespace and a KV key allows only
//! `[-/_=.a-zA-Z0-9]`. One reversible escape serves both: `[A-Za-z0-9_-]` stays as it is, every
//! other byte becomes `=XX` (upper-case hex), and the empty name is the lone token `=` (a token
//! may not be empty). Decoding is exact, so listings read names back from subjects and keys.

/// Escapes a room name into a subject token / KV key (see the module doc).
pub fn encode_room(room: &str) -> String {
    if room.is_empty() {
        return "=".to_owned();
    }
    let mut out = String::with_capacity(room.len());
    for &b in room.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Inverse of [`encode_room`]; `None` for a token this crate did not write.
pub fn decode_room(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hi = hex_val(*bytes.get(i + 1)?)?;
            let lo = hex_val(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The stream (0..streams) that holds `room`: FNV-1a 64 of the name's bytes. Stable across
/// processes, versions and platforms (unlike std's `DefaultHasher`), which is the point: every
/// node must agree, and so must every later start. Changing the number of streams moves rooms,
/// so a deployment keeps it fixed.
pub fn stream_index(room: &str, streams: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in room.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The remainder is below `streams`, a u32.
    u32::try_from(h % u64::from(streams.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_names_round_trip_into_valid_tokens() {
        for name in [
            "",
            "plain",
            "a.b.c",
            "*",
            ">",
            "with space",
            "100%",
            "=3D",
            "ünïcødé 文档",
            "tab\there",
            "a/b",
        ] {
            let token = encode_room(name);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'='),
                "{token}"
            );
            assert_eq!(decode_room(&token).as_deref(), Some(name));
        }
        assert_eq!(decode_room("a.b"), None);
        assert_eq!(decode_room("=4"), None);
    }

    #[test]
    fn stream_index_is_stable_and_in_range() {
        assert_eq!(stream_index("room-1", 8), stream_index("room-1", 8));
        // Pinned: a different value would move every stored room to another stream.
        assert_eq!(stream_index("", 8), (0xcbf2_9ce4_8422_2325u64 % 8) as u32);
        for i in 0..100 {
            assert!(stream_index(&format!("r{i}"), 8) < 8);
        }
        assert_eq!(stream_index("x", 1), 0);
    }
}
