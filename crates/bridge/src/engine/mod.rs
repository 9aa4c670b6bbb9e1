//! The running bridge: start-up wiring and the handle. The actors live in the submodules:
//!
//! - `doc_actor`: the one task that owns the document mirrors; its loop takes the host's
//!   committed updates, room deletions, unloads and lag, and the handle's commands.
//! - `mirror`: a room's mirror (`weaver_doc::Workspace`), loading it and applying updates.
//! - `sweep`: stored rooms (start-up, lag) checked for bridge content without loading them,
//!   a batch per turn of the document actor; only those that may hold some are loaded.
//! - `rules` (pure) and `reconcile`: which index entries need an APICall, a cancellation or a
//!   re-index, and turning those decisions into outbox state; `debounce` holds the re-index
//!   debounce.
//! - `writeback`: outcomes written back into documents as the bridge peer, with backoff.
//! - `manual`: manual retry and refresh (`POST /api/calls/{id}/retry|refresh`).
//! - `dispatcher` claims due calls, a `worker` task runs each claim through its integration,
//!   the `completer` commits their outcomes in batches; the `pruner` drops old finished calls.
//! - `failure_webhook` (with `--bridge-failure-url`): delivers the outbox's failure notices as
//!   signed `call.failed` webhooks.
//!
//! Rules are level-triggered: whatever the document says *now* (an entry requesting attempt N
//! with no APICall, a `done` entry whose content changed, a call whose entry is gone) is turned
//! into outbox state; nothing needed for correctness is remembered only in memory. The HTTP
//! routes live in `routes.rs`; storage in `outbox`. Every task spawned here is tracked and
//! ends when the shutdown token is cancelled.

mod completer;
mod debounce;
mod dispatcher;
mod doc_actor;
mod failure_webhook;
mod manual;
mod mirror;
mod pruner;
mod reconcile;
mod rules;
mod sweep;
mod worker;
mod writeback;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::BridgeError;
use crate::config::BridgeConfig;
use crate::host::DocumentHost;
use crate::integration::Registry;
use crate::outbox::{OutboxStore, RedbOutbox};

use completer::Done;
use doc_actor::{DocActor, DocCmd};
use failure_webhook::FailureWebhook;
pub use manual::RetryError;

/// Entry point.
#[derive(Debug)]
pub struct Bridge;

/// A running bridge. Cheap to clone.
#[derive(Clone)]
pub struct BridgeHandle {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for BridgeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeHandle").finish_non_exhaustive()
    }
}

/// What the actors share: configuration, the outbox, the integrations and the channels
/// between the actors.
pub(crate) struct Inner {
    pub(crate) cfg: BridgeConfig,
    pub(crate) outbox: Arc<dyn OutboxStore>,
    pub(crate) registry: Registry,
    host: Arc<dyn DocumentHost>,
    /// Wakes the dispatcher (new calls, a finished try freed a slot).
    dispatch_wake: Notify,
    doc_tx: mpsc::UnboundedSender<DocCmd>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Concurrency slots per integration.
    slots: HashMap<String, Arc<Semaphore>>,
    /// Wakes the `call.failed` delivery task (a call may have failed).
    failure_wake: Notify,
}

/// Runs a blocking outbox operation off the async runtime.
pub(crate) async fn blocking<R, E>(
    f: impl FnOnce() -> Result<R, E> + Send + 'static,
) -> Result<R, BridgeError>
where
    R: Send + 'static,
    E: Send + 'static,
    BridgeError: From<E>,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

impl Bridge {
    /// Starts the bridge with the integrations described by `cfg` (secrets from the process
    /// environment). Must be called inside a tokio runtime.
    pub fn start(
        cfg: BridgeConfig,
        db: Arc<redb::Database>,
        host: Arc<dyn DocumentHost>,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle, BridgeError> {
        let registry = Registry::from_config(&cfg)?;
        Self::start_with_registry(cfg, registry, db, host, shutdown)
    }

    /// Like `start` with a prepared integration registry (custom integrations, tests).
    pub fn start_with_registry(
        cfg: BridgeConfig,
        registry: Registry,
        db: Arc<redb::Database>,
        host: Arc<dyn DocumentHost>,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle, BridgeError> {
        // Checked before the outbox's tables are created, as always.
        cfg.validate()?;
        let outbox: Arc<dyn OutboxStore> = Arc::new(
            RedbOutbox::open(db, cfg.retry.clone())?
                .with_failure_notices(cfg.failure_webhook.is_some()),
        );
        Self::start_with_outbox(cfg, registry, outbox, host, shutdown)
    }

    /// Like `start_with_registry` over an outbox the caller opened (cluster mode: the leader's
    /// outbox of its term). The caller opens it with `cfg.retry` and with failure notices on
    /// when `cfg.failure_webhook` is set, as `start` does.
    pub fn start_with_outbox(
        cfg: BridgeConfig,
        registry: Registry,
        outbox: Arc<dyn OutboxStore>,
        host: Arc<dyn DocumentHost>,
        shutdown: CancellationToken,
    ) -> Result<BridgeHandle, BridgeError> {
        cfg.validate()?;
        crate::metrics::describe();
        let failure_webhook = cfg
            .failure_webhook
            .clone()
            .map(FailureWebhook::new)
            .transpose()?;
        let slots = registry
            .iter()
            .map(|i| {
                (
                    i.name().to_owned(),
                    Arc::new(Semaphore::new(i.concurrency().max(1))),
                )
            })
            .collect();
        let (doc_tx, doc_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cfg,
            outbox,
            registry,
            host,
            dispatch_wake: Notify::new(),
            doc_tx,
            shutdown,
            tracker: TaskTracker::new(),
            done_tx,
            slots,
            failure_wake: Notify::new(),
        });
        // Subscribe before any state is read so no committed update falls in between.
        let stream = inner.host.subscribe();
        let actor = DocActor::new(inner.clone());
        inner.tracker.spawn(actor.run(stream, doc_rx));
        inner.tracker.spawn(dispatcher::run(inner.clone()));
        inner.tracker.spawn(completer::run(inner.clone(), done_rx));
        inner.tracker.spawn(pruner::run(inner.clone()));
        if let Some(w) = failure_webhook {
            inner.tracker.spawn(w.run(inner.clone()));
        }
        tracing::info!(integrations = inner.slots.len(), "bridge started");
        Ok(BridgeHandle { inner })
    }
}

impl BridgeHandle {
    /// The outbox (read access for tools and tests).
    pub fn outbox(&self) -> &Arc<dyn OutboxStore> {
        &self.inner.outbox
    }

    /// Waits until every bridge task stopped (after the shutdown token was cancelled).
    pub async fn join(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    pub(crate) fn notify_writebacks(&self) {
        self.inner.notify_writebacks();
    }
}

impl Inner {
    /// Tells the document actor that write-back rows may be waiting, and the `call.failed`
    /// delivery that failure notices may be: every step that can finish a call queues its
    /// write-back and calls this.
    fn notify_writebacks(&self) {
        let _ = self.doc_tx.send(DocCmd::Writebacks);
        self.failure_wake.notify_one();
    }
}
