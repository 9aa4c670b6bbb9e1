//! The Hocuspocus framing (`@hocuspocus/provider` 4.x, `@hocuspocus/server`): every message
//! starts with a varString *address* (the document name, or `name\0sessionId` for a provider
//! with `sessionAwareness`), so one WebSocket carries several documents; then a varUint type.
//! Types 0 (sync), 1 (awareness) and 3 (queryAwareness) are the y-websocket messages byte for
//! byte after the address; 2 is Hocuspocus's own auth (token / permissionDenied /
//! authenticated), 5 stateless, 7 close, 8 syncStatus. Ping (9) and Pong (10) travel bare, one
//! byte without an address. docs/protocol.md ("Hocuspocus protocol") lists the sources.
//!
//! Sans-IO like the rest of the crate: bytes in → a borrowed [`HocusFrame`] or a
//! [`ProtocolError`]; encoders for what a server sends. Must not know: sockets, rooms, tokens.
//! No function panics on any input (fuzzed: `fuzz/fuzz_targets/hocuspocus.rs`).

use crate::ProtocolError;
use crate::lib0::{Reader, write_var_string, write_var_u64};
use crate::message::{Message, decode_message};

pub const HOCUS_SYNC: u64 = 0;
pub const HOCUS_AWARENESS: u64 = 1;
pub const HOCUS_AUTH: u64 = 2;
pub const HOCUS_QUERY_AWARENESS: u64 = 3;
pub const HOCUS_STATELESS: u64 = 5;
pub const HOCUS_CLOSE: u64 = 7;
pub const HOCUS_SYNC_STATUS: u64 = 8;
pub const HOCUS_PING: u8 = 9;
pub const HOCUS_PONG: u8 = 10;

/// Auth sub-types (`@hocuspocus/common` `AuthMessageType`).
pub const AUTH_TOKEN: u64 = 0;
pub const AUTH_PERMISSION_DENIED: u64 = 1;
pub const AUTH_AUTHENTICATED: u64 = 2;

/// Longest address accepted: a room name is at most 128 bytes, a provider session id a few
/// more; anything far beyond is hostile and refused before it is copied anywhere.
pub const MAX_ADDRESS_BYTES: usize = 512;

/// The scope strings of an `authenticated` answer (`AuthorizedScope` in the provider).
pub const SCOPE_READ_WRITE: &str = "read-write";
pub const SCOPE_READ_ONLY: &str = "readonly";

/// One decoded Hocuspocus frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HocusFrame<'a> {
    /// The bare one-byte Ping a server may send; the provider answers [`HocusFrame::Pong`].
    Ping,
    /// The provider's bare answer to a Ping.
    Pong,
    /// A message for one document.
    Document {
        /// The raw address: the document name, or `name\0sessionId` (see [`split_address`]).
        address: &'a str,
        message: HocusMessage<'a>,
    },
}

/// The message of a document frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HocusMessage<'a> {
    /// Sync, awareness or queryAwareness: the y-websocket message, decoded, and its bytes
    /// (`raw`, everything after the address), which a y-websocket peer would receive as they are.
    Yjs {
        message: Message<'a>,
        raw: &'a [u8],
    },
    /// The provider's token (`""` when it has none) and, since 3.x, its version.
    Token {
        token: &'a str,
        provider_version: Option<&'a str>,
    },
    PermissionDenied(&'a str),
    /// The scope granted: [`SCOPE_READ_WRITE`] or [`SCOPE_READ_ONLY`].
    Authenticated(&'a str),
    /// An application payload the server hands to its hooks.
    Stateless(&'a str),
    /// The provider detaches the document (no reason), or the server closed it (a reason).
    Close(Option<&'a str>),
    /// The server's answer to a sync write: applied (`true`) or refused (read-only).
    SyncStatus(bool),
}

/// Splits a raw address into the document name and the provider's session id, if any
/// (`@hocuspocus/common` `parseRoutingKey`).
pub fn split_address(address: &str) -> (&str, Option<&str>) {
    match address.split_once('\0') {
        Some((name, session)) => (name, Some(session)),
        None => (address, None),
    }
}

/// Decodes one binary frame. Trailing bytes after a complete message are an error, as in
/// [`decode_message`].
pub fn decode_hocus_frame(frame: &[u8]) -> Result<HocusFrame<'_>, ProtocolError> {
    match frame {
        [] => return Err(ProtocolError::Empty),
        // One byte cannot be an addressed message (the shortest is `00 <type>`), so a lone
        // 9 or 10 is unambiguous; the provider tests `length === 1` the same way.
        [HOCUS_PING] => return Ok(HocusFrame::Ping),
        [HOCUS_PONG] => return Ok(HocusFrame::Pong),
        _ => {}
    }
    let mut r = Reader::new(frame);
    // The name's length is checked against the limit before the bytes left, so a hostile
    // length is named as such in the close reason.
    let len = r.read_var_u64()?;
    if len > MAX_ADDRESS_BYTES as u64 {
        return Err(ProtocolError::LimitExceeded("document name too long"));
    }
    let address =
        std::str::from_utf8(r.read_exact(len as usize)?).map_err(|_| ProtocolError::InvalidUtf8)?;
    let body = &frame[r.position()..];
    let message = match r.read_var_u64()? {
        HOCUS_SYNC | HOCUS_AWARENESS | HOCUS_QUERY_AWARENESS => {
            let message = decode_message(body)?;
            return Ok(HocusFrame::Document {
                address,
                message: HocusMessage::Yjs { message, raw: body },
            });
        }
        HOCUS_AUTH => match r.read_var_u64()? {
            AUTH_TOKEN => {
                let token = r.read_var_string()?;
                let provider_version = if r.is_empty() {
                    None
                } else {
                    Some(r.read_var_string()?)
                };
                HocusMessage::Token {
                    token,
                    provider_version,
                }
            }
            AUTH_PERMISSION_DENIED => HocusMessage::PermissionDenied(r.read_var_string()?),
            AUTH_AUTHENTICATED => HocusMessage::Authenticated(r.read_var_string()?),
            other => return Err(ProtocolError::UnknownAuthType(other)),
        },
        HOCUS_STATELESS => HocusMessage::Stateless(r.read_var_string()?),
        HOCUS_CLOSE => {
            if r.is_empty() {
                HocusMessage::Close(None)
            } else {
                HocusMessage::Close(Some(r.read_var_string()?))
            }
        }
        HOCUS_SYNC_STATUS => HocusMessage::SyncStatus(r.read_var_u64()? == 1),
        other => return Err(ProtocolError::UnknownMessageType(other)),
    };
    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(HocusFrame::Document { address, message })
}

fn addressed(address: &str, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(address.len() + extra + 4);
    write_var_string(&mut out, address);
    out
}

/// A y-websocket sync, awareness or queryAwareness message (as a room sends it) addressed to
/// one document: the address, then the message unchanged.
pub fn encode_hocus_document(address: &str, yjs_message: &[u8]) -> Vec<u8> {
    let mut out = addressed(address, yjs_message.len());
    out.extend_from_slice(yjs_message);
    out
}

/// `authenticated` with the scope the provider exposes as `authorizedScope`.
pub fn encode_hocus_authenticated(address: &str, read_only: bool) -> Vec<u8> {
    let scope = if read_only {
        SCOPE_READ_ONLY
    } else {
        SCOPE_READ_WRITE
    };
    let mut out = addressed(address, scope.len() + 3);
    write_var_u64(&mut out, HOCUS_AUTH);
    write_var_u64(&mut out, AUTH_AUTHENTICATED);
    write_var_string(&mut out, scope);
    out
}

/// `permissionDenied`: the provider emits `authenticationFailed` with `reason`.
pub fn encode_hocus_permission_denied(address: &str, reason: &str) -> Vec<u8> {
    let mut out = addressed(address, reason.len() + 3);
    write_var_u64(&mut out, HOCUS_AUTH);
    write_var_u64(&mut out, AUTH_PERMISSION_DENIED);
    write_var_string(&mut out, reason);
    out
}

/// The provider's token message (what a client sends first for each document).
pub fn encode_hocus_token(address: &str, token: &str, provider_version: Option<&str>) -> Vec<u8> {
    let mut out = addressed(address, token.len() + 8);
    write_var_u64(&mut out, HOCUS_AUTH);
    write_var_u64(&mut out, AUTH_TOKEN);
    write_var_string(&mut out, token);
    if let Some(v) = provider_version {
        write_var_string(&mut out, v);
    }
    out
}

/// `syncStatus`: the provider counts one unsynced change down per `applied` answer.
pub fn encode_hocus_sync_status(address: &str, applied: bool) -> Vec<u8> {
    let mut out = addressed(address, 2);
    write_var_u64(&mut out, HOCUS_SYNC_STATUS);
    write_var_u64(&mut out, u64::from(applied));
    out
}

/// A stateless payload addressed to one document.
pub fn encode_hocus_stateless(address: &str, payload: &str) -> Vec<u8> {
    let mut out = addressed(address, payload.len() + 2);
    write_var_u64(&mut out, HOCUS_STATELESS);
    write_var_string(&mut out, payload);
    out
}

/// The bare application-level ping; a 4.x provider answers with `[10]`.
pub fn encode_hocus_ping() -> Vec<u8> {
    vec![HOCUS_PING]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{encode_awareness_message, encode_sync_step1};

    #[test]
    fn provider_messages_decode() {
        // What `AuthenticationMessage` writes: "doc", Auth, Token, "tok", version "4.8.0".
        let auth = encode_hocus_token("doc", "tok", Some("4.8.0"));
        assert_eq!(&auth[..6], &[3, b'd', b'o', b'c', 2, 0]);
        assert_eq!(
            decode_hocus_frame(&auth),
            Ok(HocusFrame::Document {
                address: "doc",
                message: HocusMessage::Token {
                    token: "tok",
                    provider_version: Some("4.8.0")
                }
            })
        );
        let step1 = encode_hocus_document("doc", &encode_sync_step1(&[0]));
        assert_eq!(step1, vec![3, b'd', b'o', b'c', 0, 0, 1, 0]);
        assert_eq!(
            decode_hocus_frame(&step1),
            Ok(HocusFrame::Document {
                address: "doc",
                message: HocusMessage::Yjs {
                    message: Message::SyncStep1(&[0]),
                    raw: &[0, 0, 1, 0]
                }
            })
        );
        let aw = encode_hocus_document("a\0s1", &encode_awareness_message(&[0]));
        let Ok(HocusFrame::Document { address, .. }) = decode_hocus_frame(&aw) else {
            panic!("awareness frame")
        };
        assert_eq!(split_address(address), ("a", Some("s1")));
        assert_eq!(decode_hocus_frame(&[1, b'x', 7]).map(|_| ()), Ok(()));
        assert_eq!(decode_hocus_frame(&[10]), Ok(HocusFrame::Pong));
        assert_eq!(
            decode_hocus_frame(&encode_hocus_ping()),
            Ok(HocusFrame::Ping)
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let cases: Vec<(Vec<u8>, HocusMessage)> = vec![
            (
                encode_hocus_authenticated("d", true),
                HocusMessage::Authenticated(SCOPE_READ_ONLY),
            ),
            (
                encode_hocus_permission_denied("d", "no"),
                HocusMessage::PermissionDenied("no"),
            ),
            (
                encode_hocus_sync_status("d", true),
                HocusMessage::SyncStatus(true),
            ),
            (
                encode_hocus_stateless("d", "hi"),
                HocusMessage::Stateless("hi"),
            ),
        ];
        for (bytes, message) in cases {
            assert_eq!(
                decode_hocus_frame(&bytes),
                Ok(HocusFrame::Document {
                    address: "d",
                    message
                })
            );
        }
    }

    #[test]
    fn hostile_frames_are_errors() {
        assert_eq!(decode_hocus_frame(&[]), Err(ProtocolError::Empty));
        // Garbage after a valid document name.
        assert!(decode_hocus_frame(&[1, b'x', 0xff, 0xff, 0xff]).is_err());
        assert!(decode_hocus_frame(&[1, b'x', 0, 0, 1, 0, 9]).is_err());
        // A huge document-name length.
        assert_eq!(
            decode_hocus_frame(&[0xff, 0xff, 0xff, 0xff, 0x0f, b'x']),
            Err(ProtocolError::LimitExceeded("document name too long"))
        );
        let mut long = Vec::new();
        write_var_string(&mut long, &"x".repeat(MAX_ADDRESS_BYTES + 1));
        long.push(0);
        assert!(decode_hocus_frame(&long).is_err());
        // Unknown types, at both levels.
        assert_eq!(
            decode_hocus_frame(&[1, b'x', 42]),
            Err(ProtocolError::UnknownMessageType(42))
        );
        assert_eq!(
            decode_hocus_frame(&[1, b'x', 2, 9, 0]),
            Err(ProtocolError::UnknownAuthType(9))
        );
        // A name that is not UTF-8, and a name with nothing after it.
        assert_eq!(
            decode_hocus_frame(&[1, 0xff, 0]),
            Err(ProtocolError::InvalidUtf8)
        );
        assert!(decode_hocus_frame(&[1, b'x']).is_err());
        assert_eq!(
            decode_hocus_frame(&[1, b'x', 5, 0, 1]),
            Err(ProtocolError::TrailingBytes(1))
        );
    }
}
