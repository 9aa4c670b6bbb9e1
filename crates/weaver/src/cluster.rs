//! Cluster mode of `weaver serve` (`--cluster nats://…`, docs/cluster.md): its flags, the
//! JetStream room store that replaces the redb one, this node's entry in the node registry and
//! `GET /api/cluster`, and room placement by lease (one owner per room across the nodes; the
//! relay forwards a room owned elsewhere to its owner).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tracing::{info, warn};
use weaver_cluster::{
    Claims, JetStreamRoomStore, Leadership, LeaseConfig, LeasePlacement, Leases, NodeDirectory,
    NodeRegistry, RegistryConfig, RoomLog, RoomLogConfig,
};
use weaver_relay::RelayHandle;

/// `weaver serve` flags of cluster mode.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Run as a node of a cluster whose rooms live in NATS JetStream at this URL
    /// (`nats://HOST:PORT`; the server needs JetStream with `sync_interval: always`, see
    /// docs/cluster.md). Without it rooms live in the embedded redb store under `--data`.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "WEAVER_CLUSTER",
        value_name = "NATS_URL",
        requires = "node_id"
    )]
    pub cluster: Option<String>,
    /// This node's id, unique in the cluster (required with --cluster).
    #[arg(help_heading = "Cluster", long, env = "WEAVER_NODE_ID")]
    pub node_id: Option<String>,
    /// How long a node counts as alive after its last heartbeat (and, with placement, how long
    /// a room's lease lasts), in milliseconds.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "WEAVER_LEASE_TTL_MS",
        default_value_t = 10_000
    )]
    pub lease_ttl_ms: u64,
    /// The URL other nodes and operators reach this node at (default: `http://` + --listen).
    #[arg(help_heading = "Cluster", long, env = "WEAVER_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Replicas of the room streams and the node bucket when they are created (3 in
    /// production; at most the number of JetStream servers). Existing streams keep theirs.
    #[arg(
        help_heading = "Cluster",
        long,
        env = "WEAVER_CLUSTER_REPLICAS",
        default_value_t = 1
    )]
    pub cluster_replicas: usize,
}

/// What `--cluster` asks for, checked.
#[derive(Debug)]
pub struct ClusterPlan {
    url: String,
    node_id: String,
    ttl: Duration,
    /// `None`: `http://` + the bound address, known only after binding.
    advertise_url: Option<String>,
    replicas: usize,
}

impl ClusterArgs {
    /// `None` without `--cluster`; the checked plan with it.
    pub fn plan(&self) -> anyhow::Result<Option<ClusterPlan>> {
        let Some(url) = self.cluster.clone() else {
            return Ok(None);
        };
        if !(url.starts_with("nats://") || url.starts_with("tls://")) {
            bail!("--cluster must be a NATS URL like nats://127.0.0.1:4222, got {url:?}");
        }
        let node_id = self.node_id.clone().unwrap_or_default();
        if node_id.trim().is_empty() {
            bail!("--node-id (WEAVER_NODE_ID) is required with --cluster and must not be empty");
        }
        if self.lease_ttl_ms < 1000 {
            bail!(
                "--lease-ttl-ms must be at least 1000, got {}",
                self.lease_ttl_ms
            );
        }
        if !(1..=5).contains(&self.cluster_replicas) {
            bail!(
                "--cluster-replicas must be between 1 and 5, got {}",
                self.cluster_replicas
            );
        }
        let advertise_url = match &self.advertise_url {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.clone()),
            Some(u) => bail!("--advertise-url must be an http(s) URL, got {u:?}"),
            None => None,
        };
        Ok(Some(ClusterPlan {
            url,
            node_id,
            ttl: Duration::from_millis(self.lease_ttl_ms),
            advertise_url,
            replicas: self.cluster_replicas,
        }))
    }
}

/// This node's part of a running cluster.
#[derive(Debug)]
pub struct Node {
    node_id: String,
    registry: Arc<NodeRegistry>,
    placement: Arc<LeasePlacement>,
    /// For cluster-wide roles (the bridge): their leases and reads of the rooms.
    client: weaver_cluster::NatsClient,
    leases: Leases,
    replicas: usize,
}

impl ClusterPlan {
    /// Connects to NATS (the first connection must succeed) and opens the room streams.
    /// Returns the room store for the relay and what announces the node once it listens.
    pub async fn start(self) -> anyhow::Result<(Joining, Arc<JetStreamRoomStore>)> {
        let client = weaver_cluster::connect(&self.url, &format!("weaver-{}", self.node_id))
            .await
            .context("cluster mode")?;
        // The leases the placement holds, whose epochs the store writes into takeover records.
        let claims = Claims::new(&self.node_id);
        let store = JetStreamRoomStore::open(
            client.clone(),
            RoomLogConfig {
                replicas: self.replicas,
                ..RoomLogConfig::default()
            },
        )
        .await
        .context("opening the room streams on JetStream")?
        .with_claims(claims.clone());
        Ok((
            Joining {
                plan: self,
                client,
                claims,
            },
            Arc::new(store),
        ))
    }
}

/// A node connected to NATS, not yet in the node registry (it needs the bound address).
#[derive(Debug)]
pub struct Joining {
    plan: ClusterPlan,
    client: weaver_cluster::NatsClient,
    claims: Claims,
}

impl Joining {
    /// Announces this node in the registry at `--advertise-url`, or at the bound address.
    pub async fn announce(self, bound: SocketAddr) -> anyhow::Result<Node> {
        let plan = self.plan;
        let url = plan
            .advertise_url
            .unwrap_or_else(|| format!("http://{bound}"));
        let js = weaver_cluster::jetstream(
            self.client.clone(),
            RoomLogConfig::default().request_timeout,
        );
        let registry = NodeRegistry::start(
            &js,
            RegistryConfig {
                ttl: plan.ttl,
                replicas: plan.replicas,
                ..RegistryConfig::default()
            },
            &plan.node_id,
            &url,
        )
        .await
        .context("announcing this node in the node registry")?;
        // A holder fences itself a fifth of the TTL before its lease can expire: renewals run
        // every TTL/3, so two missed renewals still leave it time to stop.
        let leases = Leases::open(
            &js,
            LeaseConfig {
                ttl: plan.ttl,
                margin: plan.ttl / 5,
                replicas: plan.replicas,
                ..LeaseConfig::default()
            },
        )
        .await
        .context("opening the room lease bucket")?;
        // Long enough to outwait the lease of an owner that died (TTL), with room to spare.
        let placement = Arc::new(
            LeasePlacement::new(
                leases.clone(),
                registry.directory(),
                &plan.node_id,
                plan.ttl * 3,
            )
            .with_claims(self.claims),
        );
        info!(node_id = %plan.node_id, nats = %plan.url, %url, "cluster node started");
        Ok(Node {
            node_id: plan.node_id,
            registry: Arc::new(registry),
            placement,
            client: self.client,
            leases,
            replicas: plan.replicas,
        })
    }
}

impl Node {
    /// Where each room's actor runs: the relay's `RoomPlacement` for this node.
    pub fn placement(&self) -> Arc<LeasePlacement> {
        self.placement.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The election of a cluster-wide role (`"bridge"`) for this node.
    pub fn leadership(&self, role: &str) -> Leadership {
        Leadership::new(self.leases.clone(), role, &self.node_id)
    }

    /// The NATS connection and where the cluster's bridge outbox lives (the bridge role, backup).
    pub fn outbox(
        &self,
    ) -> (
        weaver_cluster::NatsClient,
        weaver_cluster_outbox::OutboxConfig,
    ) {
        (
            self.client.clone(),
            weaver_cluster_outbox::OutboxConfig {
                replicas: self.replicas,
                ..Default::default()
            },
        )
    }

    /// The node list, to find another node's URL.
    pub fn directory(&self) -> NodeDirectory {
        self.registry.directory()
    }

    /// A room log of its own over the room streams, for a role that reads rooms it does not
    /// own (the room store's log keeps the lanes of the rooms this node owns).
    pub async fn reading_log(&self) -> anyhow::Result<RoomLog> {
        RoomLog::open(
            self.client.clone(),
            RoomLogConfig {
                replicas: self.replicas,
                ..RoomLogConfig::default()
            },
        )
        .await
        .context("opening the room streams for reading")
    }

    /// Whole-room copies of the cluster's rooms, for `GET /api/backup` (its own log: reading
    /// never takes a room over).
    pub async fn transfer(&self) -> anyhow::Result<weaver_cluster::RoomTransfer> {
        weaver_cluster::RoomTransfer::open(
            self.client.clone(),
            RoomLogConfig {
                replicas: self.replicas,
                ..RoomLogConfig::default()
            },
        )
        .await
        .context("opening the room streams for backups")
    }

    /// `GET /api/cluster` (the caller puts it behind the admin check).
    pub fn router(&self, relay: RelayHandle) -> Router {
        Router::new()
            .route("/api/cluster", get(cluster_info))
            .with_state(ClusterState {
                node_id: self.node_id.clone(),
                registry: self.registry.clone(),
                relay,
            })
    }

    /// Leaves the registry (after the HTTP server stopped, so no route holds it any more).
    pub async fn stop(self) {
        match Arc::try_unwrap(self.registry) {
            Ok(registry) => registry.stop().await,
            // Dropping the last handle stops the heartbeat; the entry expires by itself.
            Err(_) => warn!("node registry still in use at shutdown; leaving it to expire"),
        }
    }
}

#[derive(Debug, Clone)]
struct ClusterState {
    node_id: String,
    registry: Arc<NodeRegistry>,
    relay: RelayHandle,
}

async fn cluster_info(State(s): State<ClusterState>) -> Response {
    match s.registry.nodes().await {
        Ok(nodes) => axum::Json(json!({
            "node_id": s.node_id,
            "nodes": nodes,
            "owned_rooms": s.relay.loaded_room_names(),
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "error": format!("{:#}", anyhow::Error::new(e)),
                "node_id": s.node_id,
                "owned_rooms": s.relay.loaded_room_names(),
            })),
        )
            .into_response(),
    }
}
