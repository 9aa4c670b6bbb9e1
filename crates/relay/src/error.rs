//! `RelayError` (the crate's one error enum), its single HTTP mapping, and the WebSocket close
//! codes the relay sends (documented in docs/protocol.md).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// WebSocket close codes sent by the relay. Every close carries one of these and a short reason.
pub mod close_code {
    /// The server is shutting down or restarting; reconnect later.
    pub const SHUTDOWN: u16 = 1012;
    /// A frame that is not a y-websocket message: empty, truncated varint, unknown message or
    /// sync type, trailing bytes.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame (y-websocket is binary only).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A well-framed message whose payload is invalid: update or state vector that does not
    /// decode or apply, invalid awareness update.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A policy limit: nesting too deep, too many awareness client ids, awareness state too big,
    /// document size limit reached, too many pending (causally incomplete) bytes.
    pub const POLICY: u16 = 1008;
    /// A message larger than `--max-message-bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// Server-side failure (storage error, yrs panicked on the connection's update).
    pub const INTERNAL: u16 = 1011;
    /// The connection's outbound queue filled up (slow consumer); reconnect and resync.
    pub const SLOW_CONSUMER: u16 = 1013;
    /// No pong (or any frame) within two ping intervals.
    pub const TIMEOUT: u16 = 4408;
    /// The room was deleted through the HTTP API.
    pub const ROOM_DELETED: u16 = 4410;
}

/// Everything that can go wrong in the relay's API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("invalid room name: {0}")]
    InvalidRoomName(String),
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("invalid state vector: {0}")]
    InvalidStateVector(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("storage: {0}")]
    Storage(Arc<StoreError>),
    #[error("document would exceed {limit} bytes")]
    DocumentTooLarge { limit: u64 },
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    #[error("the relay is shutting down")]
    ShuttingDown,
    #[error("room {0} is unavailable, try again")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The room is owned by another node (cluster mode); its traffic goes there.
    #[error("room is owned by node {}", .0.node_id)]
    Remote(crate::placement::RemoteOwner),
    /// No listed version of the room has this id.
    #[error("room {room} has no version {id}")]
    VersionNotFound { room: String, id: String },
    /// The room could not be placed on any node right now.
    #[error("room placement failed")]
    Placement(#[source] Arc<crate::placement::PlacementError>),
}

impl From<StoreError> for RelayError {
    fn from(e: StoreError) -> Self {
        RelayError::Storage(Arc::new(e))
    }
}

impl From<Arc<StoreError>> for RelayError {
    fn from(e: Arc<StoreError>) -> Self {
        RelayError::Storage(e)
    }
}

impl RelayError {
    pub fn status(&self) -> StatusCode {
        match self {
            RelayError::InvalidRoomName(_)
            | RelayError::InvalidUpdate(_)
            | RelayError::InvalidStateVector(_)
            | RelayError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            RelayError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
            RelayError::TooLarge { .. } | RelayError::DocumentTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            RelayError::ShuttingDown
            | RelayError::Unavailable(_)
            | RelayError::Overloaded(_)
            | RelayError::Remote(_)
            | RelayError::Placement(_) => StatusCode::SERVICE_UNAVAILABLE,
            RelayError::Storage(_) | RelayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The one place relay errors become HTTP responses: `{"error": "..."}` with the status above.
impl IntoResponse for RelayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        }
        let body = serde_json::json!({ "error": self.to_string() });
        (status, axum::Json(body)).into_response()
    }
}
