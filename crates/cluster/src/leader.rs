//! Cluster-wide singletons: the one node at a time that runs a role (the bridge, the notifier).
//!
//! A role is a lease in the room lease bucket under a key no room can have (`#` is outside the
//! room name alphabet), so it has the same guarantees as a room's owner: one holder at a time,
//! an epoch that only grows, and a holder that fences itself before anyone else may take over.
//! [`Leadership::run`] campaigns, runs the role's work while the lease holds, stops it as soon
//! as the lease fences (or the work ends by itself) and campaigns again, until shutdown.
//! Must not know: what the role does.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::LeaseError;
use crate::lease::{Lease, LeaseClock, Leases};

/// One role's election on this node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    leases: Leases,
    key: String,
    node_id: String,
    retry: Duration,
}

impl Leadership {
    /// The election of `role` (e.g. `"bridge"`) for `node_id`. A node that does not lead tries
    /// again every TTL/4, so a dead leader is replaced about a TTL after its last renewal.
    pub fn new(leases: Leases, role: &str, node_id: &str) -> Self {
        let retry = (leases.ttl() / 4).max(Duration::from_millis(100));
        Leadership {
            leases,
            key: format!("#{role}"),
            node_id: node_id.to_owned(),
            retry,
        }
    }

    /// The role's name as it appears in the lease bucket (before key escaping).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The node leading now, if any.
    pub async fn leader(&self) -> Result<Option<String>, LeaseError> {
        Ok(self.leases.holder(&self.key).await?.map(|(node, _)| node))
    }

    /// Waits until this node holds the role's lease; `None` once `shutdown` fired first.
    pub async fn campaign(&self, shutdown: &CancellationToken) -> Option<Lease> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            match self.leases.acquire(&self.key, &self.node_id).await {
                Ok(lease) => return Some(lease),
                Err(LeaseError::Held { .. }) => {}
                Err(e) => {
                    warn!(role = %self.key, error = %chain(&e), "campaign failed; retrying");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(self.retry) => {}
            }
        }
    }

    /// Runs `work` whenever this node leads, until `shutdown`. `work` gets the lease and a token
    /// that fires when it must stop (the lease fenced, or shutdown); it must return promptly
    /// after that. When `work` returns by itself while the lease still holds, the lease is
    /// released so another node can take over at once, and this node campaigns again after a
    /// pause.
    pub async fn run<F, Fut>(&self, shutdown: CancellationToken, mut work: F)
    where
        F: FnMut(LeaderTerm) -> Fut,
        Fut: Future<Output = ()>,
    {
        while let Some(lease) = self.campaign(&shutdown).await {
            let epoch = lease.epoch();
            info!(role = %self.key, node_id = %self.node_id, epoch, "leading");
            let stop = shutdown.child_token();
            let fenced = lease.fenced();
            let term = LeaderTerm {
                epoch,
                stop: stop.clone(),
                clock: lease.clock(),
            };
            let work = work(term);
            tokio::pin!(work);
            tokio::select! {
                () = &mut work => {}
                // The lease fenced: tell the work to stop and let it finish its way out.
                () = fenced.cancelled() => {
                    stop.cancel();
                    work.await;
                }
            }
            stop.cancel();
            let lost = lease.check().is_err();
            match lease.release().await {
                Ok(_) => {}
                Err(e) => warn!(role = %self.key, error = %chain(&e), "releasing the role"),
            }
            if lost {
                warn!(role = %self.key, epoch, "leadership lost");
            } else {
                info!(role = %self.key, epoch, "leadership ended");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.retry) => {}
            }
        }
    }
}

/// One term of leadership, as the role's work sees it.
#[derive(Debug, Clone)]
pub struct LeaderTerm {
    /// The lease's epoch: larger for every later term of this role, on any node.
    pub epoch: u64,
    /// Fires when the work must stop: the lease fenced, or shutdown.
    pub stop: CancellationToken,
    /// The lease by the process's own clock: work that acts for the role outside the cluster
    /// (an HTTP send) checks it right before, since `stop` may be noticed late (a paused
    /// process) while another node already leads.
    pub clock: LeaseClock,
}

/// An error with its causes, for one log line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
