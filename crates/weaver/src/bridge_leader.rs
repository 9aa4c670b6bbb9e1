//! The bridge in cluster mode: one bridge per cluster, run by the node holding the `bridge`
//! role (`weaver_cluster::Leadership`), over every room of the cluster (`cluster_host.rs`), and
//! its HTTP routes on every node.
//!
//! Each term of leadership opens the outbox through an [`OutboxFactory`] (in the product
//! [`jetstream_outbox`]: the cluster's shared outbox on JetStream, `weaver-cluster-outbox`),
//! starts the bridge over it and a fresh [`ClusterHost`], and stops and joins it when the term
//! ends: the lease fenced, shutdown, or the outbox reported itself fenced (a newer leader
//! opened it). `/api/calls…` and `/api/webhooks/{integration}` are served by the
//! running bridge on the leader and proxied to the leader from every other node (streamed,
//! through the relay's forwarding proxy); 503 with `Retry-After` while there is none.

use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{error, info, warn};
use weaver_auth::TokenKey;
use weaver_bridge::{BoxFuture, Bridge, BridgeConfig, OutboxStore, Registry};
use weaver_cluster::{LeaderTerm, Leadership, NodeDirectory, RoomLog};
use weaver_cluster_outbox::{JetStreamOutbox, OutboxConfig};
use weaver_relay::{RelayHandle, RemoteOwner};

use crate::cluster_host::ClusterHost;

/// Marks a request one node already forwarded to the bridge leader: the receiver serves it or
/// answers 503, never forwards it again (no loops while leadership moves).
const FORWARDED: HeaderName = HeaderName::from_static("x-weaver-bridge-forwarded");

/// Seconds a client is asked to wait when no bridge leader serves yet.
const RETRY_AFTER_SECS: &str = "1";

/// One term's outbox: the store, and a token the engine cancels when it finds itself fenced
/// (a newer leader opened the outbox), which ends the term.
#[derive(Debug)]
pub struct OutboxTerm {
    pub outbox: Arc<dyn OutboxStore>,
    pub fenced: CancellationToken,
}

/// Opens the outbox at the start of a term, given the term's epoch.
pub type OutboxFactory =
    Arc<dyn Fn(u64) -> BoxFuture<'static, anyhow::Result<OutboxTerm>> + Send + Sync>;

/// The cluster's shared outbox on JetStream: each term opens a handle (replaying the log and
/// fencing the previous leader's handle); the term ends when this handle is fenced in turn.
pub fn jetstream_outbox(
    client: weaver_cluster::NatsClient,
    outbox: OutboxConfig,
    cfg: &BridgeConfig,
) -> OutboxFactory {
    let retry = cfg.retry.clone();
    let notices = cfg.failure_webhook.is_some();
    Arc::new(move |epoch| {
        let (client, outbox, retry) = (client.clone(), outbox.clone(), retry.clone());
        Box::pin(async move {
            let outbox = JetStreamOutbox::open(&client, &outbox, retry, notices)
                .await
                .with_context(|| format!("opening the cluster's outbox (term {epoch})"))?;
            let fenced = outbox.fenced();
            Ok(OutboxTerm {
                outbox: Arc::new(outbox),
                fenced,
            })
        })
    })
}

/// What a term needs to run the bridge.
pub struct Deps {
    pub cfg: BridgeConfig,
    pub outbox: OutboxFactory,
    pub relay: RelayHandle,
    /// A room log for reads only (not the room store's).
    pub log: RoomLog,
    pub key: Option<TokenKey>,
    pub leadership: Leadership,
    pub directory: NodeDirectory,
    pub node_id: String,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The bridge role on this node: campaigning, and the bridge while it leads.
#[derive(Debug)]
pub struct BridgeLeader {
    routes: Routes,
    task: tokio::task::JoinHandle<()>,
}

impl BridgeLeader {
    /// Checks the configuration (a bad one fails the start, as in single-node mode), then
    /// campaigns for the role until `shutdown`.
    pub fn start(deps: Deps, shutdown: CancellationToken) -> anyhow::Result<BridgeLeader> {
        deps.cfg.validate().context("bridge configuration")?;
        Registry::from_config(&deps.cfg).context("bridge integrations")?;
        let routes = Routes {
            local: Arc::new(RwLock::new(None)),
            leadership: deps.leadership.clone(),
            directory: deps.directory.clone(),
            node_id: deps.node_id.clone(),
        };
        let deps = Arc::new(deps);
        let leadership = deps.leadership.clone();
        let local = routes.local.clone();
        let task = tokio::spawn(async move {
            leadership
                .run(shutdown, |term| lead(deps.clone(), local.clone(), term))
                .await;
        });
        Ok(BridgeLeader { routes, task })
    }

    /// `/api/calls…` and `/api/webhooks/{integration}` on this node.
    pub fn router(&self) -> Router {
        self.routes.router()
    }

    /// Waits until the role ended (after shutdown): the bridge, if this node led, is joined.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "bridge role task failed");
        }
    }
}

/// One term: the bridge runs until the term's stop fires or the outbox says it is fenced.
async fn lead(deps: Arc<Deps>, local: Arc<RwLock<Option<Router>>>, term: LeaderTerm) {
    let epoch = term.epoch;
    let outbox = match (deps.outbox)(epoch).await {
        Ok(o) => o,
        Err(e) => {
            error!(
                epoch,
                error = format!("{e:#}"),
                "bridge leader cannot open the outbox; ending the term"
            );
            return;
        }
    };
    let host =
        match ClusterHost::start(deps.relay.clone(), deps.log.clone(), deps.key.clone()).await {
            Ok(h) => h,
            Err(e) => {
                error!(
                    epoch,
                    error = format!("{e:#}"),
                    "bridge leader cannot follow the rooms; ending the term"
                );
                return;
            }
        };
    let registry = match Registry::from_config(&deps.cfg) {
        Ok(r) => r,
        Err(e) => {
            error!(epoch, error = %e, "bridge integrations; ending the term");
            return;
        }
    };
    let stop = term.stop.child_token();
    let bridge = match Bridge::start_with_outbox(
        deps.cfg.clone(),
        registry,
        outbox.outbox,
        Arc::new(host),
        stop.clone(),
    ) {
        Ok(b) => b,
        Err(e) => {
            error!(epoch, error = %e, "bridge leader cannot start the bridge; ending the term");
            return;
        }
    };
    set(&local, Some(bridge.router()));
    info!(epoch, node_id = %deps.node_id, "this node runs the cluster's bridge");
    tokio::select! {
        () = term.stop.cancelled() => {}
        () = outbox.fenced.cancelled() => {
            warn!(epoch, "the outbox was opened by a newer bridge leader; stopping the bridge");
        }
    }
    set(&local, None);
    stop.cancel();
    bridge.join().await;
    info!(epoch, "bridge stopped on this node");
}

fn set(local: &RwLock<Option<Router>>, router: Option<Router>) {
    match local.write() {
        Ok(mut l) => *l = router,
        Err(poisoned) => *poisoned.into_inner() = router,
    }
}

/// The bridge's routes on every node.
#[derive(Debug, Clone)]
struct Routes {
    /// The running bridge's router while this node leads.
    local: Arc<RwLock<Option<Router>>>,
    leadership: Leadership,
    directory: NodeDirectory,
    node_id: String,
}

impl Routes {
    fn router(&self) -> Router {
        Router::new()
            .route("/api/calls", any(dispatch))
            .route("/api/calls/{*rest}", any(dispatch))
            .route("/api/webhooks/{*rest}", any(dispatch))
            .with_state(self.clone())
    }

    fn local(&self) -> Option<Router> {
        match self.local.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The leader's node, when it is another live node.
    async fn leader(&self) -> Result<RemoteOwner, &'static str> {
        let leader = match self.leadership.leader().await {
            Ok(Some(l)) => l,
            Ok(None) => return Err("no bridge leader yet"),
            Err(e) => {
                warn!(error = %e, "reading the bridge leader");
                return Err("the bridge leader is unknown (cluster store unreachable)");
            }
        };
        if leader == self.node_id {
            return Err("the bridge is starting or stopping on this node");
        }
        match self.directory.node(&leader).await {
            Ok(Some(n)) if n.alive => Ok(RemoteOwner {
                node_id: n.node_id,
                url: n.url,
            }),
            Ok(_) => Err("the bridge leader is not reachable"),
            Err(e) => {
                warn!(error = %e, "reading the node registry");
                Err("the bridge leader is unknown (cluster store unreachable)")
            }
        }
    }
}

/// Serves a bridge route with the local bridge, or proxies it to the leader.
async fn dispatch(State(routes): State<Routes>, mut req: Request) -> Response {
    if let Some(router) = routes.local() {
        return match router.oneshot(fresh(req)).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
    }
    if req.headers().contains_key(&FORWARDED) {
        return no_leader("the bridge leader changed; try again");
    }
    match routes.leader().await {
        Ok(leader) => {
            req.headers_mut()
                .insert(FORWARDED, HeaderValue::from_static("1"));
            let mut resp = weaver_relay::forward_request(req, &leader).await;
            // The leader unreachable (it died, its lease not yet expired): retry shortly.
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut()
                    .entry(header::RETRY_AFTER)
                    .or_insert(HeaderValue::from_static(RETRY_AFTER_SECS));
            }
            resp
        }
        Err(why) => no_leader(why),
    }
}

/// The request without what this router's own match left in it (its path parameters, which
/// the bridge's router would see next to its own), keeping the token's claims.
fn fresh(req: Request) -> Request {
    let (parts, body) = req.into_parts();
    let claims = parts.extensions.get::<weaver_auth::Claims>().cloned();
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = parts.uri;
    *out.version_mut() = parts.version;
    *out.headers_mut() = parts.headers;
    if let Some(claims) = claims {
        out.extensions_mut().insert(claims);
    }
    out
}

fn no_leader(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        )],
        axum::Json(json!({ "error": why })),
    )
        .into_response()
}
