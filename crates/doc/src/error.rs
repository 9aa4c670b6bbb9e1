//! The crate's single error type. Every fallible public function returns [`DocError`]; nothing
//! in this crate panics on caller- or network-supplied input.

/// Errors of the document model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// Update or state-vector bytes that do not decode (or that made yrs panic while decoding
    /// or integrating them; the panic is caught and reported here).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded ("update", "state vector").
        what: &'static str,
        /// Decoder message.
        reason: String,
    },
    /// A transaction could not be opened because another one is active on this document
    /// (for example when called from inside a change observer).
    #[error("the document is busy: a transaction is already active")]
    Busy,
    /// The block does not exist (or is not a block map).
    #[error("no block {0:?}")]
    NoBlock(String),
    /// A block with this id already exists.
    #[error("block {0:?} already exists")]
    BlockExists(String),
    /// A text range outside the content, in UTF-16 code units.
    #[error("range {index}+{len} is outside content of length {content_len} (UTF-16 code units)")]
    OutOfRange {
        /// Start of the range.
        index: u64,
        /// Length of the range.
        len: u64,
        /// Content length in UTF-16 code units.
        content_len: u64,
    },
    /// A value that does not fit the schema (e.g. attempt 0, non-object collection_configs).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}
