//! Cluster-wide roles: one leader at a time, work stopped when its lease fences, a successor
//! with a larger epoch once the leader is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weaver_cluster::{LeaderTerm, Leadership};

use crate::support::{Proxy, lease_config, leases};

/// A role's work that counts how many terms run at once and records each term's epoch.
#[derive(Clone, Default)]
struct Probe {
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
    epochs: Arc<std::sync::Mutex<Vec<(String, u64)>>>,
}

impl Probe {
    async fn work(self, node: &'static str, term: LeaderTerm) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        self.epochs
            .lock()
            .unwrap()
            .push((node.to_owned(), term.epoch));
        term.stop.cancelled().await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn leaders(&self) -> Vec<(String, u64)> {
        self.epochs.lock().unwrap().clone()
    }
}

async fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_successor_after_shutdown() {
    let server = weaver_cluster::testing::NatsServer::shared();
    let cfg = lease_config(Duration::from_millis(1500));
    let probe = Probe::default();
    let mut nodes = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let l = leases(&server, &cfg).await;
        let election = Leadership::new(l.clone(), "bridge", node);
        let shutdown = CancellationToken::new();
        let p = probe.clone();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                election
                    .run(shutdown, move |term| p.clone().work(node, term))
                    .await
            }
        });
        nodes.push((node, l, shutdown, task));
    }
    assert!(until(Duration::from_secs(5), || probe.leaders().len() == 1).await);
    // Nobody else starts while the leader renews, for several TTLs.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(probe.leaders().len(), 1, "{:?}", probe.leaders());
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
    let (first, first_epoch) = probe.leaders()[0].clone();
    let election = Leadership::new(nodes[0].1.clone(), "bridge", "n1");
    assert_eq!(
        election.leader().await.unwrap().as_deref(),
        Some(first.as_str())
    );

    // The leader shuts down: its work stops, it releases, another node takes over at once.
    let i = nodes.iter().position(|(n, ..)| *n == first).unwrap();
    let (_, l, shutdown, task) = nodes.remove(i);
    shutdown.cancel();
    task.await.unwrap();
    l.stop().await;
    assert!(until(Duration::from_secs(3), || probe.leaders().len() == 2).await);
    let (second, second_epoch) = probe.leaders()[1].clone();
    assert_ne!(second, first);
    assert!(second_epoch > first_epoch);
    assert_eq!(probe.max_running.load(Ordering::SeqCst), 1);
    for (_, l, shutdown, task) in nodes {
        shutdown.cancel();
        task.await.unwrap();
        l.stop().await;
    }
    assert_eq!(probe.running.load(Ordering::SeqCst), 0);
}

/// A leader cut off from NATS fences itself (its work is told to stop) before a node that
/// still reaches NATS takes the role over.
#[tokio::test]
async fn a_partitioned_leader_stops_before_its_successor_starts() {
    let server = weaver_cluster::testing::NatsServer::shared();
    let cfg = lease_config(Duration::from_millis(1500));
    let proxy = Proxy::start(&server.url()).await;
    let js = weaver_cluster::jetstream(
        weaver_cluster::connect(&proxy.url, "leader-test")
            .await
            .unwrap(),
        Duration::from_secs(1),
    );
    let cut_off = weaver_cluster::Leases::open(&js, cfg.clone())
        .await
        .unwrap();
    let stopped_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let started_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let first = tokio::spawn({
        let (election, shutdown, stopped_at) = (
            Leadership::new(cut_off.clone(), "notifier", "n1"),
            shutdown.clone(),
            stopped_at.clone(),
        );
        async move {
            election
                .run(shutdown, move |term| {
                    let stopped_at = stopped_at.clone();
                    async move {
                        term.stop.cancelled().await;
                        stopped_at.lock().unwrap().get_or_insert(Instant::now());
                    }
                })
                .await
        }
    });
    let other = leases(&server, &cfg).await;
    let election = Leadership::new(other.clone(), "notifier", "n2");
    let end = Instant::now() + Duration::from_secs(3);
    while election.leader().await.unwrap().is_none() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(election.leader().await.unwrap().as_deref(), Some("n1"));
    proxy.freeze(true, true);
    let second = tokio::spawn({
        let (shutdown, started_at) = (shutdown.clone(), started_at.clone());
        async move {
            election
                .run(shutdown, move |term| {
                    let started_at = started_at.clone();
                    async move {
                        started_at.lock().unwrap().get_or_insert(Instant::now());
                        term.stop.cancelled().await;
                    }
                })
                .await
        }
    });
    assert!(
        until(Duration::from_secs(6), || started_at
            .lock()
            .unwrap()
            .is_some())
        .await
    );
    let stopped = stopped_at
        .lock()
        .unwrap()
        .expect("the cut-off leader never stopped");
    let started = started_at.lock().unwrap().unwrap();
    assert!(
        stopped < started,
        "successor started before the old leader stopped"
    );
    proxy.freeze(false, false);
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), first).await;
    second.await.unwrap();
    other.stop().await;
}
