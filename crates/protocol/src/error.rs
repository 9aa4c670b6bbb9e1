//! The one error type of this crate.

/// Why a byte sequence was refused. Every variant is a property of the input, never of IO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("unexpected end of input")]
    UnexpectedEof,
    #[error("variable-length integer is too long")]
    VarIntOverflow,
    #[error("length prefix {len} exceeds the {remaining} bytes left")]
    LengthOutOfBounds { len: u64, remaining: usize },
    #[error("invalid UTF-8 in a string")]
    InvalidUtf8,
    #[error("empty message")]
    Empty,
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    #[error("unknown Hocuspocus auth message type {0}")]
    UnknownAuthType(u64),
    #[error("unknown sync message type {0}")]
    UnknownSyncType(u64),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("invalid awareness state JSON: {0}")]
    InvalidAwarenessJson(String),
    #[error("nesting deeper than {limit}")]
    TooDeep { limit: usize },
    #[error("update is malformed: {0}")]
    MalformedUpdate(&'static str),
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
    #[error("value {value} exceeds the maximum {max}")]
    ValueOutOfRange { value: u64, max: u64 },
    #[error("claimed count {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge { count: u64, remaining: usize },
    #[error("unknown struct info / content ref {0:#04x}")]
    UnknownContentRef(u8),
    #[error("unknown shared type ref {0}")]
    UnknownTypeRef(u8),
    #[error("unknown Any value tag {0}")]
    UnknownAnyTag(u8),
    #[error("invalid JSON text: {0}")]
    InvalidJson(String),
    /// Valid for one of Yjs / yrs but decoded differently by the other, so relaying it would
    /// make the server and its clients disagree about the document.
    #[error("unsupported encoding: {0}")]
    Unsupported(&'static str),
}
