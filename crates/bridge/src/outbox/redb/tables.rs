//! The redb engine's on-disk format: the `bridge_*` table definitions, the composite key
//! codecs, the versioned value codec and the lease value. Documented in docs/storage.md;
//! changing anything here changes the file format (bump `SCHEMA_VERSION`).

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::ApiCall;
use crate::outbox::OutboxError;

type Bytes<'a> = &'a [u8];

/// Version of the table layout; stored in `bridge_meta["schema_version"]`.
pub const SCHEMA_VERSION: u64 = 1;

/// Counters (`fence`, `parked_seq`, `writeback_seq`, `failure_notice_seq`) and
/// `schema_version`.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("bridge_meta");
/// call id → `ApiCall`.
pub(super) const CALLS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_calls");
/// call id + seq (u32 BE) → `Event`.
pub(super) const EVENTS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_events");
/// `trigger_key` → call id: one call per (room, block, index, attempt).
pub(super) const TRIGGERS: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_triggers");
/// `time_id_key(due, id)` → empty: the ready queue.
pub(super) const READY: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_ready");
/// call id → `encode_lease(token, until)`.
pub(super) const LEASES: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_leases");
/// `time_id_key(until, id)` → empty: leases by expiry.
pub(super) const LEASE_EXPIRY: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("bridge_lease_expiry");
/// `ext_key(integration, external id)` → call id.
pub(super) const EXTERNAL: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_external");
/// `lp(integration)` + webhook id → first seen (ms).
pub(super) const WEBHOOK_SEEN: TableDefinition<Bytes, u64> =
    TableDefinition::new("bridge_webhook_seen");
/// `ext_key` + 0 + seq (u64 BE) → `ParkedEvent`.
pub(super) const PARKED: TableDefinition<Bytes, Bytes> = TableDefinition::new("bridge_parked");
/// seq → `Writeback`.
pub(super) const WRITEBACK: TableDefinition<u64, Bytes> = TableDefinition::new("bridge_writeback");
/// seq → `FailureNotice`: `call.failed` webhooks not delivered yet.
pub(super) const FAILURE_NOTICES: TableDefinition<u64, Bytes> =
    TableDefinition::new("bridge_failure_notices");
/// `room_prefix(room, block)` + call id → empty: calls by room.
pub(super) const BY_ROOM: TableDefinition<Bytes, Bytes> =
    TableDefinition::new("bridge_calls_by_room");

/// The byte-keyed tables, in backup order (after `META`).
pub(super) const BYTE_TABLES: [TableDefinition<Bytes, Bytes>; 9] = [
    CALLS,
    EVENTS,
    TRIGGERS,
    READY,
    LEASES,
    LEASE_EXPIRY,
    EXTERNAL,
    PARKED,
    BY_ROOM,
];

/// First byte of every JSON value: lets a later version change the encoding per row.
const VALUE_V1: u8 = 1;

/// A webhook event kept until `initialized` links its external id to a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ParkedEvent {
    pub(super) kind: crate::model::EventKind,
    pub(super) at: u64,
}

pub(super) fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, OutboxError> {
    let mut out = vec![VALUE_V1];
    serde_json::to_writer(&mut out, v).map_err(OutboxError::Encode)?;
    Ok(out)
}

pub(super) fn dec<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, OutboxError> {
    match b.split_first() {
        Some((&VALUE_V1, rest)) => serde_json::from_slice(rest).map_err(OutboxError::Decode),
        Some((v, _)) => Err(OutboxError::UnknownEncoding(*v)),
        None => Err(OutboxError::EmptyValue),
    }
}

/// Length-prefixed string component of a composite key (u32 big-endian length + bytes), so
/// keys of different components never collide and prefixes range-scan correctly.
pub(super) fn lp(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn trigger_key(room: &str, block: &str, index: &str, attempt: u32) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, room);
    lp(&mut k, block);
    lp(&mut k, index);
    k.extend_from_slice(&attempt.to_be_bytes());
    k
}

pub(super) fn time_id_key(t: u64, id: &Uuid) -> Vec<u8> {
    let mut k = t.to_be_bytes().to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn split_time_id(k: &[u8]) -> Option<(u64, Uuid)> {
    let t = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
    let id = Uuid::from_slice(k.get(8..24)?).ok()?;
    Some((t, id))
}

pub(super) fn room_prefix(room: &str, block: Option<&str>) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, room);
    if let Some(b) = block {
        lp(&mut k, b);
    }
    k
}

pub(super) fn by_room_key(call: &ApiCall) -> Vec<u8> {
    let mut k = room_prefix(&call.room, Some(&call.block_id));
    k.extend_from_slice(call.id.as_bytes());
    k
}

pub(super) fn event_key(id: &Uuid, seq: u32) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of an `EVENTS` key.
pub(super) fn event_seq(k: &[u8]) -> u32 {
    k.get(16..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

pub(super) fn ext_key(integration: &str, external_id: &str) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, integration);
    lp(&mut k, external_id);
    k
}

pub(super) fn webhook_seen_key(integration: &str, webhook_id: &str) -> Vec<u8> {
    let mut k = Vec::new();
    lp(&mut k, integration);
    k.extend_from_slice(webhook_id.as_bytes());
    k
}

pub(super) fn parked_key(ext_key: Vec<u8>, seq: u64) -> Vec<u8> {
    let mut k = ext_key;
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn encode_lease(token: u64, until: u64) -> Vec<u8> {
    let mut v = vec![VALUE_V1];
    v.extend_from_slice(&token.to_be_bytes());
    v.extend_from_slice(&until.to_be_bytes());
    v
}

pub(super) fn decode_lease(b: &[u8]) -> Option<(u64, u64)> {
    if b.first() != Some(&VALUE_V1) {
        return None;
    }
    let token = u64::from_be_bytes(b.get(1..9)?.try_into().ok()?);
    let until = u64::from_be_bytes(b.get(9..17)?.try_into().ok()?);
    Some((token, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_components_never_collide() {
        // Without the length prefix ("ab","c") and ("a","bc") would share a key.
        assert_ne!(
            trigger_key("ab", "c", "i", 1),
            trigger_key("a", "bc", "i", 1)
        );
        assert!(trigger_key("r", "b", "i", 1).starts_with(&room_prefix("r", Some("b"))));
        assert!(!trigger_key("r2", "b", "i", 1).starts_with(&room_prefix("r", None)));
    }

    #[test]
    fn codecs_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(split_time_id(&time_id_key(42, &id)), Some((42, id)));
        assert_eq!(event_seq(&event_key(&id, 7)), 7);
        assert_eq!(decode_lease(&encode_lease(3, 9)), Some((3, 9)));
        assert_eq!(decode_lease(&[2, 0]), None);
        let v: u32 = dec(&enc(&5u32).unwrap()).unwrap();
        assert_eq!(v, 5);
        assert!(matches!(
            dec::<u32>(&[9, b'1']),
            Err(OutboxError::UnknownEncoding(9))
        ));
        assert!(matches!(dec::<u32>(&[]), Err(OutboxError::EmptyValue)));
    }
}
