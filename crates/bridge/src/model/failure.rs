//! `FailureReason`: why a try failed, as a small closed set. It travels with a failed
//! [`super::Outcome`] into the call's `failed` event, so a failed call keeps why it gave up;
//! metrics label by it (`weaver_bridge_call_failures_total{reason}`) and the `call.failed`
//! webhook carries it. The error text says the details; this says the kind, with a bounded
//! number of values so a metric label never grows with what an API answers.

use serde::{Deserialize, Serialize};

/// Why a try (or, on the terminal `failed` event, the call) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The API answered 4xx (408, 425 and 429 are retried, the others are final).
    #[serde(rename = "http_4xx")]
    Http4xx,
    /// The API answered 5xx (retried).
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// The API answered a status the contract does not know (3xx: redirects are not
    /// followed; an odd 2xx).
    HttpOther,
    /// No answer in time: the request's timeout, or the worker's lease ran out.
    Timeout,
    /// The API could not be reached (connection refused, DNS, TLS).
    Connect,
    /// The request broke off after it was sent (connection reset, body cut short).
    Network,
    /// An answer the contract cannot use: a 202 without an external id, a body over
    /// `max_response_bytes`.
    InvalidResponse,
    /// The external job reported that it failed (status poll or webhook).
    JobFailed,
    /// An accepted job did not finish within the integration's `async_timeout_ms`.
    AsyncTimeout,
    /// The worker holding the call vanished (crash, kill) and no tries were left.
    LeaseExpired,
    /// The call names an integration that is not configured (or one that cannot poll).
    NotConfigured,
    /// Anything else, and `failed` events recorded before reasons existed.
    #[default]
    Other,
}

impl FailureReason {
    /// The metric label and JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::HttpOther => "http_other",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Network => "network",
            Self::InvalidResponse => "invalid_response",
            Self::JobFailed => "job_failed",
            Self::AsyncTimeout => "async_timeout",
            Self::LeaseExpired => "lease_expired",
            Self::NotConfigured => "not_configured",
            Self::Other => "other",
        }
    }

    /// The reason of an HTTP status that is not a success.
    pub fn of_status(status: u16) -> Self {
        match status {
            400..=499 => Self::Http4xx,
            500..=599 => Self::Http5xx,
            _ => Self::HttpOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_match_the_json_names() {
        for r in [
            FailureReason::Http4xx,
            FailureReason::Http5xx,
            FailureReason::HttpOther,
            FailureReason::Timeout,
            FailureReason::Connect,
            FailureReason::Network,
            FailureReason::InvalidResponse,
            FailureReason::JobFailed,
            FailureReason::AsyncTimeout,
            FailureReason::LeaseExpired,
            FailureReason::NotConfigured,
            FailureReason::Other,
        ] {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
        assert_eq!(FailureReason::of_status(429), FailureReason::Http4xx);
        assert_eq!(FailureReason::of_status(503), FailureReason::Http5xx);
        assert_eq!(FailureReason::of_status(302), FailureReason::HttpOther);
    }
}
