//! The y-websocket envelope: one protocol message per WebSocket binary frame.

use crate::ProtocolError;
use crate::lib0::{Reader, write_var_string, write_var_u8_array};

pub const MSG_SYNC: u8 = 0;
pub const MSG_AWARENESS: u8 = 1;
pub const MSG_AUTH: u8 = 2;
pub const MSG_QUERY_AWARENESS: u8 = 3;

pub const SYNC_STEP1: u8 = 0;
pub const SYNC_STEP2: u8 = 1;
pub const SYNC_UPDATE: u8 = 2;

/// One decoded frame. Payloads borrow from the frame; nothing is copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A state vector (not yet validated: see [`crate::validate_state_vector`]).
    SyncStep1(&'a [u8]),
    /// A v1 update (not yet validated: see [`crate::validate_update_v1`]).
    SyncStep2(&'a [u8]),
    Update(&'a [u8]),
    /// A raw awareness update (see [`crate::decode_awareness`]).
    Awareness(&'a [u8]),
    /// y-protocols auth: only `permissionDenied` (0) is defined; other sub-types are carried.
    Auth {
        kind: u64,
        reason: &'a str,
    },
    QueryAwareness,
}

/// Decodes one frame. Trailing bytes after a complete message are an error: the stock clients
/// never send them, and accepting them would let junk ride along unnoticed.
pub fn decode_message(frame: &[u8]) -> Result<Message<'_>, ProtocolError> {
    if frame.is_empty() {
        return Err(ProtocolError::Empty);
    }
    let mut r = Reader::new(frame);
    let msg = match r.read_var_u64()? {
        0 => {
            let sync_type = r.read_var_u64()?;
            let data = r.read_var_u8_array()?;
            match sync_type {
                0 => Message::SyncStep1(data),
                1 => Message::SyncStep2(data),
                2 => Message::Update(data),
                other => return Err(ProtocolError::UnknownSyncType(other)),
            }
        }
        1 => Message::Awareness(r.read_var_u8_array()?),
        2 => {
            let kind = r.read_var_u64()?;
            let reason = if r.is_empty() {
                ""
            } else {
                r.read_var_string()?
            };
            Message::Auth { kind, reason }
        }
        3 => Message::QueryAwareness,
        other => return Err(ProtocolError::UnknownMessageType(other)),
    };
    if !r.is_empty() {
        return Err(ProtocolError::TrailingBytes(r.remaining()));
    }
    Ok(msg)
}

fn sync_frame(sync_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 12);
    out.push(MSG_SYNC);
    out.push(sync_type);
    write_var_u8_array(&mut out, data);
    out
}

pub fn encode_sync_step1(state_vector: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_STEP1, state_vector)
}

pub fn encode_sync_step2(update: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_STEP2, update)
}

pub fn encode_update(update: &[u8]) -> Vec<u8> {
    sync_frame(SYNC_UPDATE, update)
}

pub fn encode_awareness_message(awareness_update: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(awareness_update.len() + 6);
    out.push(MSG_AWARENESS);
    write_var_u8_array(&mut out, awareness_update);
    out
}

pub fn encode_query_awareness() -> Vec<u8> {
    vec![MSG_QUERY_AWARENESS]
}

/// y-protocols `auth.js` permissionDenied: `[2, 0, varString(reason)]`.
pub fn encode_permission_denied(reason: &str) -> Vec<u8> {
    let mut out = vec![MSG_AUTH, 0];
    write_var_string(&mut out, reason);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_bytes_match_the_reference() {
        // Empty doc: state vector is `00`, so step1 is `00 00 01 00`; step2 of an empty update
        // (`00 00`) is `00 01 02 00 00` (protocol.md §2.3).
        assert_eq!(encode_sync_step1(&[0]), vec![0, 0, 1, 0]);
        assert_eq!(encode_sync_step2(&[0, 0]), vec![0, 1, 2, 0, 0]);
        assert_eq!(decode_message(&[0, 0, 1, 0]), Ok(Message::SyncStep1(&[0])));
        assert_eq!(decode_message(&[3]), Ok(Message::QueryAwareness));
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(decode_message(&[]), Err(ProtocolError::Empty));
        assert_eq!(
            decode_message(&[9]),
            Err(ProtocolError::UnknownMessageType(9))
        );
        assert_eq!(
            decode_message(&[0, 7, 0]),
            Err(ProtocolError::UnknownSyncType(7))
        );
        assert!(decode_message(&[0, 2, 5, 1]).is_err());
        assert_eq!(
            decode_message(&[0, 0, 1, 0, 0]),
            Err(ProtocolError::TrailingBytes(1))
        );
        assert_eq!(
            decode_message(&encode_permission_denied("no")),
            Ok(Message::Auth {
                kind: 0,
                reason: "no"
            })
        );
    }
}
