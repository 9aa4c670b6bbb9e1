//! The node registry (`GET /api/cluster`): every node puts a heartbeat key in a KV bucket every
//! TTL/3; a node is alive while its last heartbeat is younger than the TTL. The bucket keeps a
//! dead node's key a while longer (`forget_after`) so listings show it as not alive.
//! Must not know: rooms, leases.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::RegistryError;
use crate::names::{decode_room, encode_room};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub bucket: String,
    /// A node is alive while its last heartbeat is younger than this.
    pub ttl: Duration,
    /// When a silent node's key disappears from the bucket (its `max_age`).
    pub forget_after: Duration,
    pub replicas: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            bucket: "weaver_nodes".to_owned(),
            ttl: Duration::from_secs(10),
            forget_after: Duration::from_secs(300),
            replicas: 1,
        }
    }
}

/// One node as listed by `GET /api/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub url: String,
    pub alive: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Beat {
    url: String,
}

/// This node's membership: its heartbeat task and the bucket to list the others.
#[derive(Debug)]
pub struct NodeRegistry {
    kv: kv::Store,
    ttl: Duration,
    node_id: String,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl NodeRegistry {
    /// Announces `node_id` at `url` (the first heartbeat must succeed) and keeps announcing it
    /// until [`NodeRegistry::stop`].
    pub async fn start(
        js: &jetstream::Context,
        cfg: RegistryConfig,
        node_id: &str,
        url: &str,
    ) -> Result<NodeRegistry, RegistryError> {
        let kv = js
            .create_key_value(kv::Config {
                bucket: cfg.bucket.clone(),
                history: 1,
                max_age: cfg.forget_after.max(cfg.ttl),
                storage: jetstream::stream::StorageType::File,
                num_replicas: cfg.replicas,
                ..Default::default()
            })
            .await
            .map_err(|source| RegistryError::Bucket {
                bucket: cfg.bucket.clone(),
                source,
            })?;
        let key = encode_room(node_id);
        let beat = serde_json::to_vec(&Beat {
            url: url.to_owned(),
        })
        .map_err(RegistryError::Encode)?;
        let beat = bytes::Bytes::from(beat);
        kv.put(&key, beat.clone())
            .await
            .map_err(|source| RegistryError::Put {
                node_id: node_id.to_owned(),
                source,
            })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat(kv.clone(), key, beat, cfg.ttl / 3, stop.clone()));
        Ok(NodeRegistry {
            kv,
            ttl: cfg.ttl,
            node_id: node_id.to_owned(),
            stop,
            task: Some(task),
        })
    }

    /// Every node in the bucket, sorted by id, with whether its heartbeat is recent.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RegistryError> {
        self.directory().nodes().await
    }

    /// A read-only view of the registry (cheap to clone), for those who look nodes up
    /// (room placement) without owning this node's heartbeat.
    pub fn directory(&self) -> NodeDirectory {
        NodeDirectory {
            kv: self.kv.clone(),
            ttl: self.ttl,
        }
    }

    /// Stops heartbeating and removes this node from the registry.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Err(e) = self.kv.delete(encode_room(&self.node_id)).await {
            warn!(error = %e, "node registry: could not remove this node");
        }
    }
}

/// The node list, read-only: what [`NodeRegistry::nodes`] reads, without the heartbeat.
#[derive(Debug, Clone)]
pub struct NodeDirectory {
    kv: kv::Store,
    ttl: Duration,
}

impl NodeDirectory {
    /// The registry of the cluster behind `js`, read only, for tools that are no node
    /// (`weaver restore`): `None` when no node ever started there (no bucket). `cfg.ttl` decides
    /// which nodes count as alive; nothing is created.
    pub async fn open(
        js: &jetstream::Context,
        cfg: &RegistryConfig,
    ) -> Result<Option<NodeDirectory>, RegistryError> {
        let open_err = |source| RegistryError::Open {
            bucket: cfg.bucket.clone(),
            source,
        };
        match js.get_stream(format!("KV_{}", cfg.bucket)).await {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(open_err(Box::new(e))),
        }
        let kv = js
            .get_key_value(cfg.bucket.as_str())
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        Ok(Some(NodeDirectory { kv, ttl: cfg.ttl }))
    }

    /// Every node in the bucket, sorted by id, with whether its heartbeat is recent.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, RegistryError> {
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|source| RegistryError::Keys { source })?;
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            match key {
                Ok(k) => ids.push(k),
                Err(e) => warn!(error = %e, "node registry: unreadable key"),
            }
        }
        let mut nodes = Vec::new();
        for key in ids {
            let node_id = decode_room(&key).unwrap_or_else(|| key.clone());
            if let Some(node) = self.read(&key, node_id).await? {
                nodes.push(node);
            }
        }
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// One node by id, if it is in the bucket (one read: placement asks this per room).
    pub async fn node(&self, node_id: &str) -> Result<Option<NodeInfo>, RegistryError> {
        self.read(&encode_room(node_id), node_id.to_owned()).await
    }

    /// The node under `key`, with whether its heartbeat is recent.
    async fn read(&self, key: &str, node_id: String) -> Result<Option<NodeInfo>, RegistryError> {
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|source| RegistryError::Entry {
                node_id: node_id.clone(),
                source,
            })?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let beat: Beat =
            serde_json::from_slice(&entry.value).map_err(|source| RegistryError::Decode {
                node_id: node_id.clone(),
                source,
            })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let age = now - entry.created.unix_timestamp_nanos();
        Ok(Some(NodeInfo {
            node_id,
            url: beat.url,
            alive: age < self.ttl.as_nanos() as i128,
        }))
    }
}

impl Drop for NodeRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn heartbeat(
    kv: kv::Store,
    key: String,
    beat: bytes::Bytes,
    period: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let put = kv.put(&key, beat.clone());
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = put => if let Err(e) = r {
                warn!(error = %e, "node heartbeat failed; retrying");
            },
        }
    }
}
