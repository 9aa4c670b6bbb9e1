//! The y-websocket wire format and defensive validators for untrusted Yjs bytes.
//!
//! Owns: lib0 variable-length integers, the y-websocket message envelope (sync step 1/2,
//! update, awareness, auth, queryAwareness), the Hocuspocus framing around it (`hocuspocus`:
//! document addresses, its auth, syncStatus, stateless, close, ping), the awareness update
//! encoding, and validators that walk a v1 update or state vector *before* it reaches `yrs` (depth guard, length sanity), so a
//! hostile frame becomes an error instead of a stack overflow or a huge allocation.
//!
//! Must not know: sockets, rooms, storage, documents. Everything here is `bytes in → values or
//! errors out`; no function panics on any input (fuzzed in `fuzz/`).
//!
//! How a server uses it on every client frame:
//! 1. [`decode_message`]; an error is a protocol violation (close the connection).
//! 2. For step1: [`validate_state_vector`]. For step2/update: [`validate_update_v1`] with
//!    [`UpdateLimits`]; only if it returns `Ok` hand the bytes to `yrs::Update::decode_v1` (which
//!    then cannot fail or overflow the stack: fuzzed contract). [`UpdateStats::subdocs`] > 0 means
//!    the update carries subdocuments, which yrs 0.28.1 leaks (see `tests/yrs_subdoc_leak.rs`).
//! 3. Still apply with `catch_unwind`: validated updates can panic yrs *integration*
//!    (`tests/it/yrs_integration_panics.rs`); discard the doc after such a panic.
//! 4. Awareness: [`decode_awareness`] (counts, 53-bit client ids, JSON depth and syntax checked).

mod awareness;
mod error;
mod hocuspocus;
mod lib0;
mod message;
mod validate;

pub use awareness::{AwarenessEntry, decode_awareness, encode_awareness};
pub use error::ProtocolError;
pub use hocuspocus::{
    AUTH_AUTHENTICATED, AUTH_PERMISSION_DENIED, AUTH_TOKEN, HOCUS_AUTH, HOCUS_AWARENESS,
    HOCUS_CLOSE, HOCUS_PING, HOCUS_PONG, HOCUS_QUERY_AWARENESS, HOCUS_STATELESS, HOCUS_SYNC,
    HOCUS_SYNC_STATUS, HocusFrame, HocusMessage, MAX_ADDRESS_BYTES, SCOPE_READ_ONLY,
    SCOPE_READ_WRITE, decode_hocus_frame, encode_hocus_authenticated, encode_hocus_document,
    encode_hocus_permission_denied, encode_hocus_ping, encode_hocus_stateless,
    encode_hocus_sync_status, encode_hocus_token, split_address,
};
pub use lib0::{Reader, write_var_string, write_var_u8_array, write_var_u64};
pub use message::{
    MSG_AUTH, MSG_AWARENESS, MSG_QUERY_AWARENESS, MSG_SYNC, Message, SYNC_STEP1, SYNC_STEP2,
    SYNC_UPDATE, decode_message, encode_awareness_message, encode_permission_denied,
    encode_query_awareness, encode_sync_step1, encode_sync_step2, encode_update,
};
pub use validate::{UpdateLimits, UpdateStats, validate_state_vector, validate_update_v1};
