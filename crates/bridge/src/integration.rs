//! Integrations decide HOW a call is executed: the `Integration` trait, the built-in `local`
//! integration, and the registry built from the config.
//!
//! The bridge core only sees `Outcome`s; HTTP specifics live in `http.rs`. Integrations never
//! touch the outbox or the document.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::BridgeError;
use crate::config::BridgeConfig;
use crate::http::HttpIntegration;
use crate::model::ApiCall;
use crate::outbox::Outcome;
use crate::webhook::WebhookSecret;

/// A boxed, sendable future (the trait must be object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An external system that executes APICalls.
pub trait Integration: Send + Sync + std::fmt::Debug {
    /// Name used in routes, the APICall record and `/api/webhooks/{name}`.
    fn name(&self) -> &str;
    /// Maximum calls in flight at once.
    fn concurrency(&self) -> usize;
    /// Executes one try. Must finish within the lease (integrations enforce their own timeout).
    fn submit<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome>;
    /// Asks the external system for the status of a started call (`call.external_id` is set).
    /// Integrations that cannot poll return a non-retryable failure; see `can_poll`.
    fn poll<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome>;
    /// Whether `poll` is meaningful.
    fn can_poll(&self) -> bool;
    /// How long a started call may take before it is failed (checked by a scheduled wake-up
    /// when the integration cannot poll, on every poll otherwise).
    fn async_timeout_ms(&self) -> u64 {
        3_600_000
    }
    /// Secrets accepted on `/api/webhooks/{name}`; empty = webhooks refused.
    fn webhook_secrets(&self) -> &[WebhookSecret];
}

/// The built-in integration: splits the content into chunks (paragraphs, at most
/// `MAX_CHUNK` characters each) and reports how many. No network, always succeeds, so
/// `weaver serve` without configuration completes the demo's "Index" button.
#[derive(Debug)]
pub struct LocalIntegration {
    concurrency: usize,
}

const MAX_CHUNK: usize = 500;

impl LocalIntegration {
    pub fn new(concurrency: usize) -> Self {
        Self {
            concurrency: concurrency.max(1),
        }
    }
}

/// Splits text into paragraph chunks of at most `MAX_CHUNK` characters.
pub fn chunk(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let chars: Vec<char> = para.chars().collect();
        for piece in chars.chunks(MAX_CHUNK) {
            out.push(piece.iter().collect());
        }
    }
    out
}

impl Integration for LocalIntegration {
    fn name(&self) -> &str {
        "local"
    }
    fn concurrency(&self) -> usize {
        self.concurrency
    }
    fn submit<'a>(&'a self, call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let started = Instant::now();
            let content = call
                .request_params
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = chunk(content).len();
            Outcome::Completed {
                external_id: None,
                data: json!({
                    "chunks_indexed": n,
                    "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                }),
            }
        })
    }
    fn poll<'a>(&'a self, _call: &'a ApiCall) -> BoxFuture<'a, Outcome> {
        Box::pin(async {
            Outcome::Failed {
                error: "the local integration cannot be polled".into(),
                retryable: false,
                retry_after_ms: None,
            }
        })
    }
    fn can_poll(&self) -> bool {
        false
    }
    fn webhook_secrets(&self) -> &[WebhookSecret] {
        &[]
    }
}

/// All integrations by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    map: HashMap<String, Arc<dyn Integration>>,
}

impl Registry {
    /// Builds the built-in and configured integrations; resolves `${ENV}` secrets now so a
    /// missing variable is a start-up error, not a failed call later.
    pub fn from_config(cfg: &BridgeConfig) -> Result<Self, BridgeError> {
        Self::from_config_with_env(cfg, &|k| std::env::var(k).ok())
    }

    /// Like `from_config` with an explicit environment lookup.
    pub fn from_config_with_env(
        cfg: &BridgeConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, BridgeError> {
        let mut r = Self::default();
        r.insert(Arc::new(LocalIntegration::new(cfg.local_concurrency)));
        for ic in &cfg.integrations {
            r.insert(Arc::new(HttpIntegration::from_config_with_env(ic, env)?));
        }
        Ok(r)
    }

    /// Adds (or replaces) an integration, e.g. a custom one when embedding the bridge.
    pub fn insert(&mut self, i: Arc<dyn Integration>) {
        self.map.insert(i.name().to_owned(), i);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Integration>> {
        self.map.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Integration>> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking() {
        assert!(chunk("").is_empty());
        assert_eq!(chunk("a\n\n\n\nb").len(), 2);
        assert_eq!(chunk(&"x".repeat(1001)).len(), 3);
        assert_eq!(chunk("é".repeat(600).as_str()).len(), 2);
    }
}
