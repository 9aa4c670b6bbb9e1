//! `NotifyError`, the notifier's one error enum, and `Chain`, how the notifier shows one.
//!
//! Every cause is printed exactly once: a variant that only validates says why in its message;
//! a variant with a cause names what failed and exposes the cause as `source()`. The binary
//! prints the whole chain with anyhow's `{:#}`; the notifier's own logs and retry reasons are
//! one line each and print it with [`Chain`], so both read the same
//! ("room notifications store: Database already open").

use std::fmt;

use weaver_redb_backup::CopyError;
use weaver_relay::RelayError;

/// Errors of the notifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The configuration is invalid (a bad or inconsistent value).
    #[error("room notifications: {0}")]
    Config(String),
    /// The HTTP client that delivers the webhooks could not be built.
    #[error("room notifications: HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The `notify_*` tables could not be read or written.
    #[error("room notifications store")]
    Store(#[from] redb::Error),
    /// The `notify_*` tables could not be copied into a backup.
    #[error("room notifications store")]
    Backup(#[from] CopyError),
    /// A blocking store task panicked or was cancelled.
    #[error("room notifications store")]
    Blocking(#[from] tokio::task::JoinError),
    /// The relay refused or failed (reading room seqs).
    #[error("relay")]
    Relay(#[from] RelayError),
}

/// Any redb error as [`NotifyError::Store`] (each redb operation has its own error type; all
/// convert to `redb::Error`).
pub(crate) fn store_err(e: impl Into<redb::Error>) -> NotifyError {
    NotifyError::Store(e.into())
}

/// Shows an error and every cause under it on one line, joined by ": " (as anyhow's `{:#}`).
pub(crate) struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn each_cause_is_printed_once_and_exposed_as_source() {
        let cases: [(NotifyError, &str); 3] = [
            (
                NotifyError::Config("concurrency must be at least 1".into()),
                "room notifications: concurrency must be at least 1",
            ),
            (
                store_err(redb::StorageError::Corrupted("page 7".into())),
                "room notifications store: DB corrupted: page 7",
            ),
            (
                NotifyError::from(CopyError::from(redb::StorageError::Corrupted(
                    "page 7".into(),
                ))),
                "room notifications store: storage error: DB corrupted: page 7",
            ),
        ];
        for (e, shown) in cases {
            assert_eq!(Chain(&e).to_string(), shown, "{e:?}");
            let has_cause = !matches!(e, NotifyError::Config(_));
            assert_eq!(e.source().is_some(), has_cause, "{e:?}");
        }
    }
}
