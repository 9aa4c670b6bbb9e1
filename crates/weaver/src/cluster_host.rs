//! The bridge's `DocumentHost` in cluster mode: every room of the cluster, whichever node owns
//! it. The one place that knows the bridge's seam, the relay and the JetStream room log at once.
//!
//! - Events: the cluster-wide change stream (`weaver_cluster::RoomChanges`), subscribed before
//!   the bridge reads any state, mapped to `HostEvent`s: `Update` per stored update (and for a
//!   `Resync`, the snapshot standing in for updates a compaction erased unseen: applying it is
//!   idempotent), `RoomDeleted`, `Lagged`. There is no `RoomUnloaded` across nodes: the
//!   bridge's own idle eviction of mirrors bounds its memory.
//! - Reads: `stored_rooms` lists the room streams; `room_state` reads a room's snapshot and log
//!   from JetStream without taking the room over (no lease, no takeover record) and merges
//!   them with `weaver-doc`, so reading never moves a room or fences its owner.
//! - Writes go through the room's owner: `RelayHandle::apply_update` when this node owns the
//!   room or may place it here; when another node owns it, an HTTP POST of the update to that
//!   owner's `/api/rooms/{room}/update` (with a short-lived write token for the room when
//!   `--auth-key` is set), which admits, persists and broadcasts it like any update.
//!
//! The bridge never takes a rule decision on its own writes whatever origin the stored update
//! carries back: it writes into its mirror first, so the echo integrates nothing new.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use weaver_auth::{Claims, Permission, Scope, TokenKey};
use weaver_bridge::{BoxFuture, DocumentHost, HostError, HostEvent, UpdateStream};
use weaver_cluster::{RoomChange, RoomChanges, RoomLog};
use weaver_relay::{RelayError, RelayHandle, RemoteOwner};

use crate::bridge_host::host_error;

/// The origin of every update the change stream delivers (JetStream keeps no origin).
const CLUSTER_ORIGIN: &str = "cluster";

/// How long the token of a forwarded write-back is valid.
const FORWARD_TOKEN_TTL_SECS: u64 = 60;

/// How long a forwarded write-back may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// `DocumentHost` over the whole cluster.
#[derive(Debug)]
pub struct ClusterHost {
    relay: RelayHandle,
    /// A log of its own, only for reads: the room store's log holds the lanes of the rooms
    /// this node owns, which a read must not disturb.
    log: RoomLog,
    http: reqwest::Client,
    key: Option<TokenKey>,
    /// The subscription made before the bridge started, for its one `subscribe`.
    changes: Mutex<Option<RoomChanges>>,
}

impl ClusterHost {
    /// Subscribes to the change stream now, before the bridge reads any state.
    pub async fn start(
        relay: RelayHandle,
        log: RoomLog,
        key: Option<TokenKey>,
    ) -> anyhow::Result<ClusterHost> {
        let changes = RoomChanges::subscribe(&log)
            .await
            .context("subscribing to the cluster's room changes")?;
        let http = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .build()
            .context("building the HTTP client for write-backs to room owners")?;
        Ok(ClusterHost {
            relay,
            log,
            http,
            key,
            changes: Mutex::new(Some(changes)),
        })
    }

    async fn room_state(&self, room: &str) -> Result<Vec<u8>, HostError> {
        weaver_relay::validate_room_name(room).map_err(host_error)?;
        let stored = self.log.load(Arc::from(room)).await;
        // Nothing to keep: the next read starts afresh.
        self.log.forget(room);
        let stored = stored.map_err(|e| HostError::Unavailable(e.into()))?;
        let merged = tokio::task::spawn_blocking(move || {
            let ws = match &stored.snapshot {
                Some(s) => weaver_doc::Workspace::from_update_v1(s)?,
                None => weaver_doc::Workspace::new(),
            };
            for (_, u) in &stored.tail {
                ws.apply_update_v1(u, "load")?;
            }
            ws.encode_state_v1()
        })
        .await
        .map_err(|e| HostError::Unavailable(e.into()))?;
        merged.map_err(|e| HostError::Unavailable(e.into()))
    }

    async fn apply(&self, room: &str, update: Vec<u8>, origin: &str) -> Result<(), HostError> {
        match self.relay.apply_update(room, update.clone(), origin).await {
            Err(RelayError::Remote(owner)) => self.post_to_owner(room, update, &owner).await,
            r => r.map_err(host_error),
        }
    }

    /// The update through the owner's HTTP room API: 4xx is a refusal of the update itself
    /// (the bridge gives it up after its retries), anything else a temporary failure.
    async fn post_to_owner(
        &self,
        room: &str,
        update: Vec<u8>,
        owner: &RemoteOwner,
    ) -> Result<(), HostError> {
        let unavailable = |e: anyhow::Error| HostError::Unavailable(e.into());
        let mut url = reqwest::Url::parse(&owner.url)
            .with_context(|| format!("owner {} advertises {:?}", owner.node_id, owner.url))
            .map_err(unavailable)?;
        url.path_segments_mut()
            .map_err(|()| unavailable(anyhow::anyhow!("owner URL {:?} has no path", owner.url)))?
            .pop_if_empty()
            .extend(["api", "rooms", room, "update"]);
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(update);
        if let Some(key) = &self.key {
            let token = key.mint(&Claims {
                scope: Scope::Room(room.to_owned()),
                permission: Permission::Write,
                expires_at: weaver_relay::auth::now_unix() + FORWARD_TOKEN_TTL_SECS,
                admin: false,
            });
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .with_context(|| {
                format!(
                    "write-back to room {room:?} via its owner {}",
                    owner.node_id
                )
            })
            .map_err(unavailable)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let e = anyhow::anyhow!(
            "room {room:?}: its owner {} answered {status}: {body}",
            owner.node_id
        );
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(HostError::Refused(e.into()))
        } else {
            Err(unavailable(e))
        }
    }
}

/// The change stream as the bridge's update stream.
struct ClusterStream {
    changes: Option<RoomChanges>,
    /// A stream made without the start-up subscription: subscribes on first use and reports
    /// `Lagged` first, since what happened before is unknown.
    log: Option<RoomLog>,
}

impl UpdateStream for ClusterStream {
    fn next(&mut self) -> BoxFuture<'_, Option<HostEvent>> {
        Box::pin(async move {
            if self.changes.is_none() {
                let log = self.log.take()?;
                match RoomChanges::subscribe(&log).await {
                    Ok(c) => self.changes = Some(c),
                    Err(e) => {
                        tracing::error!(error = %format!("{:#}", anyhow::Error::new(e)), "bridge cannot follow the cluster's room changes");
                        return None;
                    }
                }
                return Some(HostEvent::Lagged);
            }
            let change = self.changes.as_mut()?.recv().await?;
            Some(match change {
                RoomChange::Update { room, update, .. } => HostEvent::Update {
                    room: room.to_string(),
                    update: update.to_vec(),
                    origin: CLUSTER_ORIGIN.to_owned(),
                },
                RoomChange::Resync { room, state, .. } => HostEvent::Update {
                    room: room.to_string(),
                    update: state.to_vec(),
                    origin: CLUSTER_ORIGIN.to_owned(),
                },
                RoomChange::Deleted { room } => HostEvent::RoomDeleted {
                    room: room.to_string(),
                },
                RoomChange::Lagged => {
                    tracing::warn!("bridge lagged behind the cluster's room changes");
                    HostEvent::Lagged
                }
            })
        })
    }
}

impl DocumentHost for ClusterHost {
    fn stored_rooms(&self) -> BoxFuture<'_, Result<Vec<String>, HostError>> {
        Box::pin(async move { self.relay.stored_rooms().await.map_err(host_error) })
    }

    fn room_state<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<Vec<u8>, HostError>> {
        Box::pin(self.room_state(room))
    }

    fn apply_update<'a>(
        &'a self,
        room: &'a str,
        update: Vec<u8>,
        origin: &'a str,
    ) -> BoxFuture<'a, Result<(), HostError>> {
        Box::pin(self.apply(room, update, origin))
    }

    fn subscribe(&self) -> Box<dyn UpdateStream> {
        let changes = self.changes.lock().ok().and_then(|mut c| c.take());
        let log = changes.is_none().then(|| self.log.clone());
        Box::new(ClusterStream { changes, log })
    }
}
