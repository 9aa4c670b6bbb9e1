//! Latency and throughput of durable appends against the local nats-server (ignored by
//! default; run `cargo test -p weaver-cluster --release --test it bench -- --ignored --nocapture`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weaver_cluster::testing::NatsServer;
use weaver_cluster::{RoomLog, RoomLogConfig};

use crate::support::{log_config, room};

async fn log_with(server: &NatsServer, streams: u32) -> RoomLog {
    let cfg = RoomLogConfig {
        streams,
        ..log_config()
    };
    RoomLog::open(server.client().await, cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_durable_appends() {
    let server = NatsServer::start();
    let update = Bytes::from(vec![7u8; 100]);

    let log = log_with(&server, 8).await;
    let r = room("bench-seq");
    log.load(r.clone()).await.unwrap();
    let mut lat = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        log.append(r.clone(), vec![update.clone()]).await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "sequential durable append (1 room, 200 appends): median {:?}, p99 {:?}",
        lat[100], lat[197]
    );
    log.stop().await;

    for streams in [1, 8] {
        let log = log_with(&server, streams).await;
        let per_room = 100;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let log = log.clone();
            let update = update.clone();
            tasks.push(tokio::spawn(async move {
                let r: Arc<str> = Arc::from(format!("bench-{i}"));
                log.load(r.clone()).await.unwrap();
                for _ in 0..per_room {
                    log.append(r.clone(), vec![update.clone()]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().max(Duration::from_millis(1));
        println!(
            "100 rooms concurrently, {streams} stream(s): {} appends in {elapsed:?} = {:.0} appends/s",
            100 * per_room,
            f64::from(100 * per_room) / elapsed.as_secs_f64()
        );
        log.stop().await;
    }
}

/// What the takeover record costs a room load: per room (10 records each), a read-only load
/// and a load to own it (read + the fenced takeover append), 200 rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand"]
async fn bench_takeover_cost() {
    let server = NatsServer::start();
    let update = Bytes::from(vec![7u8; 100]);
    let log = log_with(&server, 8).await;
    let rooms: Vec<Arc<str>> = (0..200)
        .map(|i| Arc::from(format!("takeover-{i}")))
        .collect();
    for r in &rooms {
        log.load(r.clone()).await.unwrap();
        for _ in 0..10 {
            log.append(r.clone(), vec![update.clone()]).await.unwrap();
        }
        log.forget(r);
    }
    let node: Arc<str> = Arc::from("bench");
    let (mut read, mut owned) = (Vec::new(), Vec::new());
    for r in &rooms {
        let t = Instant::now();
        log.load(r.clone()).await.unwrap();
        read.push(t.elapsed());
        log.forget(r);
        let t = Instant::now();
        log.take_over(r.clone(), 1, node.clone()).await.unwrap();
        owned.push(t.elapsed());
        log.forget(r);
    }
    read.sort();
    owned.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "room load (200 rooms, 10 records): read-only median {:.2} ms p99 {:.2} ms; \
         with takeover median {:.2} ms p99 {:.2} ms; extra median {:.2} ms",
        ms(read[100]),
        ms(read[197]),
        ms(owned[100]),
        ms(owned[197]),
        ms(owned[100]) - ms(read[100])
    );
    log.stop().await;
}
