//! `admit_update`: what every update must pass before a room sees it, whichever way it came
//! (a WebSocket frame in connection.rs, `POST /api/rooms/{room}/update` or the bridge through
//! `RelayHandle::apply_update`): the size limit, weaver-protocol's walker (depth and length
//! sanity, so untrusted bytes reach `yrs` only validated) and the refusal of subdocuments.
//! Each path turns a refusal into its own answer: a close code, or a `RelayError`.

use weaver_protocol::{ProtocolError, UpdateLimits, UpdateStats};

use crate::error::{RelayError, close_code};

/// Why updates carrying subdocuments are refused: yrs 0.28.1 never frees a document that holds
/// a subdocument, so every unload of such a room would leak it
/// (crates/protocol/tests/yrs_subdoc_leak.rs).
pub(crate) const SUBDOCS_REFUSED: &str = "subdocuments are not supported";

/// Why an update was not admitted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Invalid(#[from] ProtocolError),
    #[error("{SUBDOCS_REFUSED}")]
    Subdocuments,
}

/// Checks a v1 update of `update.len()` bytes against `max_bytes` and the walker's limits.
pub(crate) fn admit_update(update: &[u8], max_bytes: usize) -> Result<UpdateStats, Refused> {
    if update.len() > max_bytes {
        return Err(Refused::TooLarge {
            size: update.len(),
            limit: max_bytes,
        });
    }
    let stats = weaver_protocol::validate_update_v1(update, &UpdateLimits::default())?;
    if stats.subdocs > 0 {
        return Err(Refused::Subdocuments);
    }
    Ok(stats)
}

impl Refused {
    /// The close code and reason label of a WebSocket refusal.
    pub(crate) fn close(&self) -> (u16, &'static str) {
        match self {
            Refused::TooLarge { .. } => (close_code::TOO_BIG, "message_too_big"),
            Refused::Invalid(ProtocolError::TooDeep { .. } | ProtocolError::LimitExceeded(_)) => {
                (close_code::POLICY, "update_limit")
            }
            Refused::Invalid(_) => (close_code::INVALID_PAYLOAD, "invalid_update"),
            Refused::Subdocuments => (close_code::POLICY, "subdocument"),
        }
    }
}

/// The HTTP and handle answer (400 or 413, with the same messages as ever).
impl From<Refused> for RelayError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::TooLarge { size, limit } => RelayError::TooLarge { size, limit },
            Refused::Invalid(e) => RelayError::InvalidUpdate(e.to_string()),
            Refused::Subdocuments => RelayError::InvalidUpdate(SUBDOCS_REFUSED.to_string()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_same_close_codes_and_errors_on_both_paths() {
        // An empty v1 update: no structs, an empty delete set.
        let empty = [0u8, 0];
        assert!(admit_update(&empty, 16).is_ok());
        /// (input, size limit, close code and reason, HTTP status)
        type Case<'a> = (&'a [u8], usize, (u16, &'a str), u16);
        let cases: &[Case] = &[
            (&empty, 1, (close_code::TOO_BIG, "message_too_big"), 413),
            (
                &[0xff, 0xff],
                16,
                (close_code::INVALID_PAYLOAD, "invalid_update"),
                400,
            ),
        ];
        for (bytes, limit, close, status) in cases {
            let refused = admit_update(bytes, *limit).unwrap_err();
            assert_eq!(refused.close(), *close, "{bytes:?}");
            assert_eq!(
                RelayError::from(refused).status().as_u16(),
                *status,
                "{bytes:?}"
            );
        }
        assert_eq!(
            Refused::Subdocuments.close(),
            (close_code::POLICY, "subdocument")
        );
        assert_eq!(
            RelayError::from(Refused::Subdocuments).to_string(),
            "invalid update: subdocuments are not supported"
        );
    }
}
