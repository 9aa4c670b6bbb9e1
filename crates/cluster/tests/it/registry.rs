//! The node registry behind `GET /api/cluster`.

use std::time::Duration;

use weaver_cluster::testing::{NatsServer, unique};
use weaver_cluster::{NodeDirectory, NodeInfo, NodeRegistry, RegistryConfig};

#[tokio::test]
async fn nodes_are_listed_while_they_heartbeat() {
    let server = NatsServer::shared();
    let js = weaver_cluster::jetstream(server.client().await, Duration::from_secs(2));
    let cfg = RegistryConfig {
        bucket: unique("nodes"),
        ttl: Duration::from_millis(900),
        forget_after: Duration::from_secs(30),
        replicas: 1,
    };
    let n1 = NodeRegistry::start(&js, cfg.clone(), "n1", "http://127.0.0.1:1")
        .await
        .unwrap();
    let n2 = NodeRegistry::start(&js, cfg.clone(), "n2", "http://127.0.0.1:2")
        .await
        .unwrap();
    let node = |id: &str, port: u16, alive| NodeInfo {
        node_id: id.to_owned(),
        url: format!("http://127.0.0.1:{port}"),
        alive,
    };
    assert_eq!(
        n1.nodes().await.unwrap(),
        vec![node("n1", 1, true), node("n2", 2, true)]
    );
    // Heartbeats keep n1 alive past the TTL; n2 went silent (dropped without stopping).
    drop(n2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        n1.nodes().await.unwrap(),
        vec![node("n1", 1, true), node("n2", 2, false)]
    );
    // A node that stops leaves the registry.
    let n3 = NodeRegistry::start(&js, cfg.clone(), "n3", "http://127.0.0.1:3")
        .await
        .unwrap();
    n3.stop().await;
    assert_eq!(
        n1.nodes().await.unwrap(),
        vec![node("n1", 1, true), node("n2", 2, false)]
    );
    n1.stop().await;
}

#[tokio::test]
async fn a_tool_reads_the_registry_without_creating_it() {
    let server = NatsServer::shared();
    let js = weaver_cluster::jetstream(server.client().await, Duration::from_secs(2));
    let cfg = RegistryConfig {
        bucket: unique("nodes"),
        ttl: Duration::from_secs(5),
        forget_after: Duration::from_secs(30),
        replicas: 1,
    };
    assert!(NodeDirectory::open(&js, &cfg).await.unwrap().is_none());
    assert!(
        NodeDirectory::open(&js, &cfg).await.unwrap().is_none(),
        "opening created nothing"
    );
    let n1 = NodeRegistry::start(&js, cfg.clone(), "n1", "http://127.0.0.1:1")
        .await
        .unwrap();
    let directory = NodeDirectory::open(&js, &cfg).await.unwrap().unwrap();
    let nodes = directory.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].alive);
    n1.stop().await;
}
