//! `BridgeError`: the bridge crate's error at its public edges (start-up, the actors, the HTTP
//! API). Each cause keeps its own typed error as the source; the outbox's storage errors are
//! `OutboxError` (in `outbox/error.rs`), the document's are `weaver_doc::DocError`.
//!
//! Messages repeat their source's text (`{0}`) on purpose: every caller logs errors as one line
//! with `%e`, and those lines must keep saying what failed underneath.

use std::sync::Arc;

use crate::host::HostError;
use crate::outbox::OutboxError;

/// Errors of the bridge crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is invalid (a bad value, a missing secret, a malformed header).
    #[error("bridge config: {0}")]
    Config(String),
    /// The configuration file is not valid TOML for the bridge's config.
    #[error("bridge config: {0}")]
    ConfigParse(#[source] toml::de::Error),
    /// The configuration file could not be read.
    #[error("bridge config: cannot read {}: {source}", path.display())]
    ConfigRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configured integration could not be built.
    #[error("bridge config: integration {name:?}: {source}")]
    Integration {
        name: String,
        #[source]
        source: IntegrationSetupError,
    },
    /// The durable outbox failed.
    #[error("bridge store: {0}")]
    Store(#[from] OutboxError),
    /// A blocking outbox task panicked or was cancelled.
    #[error("bridge store: blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    /// The document host refused or failed.
    #[error("document host: {0}")]
    Host(#[from] HostError),
    /// The bridge has no mirror of a room it was asked to write into.
    #[error("document host: room {0} is not loaded")]
    RoomNotLoaded(String),
    /// The document model refused an update or a status record.
    #[error("document: {0}")]
    Doc(#[from] weaver_doc::DocError),
    /// One failure answered to several waiters (a batch commit that failed as a whole).
    #[error(transparent)]
    Shared(Arc<BridgeError>),
    #[error("bridge is shutting down")]
    Shutdown,
}

/// Why an `[[integrations]]` entry could not be turned into a working integration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrationSetupError {
    /// A `${NAME}` reference that does not expand (unterminated, or the variable is unset).
    #[error("{0}")]
    Env(String),
    #[error("header {name:?}: {source}")]
    HeaderName {
        name: String,
        #[source]
        source: reqwest::header::InvalidHeaderName,
    },
    #[error("header {name:?}: {source}")]
    HeaderValue {
        name: String,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("webhook secret variable {0} is not set")]
    SecretUnset(String),
    #[error("{var}: {source}")]
    Secret {
        var: String,
        #[source]
        source: weaver_auth::webhook::WebhookError,
    },
    #[error("http client: {0}")]
    Client(#[source] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use crate::BridgeConfig;
    use crate::integration::Registry;

    #[test]
    fn errors_keep_their_text_and_expose_their_source() {
        let cfg = BridgeConfig::from_toml(
            "[[integrations]]\nname = \"api\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/x\"\nwebhook_secrets = [\"WH\"]\n",
        )
        .unwrap();
        let e = Registry::from_config_with_env(&cfg, &|_| Some("whsec_!!".into())).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bridge config: integration \"api\": WH: "),
            "{e}"
        );
        let setup = e
            .source()
            .and_then(|s| s.downcast_ref::<IntegrationSetupError>());
        assert!(
            matches!(setup, Some(IntegrationSetupError::Secret { .. })),
            "{e:?}"
        );
        assert!(setup.and_then(|s| s.source()).is_some());

        let e = BridgeConfig::from_toml("retry = 3").unwrap_err();
        assert!(matches!(e, BridgeError::ConfigParse(_)), "{e:?}");
        assert!(e.to_string().starts_with("bridge config: "), "{e}");

        let e = BridgeConfig::load(std::path::Path::new("/nonexistent/bridge.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("bridge config: cannot read /nonexistent/bridge.toml: "),
            "{e}"
        );
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));
    }
}
