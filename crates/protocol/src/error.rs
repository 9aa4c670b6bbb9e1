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
}
