//! `BridgeError`: the bridge crate's error at its public edges (start-up, the actors, the HTTP
//! API), and `IntegrationSetupError` (why a configured integration could not be built). The
//! outbox's storage errors are `OutboxError` (`outbox/error.rs`), the document's
//! `weaver_doc::DocError`, the host's `HostError`.
//!
//! Every cause is printed exactly once, whichever way an error is shown: a variant that only
//! passes a cause on is `transparent` (the runtime logs errors as one line with `%e`, which
//! must still say what failed underneath); a variant that adds context names the context in its
//! message and exposes the cause as `source()`, which the binary prints with anyhow's `{:#}`
//! ("bridge config: cannot read x.toml: No such file or directory").

use std::sync::Arc;

use crate::host::HostError;
use crate::outbox::OutboxError;

/// Errors of the bridge crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is invalid (a bad or inconsistent value).
    #[error("bridge config: {0}")]
    Config(String),
    /// The configuration file is not valid TOML for the bridge's config.
    #[error("bridge config")]
    ConfigParse(#[source] toml::de::Error),
    /// The configuration file could not be read.
    #[error("bridge config: cannot read {}", path.display())]
    ConfigRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configured integration could not be built.
    #[error("bridge config: integration {name:?}")]
    Integration {
        name: String,
        #[source]
        source: IntegrationSetupError,
    },
    /// The durable outbox failed.
    #[error(transparent)]
    Store(#[from] OutboxError),
    /// A blocking outbox task panicked or was cancelled.
    #[error(transparent)]
    Blocking(#[from] tokio::task::JoinError),
    /// The document host refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The bridge has no mirror of a room it was asked to write into.
    #[error("document host: room {0} is not loaded")]
    RoomNotLoaded(String),
    /// The document model refused an update or a status record.
    #[error(transparent)]
    Doc(#[from] weaver_doc::DocError),
    /// One failure answered to several waiters (a batch commit that failed as a whole).
    #[error(transparent)]
    Shared(Arc<BridgeError>),
    #[error("bridge is shutting down")]
    Shutdown,
    /// The HTTP client of the `call.failed` webhook could not be built.
    #[error("failure webhook: cannot build the HTTP client")]
    FailureWebhookClient(#[source] reqwest::Error),
}

/// Why an `[[integrations]]` entry could not be turned into a working integration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrationSetupError {
    /// A `${NAME}` reference that does not expand (unterminated, or the variable is unset).
    #[error("{0}")]
    Env(String),
    #[error("header {name:?}")]
    HeaderName {
        name: String,
        #[source]
        source: reqwest::header::InvalidHeaderName,
    },
    #[error("header {name:?}")]
    HeaderValue {
        name: String,
        #[source]
        source: reqwest::header::InvalidHeaderValue,
    },
    #[error("webhook secret variable {0} is not set")]
    SecretUnset(String),
    #[error("{var}")]
    Secret {
        var: String,
        #[source]
        source: weaver_auth::webhook::WebhookError,
    },
    #[error("http client")]
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
            chain(&e).starts_with("bridge config: integration \"api\": WH: "),
            "{}",
            chain(&e)
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
        assert!(chain(&e).starts_with("bridge config: "), "{}", chain(&e));

        let e = BridgeConfig::load(std::path::Path::new("/nonexistent/bridge.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bridge config: cannot read /nonexistent/bridge.toml"
        );
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));

        // Passing a cause on shows it, once.
        let e = BridgeError::from(OutboxError::EmptyValue);
        assert_eq!(chain(&e), "empty value");
        let e = BridgeError::Shared(Arc::new(e));
        assert_eq!(chain(&e), "empty value");
    }

    /// What anyhow's `{:#}` prints: the message and every source, joined by ": ".
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out.push_str(": ");
            out.push_str(&s.to_string());
            next = s.source();
        }
        out
    }
}
