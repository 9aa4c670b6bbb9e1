//! Room-change webhooks in cluster mode: one notifier per cluster, run by the node holding the
//! `notifier` role (`weaver_cluster::Leadership`); other nodes run none. Each term opens the
//! durable room feed (`weaver_cluster::RoomFeed`, resuming after what earlier terms
//! acknowledged) and the shared delivery ledger (`weaver_cluster::NotifyLedger`, written
//! under the term's epoch), runs `weaver_notify::Notifier::start_cluster` over them, and stops
//! it when the term ends (the lease fenced, shutdown) or the notifier ended by itself (the feed
//! failed, a newer term took the ledger), which ends the term so the role is campaigned again.
//! The term's lease clock goes with the feed and the notifier: they check it themselves before
//! touching the consumers, each send and each ledger write, so a term noticed late (a paused
//! process) acts no more once another node may lead.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use weaver_cluster::{
    LeaderTerm, Leadership, NOTIFY_BUCKET, NotifyLedger, RoomFeed, RoomFeedConfig, RoomLog,
};
use weaver_notify::{Notifier, NotifyConfig};

/// How long a stopping notifier may take to finish its loop (deliveries in flight are
/// abandoned: unacknowledged, they are the next term's).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The notifier role on this node: campaigning, and the notifier while it leads.
#[derive(Debug)]
pub struct NotifyLeader {
    task: tokio::task::JoinHandle<()>,
}

impl NotifyLeader {
    /// Checks the configuration (a bad one fails the start, as in single-node mode), then
    /// campaigns for the role until `shutdown`.
    pub fn start(
        cfg: NotifyConfig,
        log: RoomLog,
        leadership: Leadership,
        shutdown: CancellationToken,
    ) -> anyhow::Result<NotifyLeader> {
        cfg.validate().context("room notifications")?;
        let task = tokio::spawn(async move {
            leadership
                .run(shutdown, |term| lead(cfg.clone(), log.clone(), term))
                .await;
        });
        Ok(NotifyLeader { task })
    }

    /// Waits until the role ended (after shutdown), the notifier of this node's term stopped.
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "notifier role task failed");
        }
    }
}

/// One term: the notifier runs until the term's stop fires or it ends by itself.
async fn lead(cfg: NotifyConfig, log: RoomLog, term: LeaderTerm) {
    let epoch = term.epoch;
    let feed = match RoomFeed::open(&log, &RoomFeedConfig::default(), &term.clock).await {
        Ok(f) => f,
        Err(e) => {
            error!(
                epoch,
                error = format!("{:#}", anyhow::Error::new(e)),
                "notifier cannot open the room feed; ending the term"
            );
            return;
        }
    };
    let ledger = match NotifyLedger::open(&log, NOTIFY_BUCKET, epoch).await {
        Ok(l) => l,
        Err(e) => {
            error!(
                epoch,
                error = format!("{:#}", anyhow::Error::new(e)),
                "notifier cannot open its ledger; ending the term"
            );
            return;
        }
    };
    let stop = term.stop.child_token();
    let mut notifier = match Notifier::start_cluster(cfg, feed, ledger, term.clock, stop.clone()) {
        Ok(n) => n,
        Err(e) => {
            error!(
                epoch,
                error = format!("{:#}", anyhow::Error::new(e)),
                "notifier cannot start; ending the term"
            );
            return;
        }
    };
    info!(epoch, "this node runs the cluster's room notifications");
    tokio::select! {
        () = term.stop.cancelled() => {}
        () = notifier.finished() => {
            warn!(epoch, "room notifications ended by themselves; ending the term");
        }
    }
    stop.cancel();
    notifier.stop(STOP_GRACE).await;
    info!(epoch, "room notifications stopped on this node");
}
