//! Integrations decide HOW a call is executed: the `Integration` trait and the registry built
//! from the config. The built-in integrations are `local` (`local.rs`) and the outbound HTTP
//! integration (`http.rs`).
//!
//! The bridge core only sees `Outcome`s. Integrations never touch the outbox or the document.

mod http;
mod local;

pub use http::HttpIntegration;
pub use local::LocalIntegration;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::BridgeError;
use crate::config::BridgeConfig;
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
