//! The bridge configuration (TOML file given to `weaver serve --bridge-config`).
//!
//! Parsing and validation only; secrets are *names* of environment variables here and are
//! resolved when integrations are built (`Registry::from_config`). The format is documented in
//! docs/bridge.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::BridgeError;

/// Top-level configuration. Every field has a default, so an empty file (or no file) is valid
/// and routes everything to the built-in `local` integration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    pub retry: RetryPolicy,
    pub debounce: DebounceConfig,
    pub retention: RetentionConfig,
    pub webhooks: WebhookConfig,
    /// Integration used for index names not listed in `routes`.
    pub default_integration: String,
    /// `index_name` → integration name.
    pub routes: BTreeMap<String, String>,
    pub integrations: Vec<IntegrationConfig>,
    /// Concurrency of the built-in `local` integration.
    pub local_concurrency: usize,
    /// Where failed calls are announced (`call.failed` webhooks); off without it. Not part of
    /// the file: the binary sets it from `--bridge-failure-url` and its secret.
    #[serde(skip)]
    pub failure_webhook: Option<FailureWebhookConfig>,
}

/// The `call.failed` webhook: a signed POST for every call that gave up, retried until the
/// receiver takes it (engine/failure_webhook.rs, docs/operations.md).
#[derive(Debug, Clone)]
pub struct FailureWebhookConfig {
    /// Receives `POST` with a JSON body (http or https).
    pub url: reqwest::Url,
    /// Signs each delivery (Standard Webhooks); unsigned without it.
    pub secret: Option<weaver_auth::webhook::WebhookSecret>,
    /// Per request.
    pub timeout: Duration,
    /// Cap of the retry backoff.
    pub max_backoff: Duration,
}

impl FailureWebhookConfig {
    /// Defaults as the room-change webhooks': 10 s per request, retries backing off up to 5
    /// minutes.
    pub fn new(url: reqwest::Url) -> Self {
        Self {
            url,
            secret: None,
            timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            debounce: DebounceConfig::default(),
            retention: RetentionConfig::default(),
            webhooks: WebhookConfig::default(),
            default_integration: "local".to_owned(),
            routes: BTreeMap::new(),
            integrations: Vec::new(),
            local_concurrency: 4,
            failure_webhook: None,
        }
    }
}

/// Delivery retry policy (Temporal vocabulary, AWS "full jitter").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Total tries of one call, the first included. After that the call is `failed`.
    pub max_attempts: u32,
    pub initial_interval_ms: u64,
    pub max_interval_ms: u64,
    /// How long a claimed call may run before another worker may take it over.
    pub lease_ms: u64,
}

impl RetryPolicy {
    /// The backoff window of this policy (`initial_interval_ms` doubling up to
    /// `max_interval_ms`), with full jitter.
    pub fn backoff(&self) -> weaver_retry::Backoff {
        weaver_retry::Backoff::new(
            Duration::from_millis(self.initial_interval_ms),
            Duration::from_millis(self.max_interval_ms),
        )
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_interval_ms: 1_000,
            max_interval_ms: 300_000,
            lease_ms: 40_000,
        }
    }
}

/// Re-index debounce after content edits (Hocuspocus defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebounceConfig {
    /// Re-index once the block has been quiet this long …
    pub quiet_ms: u64,
    /// … or at the latest this long after the first unindexed edit.
    pub max_wait_ms: u64,
}

impl Default for DebounceConfig {
    fn default() -> Self {
        Self {
            quiet_ms: 2_000,
            max_wait_ms: 10_000,
        }
    }
}

/// How long finished calls and webhook ids are kept.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub completed_ms: u64,
    /// Failed calls are kept longer: they carry the error a user may need.
    pub failed_ms: u64,
    pub webhook_ids_ms: u64,
    /// How often the pruner runs.
    pub prune_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600 * 1000;
        Self {
            completed_ms: 7 * DAY,
            failed_ms: 30 * DAY,
            webhook_ids_ms: 7 * DAY,
            prune_interval_ms: 3600 * 1000,
        }
    }
}

/// Inbound webhook verification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Accepted clock skew of `webhook-timestamp`, seconds.
    pub tolerance_secs: u64,
    /// Largest accepted webhook body.
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            tolerance_secs: 300,
            max_body_bytes: 256 * 1024,
        }
    }
}

/// One `[[integrations]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    pub name: String,
    /// Only `"http"` for now (`local` is built in).
    pub kind: String,
    pub url: String,
    /// Extra request headers; `${ENV_VAR}` inside a value is replaced from the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Names of environment variables holding `whsec_…` secrets (several = rotation).
    #[serde(default)]
    pub webhook_secrets: Vec<String>,
    /// `GET` URL template with `{external_id}`, polled until the call finishes.
    #[serde(default)]
    pub status_url: Option<String>,
    #[serde(default = "default_poll")]
    pub poll_interval_ms: u64,
    /// A started (202) call that has not finished this long after it started is `failed`.
    #[serde(default = "default_async_timeout")]
    pub async_timeout_ms: u64,
    /// Field of a `202` body holding the external id (default: `external_id`, then `id`).
    #[serde(default)]
    pub external_id_field: Option<String>,
    #[serde(default = "default_max_body")]
    pub max_response_bytes: usize,
}

fn default_timeout() -> u64 {
    10_000
}
fn default_concurrency() -> usize {
    4
}
fn default_poll() -> u64 {
    2_000
}
fn default_async_timeout() -> u64 {
    3_600_000
}
fn default_max_body() -> usize {
    1024 * 1024
}

impl BridgeConfig {
    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, BridgeError> {
        let cfg: Self = toml::from_str(text).map_err(BridgeError::ConfigParse)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, BridgeError> {
        let text = std::fs::read_to_string(path).map_err(|source| BridgeError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Checks cross-references and bounds.
    pub fn validate(&self) -> Result<(), BridgeError> {
        let bad = |m: String| Err(BridgeError::Config(m));
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts must be >= 1".into());
        }
        if self.retry.lease_ms < 100 {
            return bad("retry.lease_ms must be >= 100".into());
        }
        if let Some(w) = &self.failure_webhook {
            if !matches!(w.url.scheme(), "http" | "https") {
                return bad(format!(
                    "the failure webhook URL must be http(s), not {}",
                    w.url.scheme()
                ));
            }
            if w.timeout.is_zero() || w.max_backoff.is_zero() {
                return bad(
                    "the failure webhook's timeout and max backoff must be positive".into(),
                );
            }
        }
        let mut names = vec!["local".to_owned()];
        for i in &self.integrations {
            if names.contains(&i.name) {
                return bad(format!(
                    "integration name {:?} is used twice (or is the built-in)",
                    i.name
                ));
            }
            if i.kind != "http" {
                return bad(format!(
                    "integration {:?}: unknown kind {:?} (expected \"http\")",
                    i.name, i.kind
                ));
            }
            if !(i.url.starts_with("http://") || i.url.starts_with("https://")) {
                return bad(format!("integration {:?}: url must be http(s)", i.name));
            }
            if i.concurrency == 0 {
                return bad(format!(
                    "integration {:?}: concurrency must be >= 1",
                    i.name
                ));
            }
            if i.timeout_ms + 1_000 > self.retry.lease_ms {
                return bad(format!(
                    "integration {:?}: timeout_ms must be at least 1 s below retry.lease_ms",
                    i.name
                ));
            }
            names.push(i.name.clone());
        }
        if !names.contains(&self.default_integration) {
            return bad(format!(
                "default_integration {:?} is not defined",
                self.default_integration
            ));
        }
        for (index, target) in &self.routes {
            if !names.contains(target) {
                return bad(format!(
                    "route {index:?} -> {target:?}: no such integration"
                ));
            }
        }
        Ok(())
    }

    /// The integration that serves `index_name`.
    pub fn route(&self, index_name: &str) -> &str {
        self.routes
            .get(index_name)
            .map_or(self.default_integration.as_str(), String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_local() {
        let c = BridgeConfig::from_toml("").unwrap();
        assert_eq!(c.route("anything"), "local");
        assert_eq!(c.retry.max_attempts, 8);
    }

    #[test]
    fn full_example_parses() {
        let c = BridgeConfig::from_toml(
            r#"
            default_integration = "local"
            [retry]
            max_attempts = 3
            initial_interval_ms = 100
            max_interval_ms = 1000
            lease_ms = 20000
            [debounce]
            quiet_ms = 500
            max_wait_ms = 3000
            [routes]
            search = "vectors"
            [[integrations]]
            name = "vectors"
            kind = "http"
            url = "http://127.0.0.1:9999/index"
            headers = { Authorization = "Bearer ${VEC_TOKEN}" }
            timeout_ms = 5000
            concurrency = 2
            webhook_secrets = ["VEC_WEBHOOK_SECRET"]
            status_url = "http://127.0.0.1:9999/jobs/{external_id}"
            "#,
        )
        .unwrap();
        assert_eq!(c.route("search"), "vectors");
        assert_eq!(c.route("other"), "local");
        assert_eq!(c.integrations[0].concurrency, 2);
    }

    #[test]
    fn bad_route_rejected() {
        let e = BridgeConfig::from_toml("[routes]\nx = \"nope\"").unwrap_err();
        assert!(e.to_string().contains("nope"));
        assert!(BridgeConfig::from_toml("bogus = 1").is_err());
    }
}
