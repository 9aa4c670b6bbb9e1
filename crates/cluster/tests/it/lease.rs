//! Room leases: one holder at a time, renewal, self-fencing before anyone may take over, and
//! a release that never deletes a successor's lease.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use weaver_cluster::LeaseError;
use weaver_cluster::testing::NatsServer;

use crate::support::{Proxy, lease_config, leases};

/// Tries to acquire until it succeeds or `within` passes.
async fn acquire_within(
    l: &weaver_cluster::Leases,
    room: &str,
    node: &str,
    within: Duration,
) -> Option<weaver_cluster::Lease> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        match l.acquire(room, node).await {
            Ok(lease) => return Some(lease),
            Err(LeaseError::Held { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    None
}

#[tokio::test]
async fn a_held_lease_is_exclusive_and_renewed_until_released() {
    let server = NatsServer::shared();
    let cfg = lease_config(Duration::from_millis(2000));
    let (n1, n2) = (leases(&server, &cfg).await, leases(&server, &cfg).await);
    let lease = n1.acquire("room a.b", "n1").await.unwrap();
    assert_eq!(lease.node_id(), "n1");
    // Held well past its TTL: renewals keep it.
    let until = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < until {
        match n2.acquire("room a.b", "n2").await {
            Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "n1"),
            other => panic!("n2 got the lease while n1 renews it: {other:?}"),
        }
        lease.check().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n2.holder("room a.b").await.unwrap().unwrap().0, "n1");
    // Released: the next node gets it at once, with a larger epoch.
    let epoch = lease.epoch();
    assert!(lease.release().await.unwrap());
    let next = n2.acquire("room a.b", "n2").await.unwrap();
    assert!(next.epoch() > epoch);
    assert!(next.release().await.unwrap());
    n1.stop().await;
    n2.stop().await;
}

/// A node that stops renewing (it shuts its lease bucket down without releasing) leaves a
/// lease that expires after the TTL; then another node takes the room with a larger epoch.
#[tokio::test]
async fn an_abandoned_lease_expires_and_is_taken_over_with_a_larger_epoch() {
    let server = NatsServer::shared();
    let ttl = Duration::from_millis(1000);
    let cfg = lease_config(ttl);
    let (n1, n2) = (leases(&server, &cfg).await, leases(&server, &cfg).await);
    let started = Instant::now();
    let lease = n1.acquire("abandoned", "n1").await.unwrap();
    n1.stop().await;
    assert!(
        lease.fenced().is_cancelled(),
        "a holder that stops renewing is fenced"
    );
    let taken = acquire_within(&n2, "abandoned", "n2", ttl * 3)
        .await
        .expect("n2 acquires after the TTL");
    let taken_at = started.elapsed();
    assert!(
        taken_at >= ttl - Duration::from_millis(50),
        "taken over after {taken_at:?}"
    );
    assert!(taken.epoch() > lease.epoch());
    taken.release().await.unwrap();
    n2.stop().await;
}

/// The holder's connection stalls (a TCP proxy stops forwarding: a partition, or a paused
/// process, as far as NATS can tell) while another node polls for the room: the holder fences
/// itself by its own clock strictly before the other node can acquire.
#[tokio::test]
async fn a_stalled_holder_is_fenced_before_another_node_takes_over() {
    let server = NatsServer::shared();
    let ttl = Duration::from_millis(1500);
    let cfg = lease_config(ttl);
    let proxy = Proxy::start(&server.url()).await;
    let client = weaver_cluster::connect(&proxy.url, "stalled")
        .await
        .unwrap();
    let js = weaver_cluster::jetstream(client, Duration::from_secs(2));
    let n1 = weaver_cluster::Leases::open(&js, cfg.clone())
        .await
        .unwrap();
    let n2 = leases(&server, &cfg).await;
    let lease = n1.acquire("stalled", "n1").await.unwrap();
    let fenced = lease.fenced();
    let fenced_at = tokio::spawn(async move {
        fenced.cancelled().await;
        Instant::now()
    });
    proxy.freeze(true, true);
    let taken = acquire_within(&n2, "stalled", "n2", ttl * 3)
        .await
        .expect("n2 acquires once the stalled lease expired");
    let taken_at = Instant::now();
    let fenced_at = fenced_at.await.unwrap();
    assert!(
        fenced_at < taken_at,
        "fenced {:?} before the takeover",
        taken_at - fenced_at
    );
    assert!(lease.check().is_err());
    assert!(taken.epoch() > lease.epoch());
    taken.release().await.unwrap();
    drop(lease);
    n2.stop().await;
    n1.stop().await;
}

/// Someone else wrote the key (a new holder after an expiry the old one missed, or an
/// operator): the next renewal fails its compare-and-set and the holder fences at once.
#[tokio::test]
async fn a_holder_whose_key_was_overwritten_fences_itself() {
    let server = NatsServer::shared();
    let ttl = Duration::from_millis(1500);
    let cfg = lease_config(ttl);
    let n1 = leases(&server, &cfg).await;
    let lease = n1.acquire("usurped", "n1").await.unwrap();
    let put_at = Instant::now();
    n1.bucket()
        .put(
            weaver_cluster::encode_room("usurped"),
            Bytes::from_static(b"n9"),
        )
        .await
        .unwrap();
    tokio::time::timeout(ttl, lease.fenced().cancelled())
        .await
        .expect("fenced at the next renewal (TTL/3)");
    assert!(put_at.elapsed() < ttl);
    assert!(lease.check().is_err());
    // Its release does not delete the usurper's key.
    assert!(!lease.release().await.unwrap());
    assert_eq!(n1.holder("usurped").await.unwrap().unwrap().0, "n9");
    n1.stop().await;
}

/// NATS goes away: renewals fail, and the holder fences itself before the TTL elapses.
#[tokio::test]
async fn a_holder_that_cannot_reach_nats_fences_itself_before_the_ttl() {
    let server = NatsServer::start();
    let ttl = Duration::from_millis(1500);
    let cfg = lease_config(ttl);
    let n1 = leases(&server, &cfg).await;
    let lease = n1.acquire("cut-off", "n1").await.unwrap();
    // Let one renewal succeed, then cut NATS off.
    tokio::time::sleep(ttl / 3 + Duration::from_millis(100)).await;
    lease.check().unwrap();
    let stopped = Instant::now();
    server.kill();
    tokio::time::timeout(ttl, lease.fenced().cancelled())
        .await
        .expect("fenced within the TTL of the last renewal");
    let fenced_after = stopped.elapsed();
    assert!(
        fenced_after < ttl - cfg.margin + Duration::from_millis(200),
        "{fenced_after:?}"
    );
    assert!(lease.check().is_err());
    drop(lease);
    n1.stop().await;
}

/// A stale holder (its lease expired, another node holds the room now) releasing late must
/// not delete the new holder's lease.
#[tokio::test]
async fn a_stale_release_does_not_delete_the_new_holders_lease() {
    let server = NatsServer::shared();
    let ttl = Duration::from_millis(1000);
    let cfg = lease_config(ttl);
    let (n1, n2) = (leases(&server, &cfg).await, leases(&server, &cfg).await);
    let stale = n1.acquire("handover", "n1").await.unwrap();
    n1.stop().await;
    let current = acquire_within(&n2, "handover", "n2", ttl * 3)
        .await
        .unwrap();
    assert!(!stale.release().await.unwrap());
    let (holder, revision) = n2.holder("handover").await.unwrap().unwrap();
    assert_eq!(holder, "n2");
    assert!(revision >= current.epoch());
    current.check().unwrap();
    assert!(current.release().await.unwrap());
    n2.stop().await;
}
