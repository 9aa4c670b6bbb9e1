//! Document history through the HTTP API: explicit and automatic versions, reading one back,
//! restore as a live forward update and its undo, retention, 404s and the auth matrix.

use std::time::Duration;

use weaver_auth::{Claims, Permission, Scope};
use weaver_relay::{AuthConfig, RelayConfig, VersionConfig, parse_auth_key};

use crate::support::*;

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

async fn list(addr: std::net::SocketAddr, room: &str) -> Vec<serde_json::Value> {
    let (status, body) = http(addr, "GET", &format!("/api/rooms/{room}/versions"), b"").await;
    assert_eq!(status, 200);
    json(&body)["versions"].as_array().unwrap().clone()
}

fn no_auto() -> RelayConfig {
    RelayConfig {
        // Compact after every second update: versions must outlive compaction.
        compact_after_updates: 2,
        versions: VersionConfig {
            every: Duration::ZERO,
            ..VersionConfig::default()
        },
        ..RelayConfig::default()
    }
}

/// Text `t` the connected client sees after applying `frames` (sync updates `[0, 2, …]`).
async fn recv_update(ws: &mut Client) -> Vec<u8> {
    let frame = ws.recv_until(|f| f.starts_with(&[0, 2])).await;
    sync_payload(&frame)
}

#[tokio::test]
async fn versions_survive_compaction_and_restart_and_a_restore_is_live_and_undoable() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), no_auto()).await;
    let w = Writer::new(7);
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/v1/update", &w.append("abc"))
            .await
            .0,
        204
    );
    let (status, body) = http(
        s.addr,
        "POST",
        "/api/rooms/v1/versions",
        br#"{"label": "first draft"}"#,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let first = json(&body);
    assert_eq!(first["id"], "1");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["label"], "first draft");
    assert_eq!(first["kind"], "explicit");
    assert!(first["bytes"].as_u64().unwrap() > 0);
    assert!(first["created_at"].as_u64().unwrap() > 1_700_000_000_000);
    for part in ["def", "ghi", "jkl"] {
        let (status, _) = http(s.addr, "POST", "/api/rooms/v1/update", &w.append(part)).await;
        assert_eq!(status, 204);
    }
    // No body: a version without a label.
    let (status, body) = http(s.addr, "POST", "/api/rooms/v1/versions", b"").await;
    assert_eq!(status, 201);
    assert_eq!(json(&body)["label"], serde_json::Value::Null);
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/v1/versions", b"{bad")
            .await
            .0,
        400
    );
    s.stop().await;

    // After compactions and a restart, both versions and their content are still there.
    let s = start(dir.path(), no_auto()).await;
    let versions = list(s.addr, "v1").await;
    let ids: Vec<&str> = versions.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["2", "1"], "newest first");
    let (status, body) = http(s.addr, "GET", "/api/rooms/v1/versions/1/update", b"").await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&body), "abc");
    let (status, body) = http(s.addr, "GET", "/api/rooms/v1/versions/2/update", b"").await;
    assert_eq!(status, 200);
    assert_eq!(text_of(&body), "abcdefghijkl");
    let (status, body) = http(s.addr, "GET", "/api/rooms/v1/versions/1/blocks", b"").await;
    assert_eq!(status, 200);
    assert!(json(&body).get("blocks").is_some());

    // Unknown ids are 404, whatever they look like.
    for path in [
        "/api/rooms/v1/versions/99/update",
        "/api/rooms/v1/versions/x/blocks",
        "/api/rooms/nothing/versions/1/update",
    ] {
        assert_eq!(http(s.addr, "GET", path, b"").await.0, 404, "{path}");
    }
    assert_eq!(
        http(s.addr, "POST", "/api/rooms/v1/versions/99/restore", b"")
            .await
            .0,
        404
    );

    // Two connected clients see the restore live, without reconnecting.
    let mut a = s.client("v1").await;
    let mut b = s.client("v1").await;
    let state_a = a.handshake().await;
    b.handshake().await;
    let (status, body) = http(s.addr, "POST", "/api/rooms/v1/versions/1/restore", b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let restored = json(&body);
    assert_eq!(restored["restored"], "1");
    assert_eq!(restored["pre_restore"]["kind"], "pre-restore");
    let pre_id = restored["pre_restore"]["id"].as_str().unwrap().to_owned();
    for ws in [&mut a, &mut b] {
        let update = recv_update(ws).await;
        let doc = yrs::Doc::new();
        let text = {
            use yrs::updates::decoder::Decode;
            use yrs::{GetString, Transact, Update};
            let t = doc.get_or_insert_text("t");
            let mut txn = doc.transact_mut();
            txn.apply_update(Update::decode_v1(&state_a).unwrap())
                .unwrap();
            txn.apply_update(Update::decode_v1(&update).unwrap())
                .unwrap();
            t.get_string(&txn)
        };
        assert_eq!(text, "abc");
    }
    let (_, body) = http(s.addr, "GET", "/api/rooms/v1/update", b"").await;
    assert_eq!(text_of(&body), "abc");

    // Undo: restoring the pre-restore version brings the later text back.
    let (status, _) = http(
        s.addr,
        "POST",
        &format!("/api/rooms/v1/versions/{pre_id}/restore"),
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let (_, body) = http(s.addr, "GET", "/api/rooms/v1/update", b"").await;
    assert_eq!(text_of(&body), "abcdefghijkl");
    recv_update(&mut a).await;
    s.stop().await;
}

/// Versions taken after deletions read back exactly: each diff carries only the deletions
/// since the version before it, and the chain still adds up to the document.
#[tokio::test]
async fn versions_after_deletions_read_back_exactly() {
    use yrs::{GetString, Text, Transact};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), no_auto()).await;
    let doc = yrs::Doc::with_client_id(5);
    let text = doc.get_or_insert_text("t");
    let mut expected = Vec::new();
    let steps: [&dyn Fn(&mut yrs::TransactionMut); 4] = [
        &|t| text.insert(t, 0, "abcdefghij"),
        &|t| text.remove_range(t, 1, 2),
        &|t| {
            text.remove_range(t, 3, 1);
            text.insert(t, 0, "X");
        },
        &|t| text.remove_range(t, 0, 4),
    ];
    for step in steps {
        let update = {
            let mut t = doc.transact_mut();
            step(&mut t);
            t.encode_update_v1()
        };
        s.handle.apply_update("dels", update, "test").await.unwrap();
        let v = s.handle.create_version("dels", None).await.unwrap();
        expected.push((v.id, text.get_string(&doc.transact())));
    }
    for (id, text) in &expected {
        let state = s.handle.version_state("dels", id).await.unwrap();
        assert_eq!(&text_of(&state), text, "version {id}");
    }
    s.stop().await;
}

#[tokio::test]
async fn automatic_versions_follow_edits_and_retention_drops_only_old_automatic_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        versions: VersionConfig {
            every: Duration::from_millis(30),
            keep: 2,
            keep_days: 0,
        },
        ..RelayConfig::default()
    };
    let s = start(dir.path(), config).await;
    let w = Writer::new(9);
    http(s.addr, "POST", "/api/rooms/auto/update", &w.append("a")).await;
    let (status, _) = http(s.addr, "POST", "/api/rooms/auto/versions", b"").await;
    assert_eq!(status, 201);
    let mut expected = String::from("a");
    for part in ["b", "c", "d", "e", "f"] {
        tokio::time::sleep(Duration::from_millis(40)).await;
        http(s.addr, "POST", "/api/rooms/auto/update", &w.append(part)).await;
        expected.push_str(part);
    }
    // A version is stored right after the commit that made it due, i.e. after the reply.
    let mut versions = list(s.addr, "auto").await;
    for _ in 0..100 {
        if versions[0]["seq"] == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        versions = list(s.addr, "auto").await;
    }
    let kinds: Vec<&str> = versions
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    // The explicit version stays; of the automatic ones only the newest two are listed.
    assert_eq!(kinds, vec!["auto", "auto", "explicit"], "{versions:?}");
    let newest = versions[0]["id"].as_str().unwrap();
    let (_, body) = http(
        s.addr,
        "GET",
        &format!("/api/rooms/auto/versions/{newest}/update"),
        b"",
    )
    .await;
    assert_eq!(text_of(&body), expected);
    let explicit = versions[2]["id"].as_str().unwrap();
    let (_, body) = http(
        s.addr,
        "GET",
        &format!("/api/rooms/auto/versions/{explicit}/update"),
        b"",
    )
    .await;
    assert_eq!(text_of(&body), "a");
    // Nothing else went: the room's content is whole.
    let (_, body) = http(s.addr, "GET", "/api/rooms/auto/update", b"").await;
    assert_eq!(text_of(&body), expected);
    // No edits, no new versions.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(list(s.addr, "auto").await.len(), 3);
    // Deleting the room deletes its versions.
    assert_eq!(http(s.addr, "DELETE", "/api/rooms/auto", b"").await.0, 204);
    assert!(list(s.addr, "auto").await.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn versions_need_an_admin_token_for_the_room() {
    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let key = parse_auth_key(KEY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        auth: AuthConfig {
            key: Some(key.clone()),
            ..AuthConfig::default()
        },
        ..no_auto()
    };
    let s = start(dir.path(), config).await;
    let token = |scope: Scope, permission: Permission, admin: bool| {
        key.mint(&Claims {
            scope,
            permission,
            expires_at: u64::MAX / 2,
            admin,
        })
    };
    let writer = token(Scope::Room("r".into()), Permission::Write, false);
    let admin = token(Scope::Room("r".into()), Permission::Write, true);
    let other_admin = token(Scope::Room("other".into()), Permission::Write, true);
    let w = Writer::new(3);
    let (status, _) = http(
        s.addr,
        "POST",
        &format!("/api/rooms/r/update?token={writer}"),
        &w.append("x"),
    )
    .await;
    assert_eq!(status, 204);
    let routes = [
        ("POST", "/api/rooms/r/versions"),
        ("GET", "/api/rooms/r/versions"),
        ("GET", "/api/rooms/r/versions/1/update"),
        ("GET", "/api/rooms/r/versions/1/blocks"),
        ("POST", "/api/rooms/r/versions/1/restore"),
    ];
    for (method, path) in routes {
        assert_eq!(
            http(s.addr, method, path, b"").await.0,
            401,
            "{method} {path}"
        );
        for t in [&writer, &other_admin] {
            let (status, _) = http(s.addr, method, &format!("{path}?token={t}"), b"").await;
            assert_eq!(status, 403, "{method} {path}");
        }
        let (status, body) = http(s.addr, method, &format!("{path}?token={admin}"), b"").await;
        assert!(
            status == 200 || status == 201,
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    s.stop().await;
}

/// The cost of versions (docs/benchmarks.md, "Document history"): bytes per version of a 1 MB
/// document with 1,000 small edits between versions, and what taking a version does to commit
/// latency. `cargo test -p weaver-relay --release --test it measure_version_cost -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by hand"]
async fn measure_version_cost() {
    use std::time::Instant;
    use yrs::{Doc, GetString, Map, MapRef, Out, ReadTxn, Text, TextPrelim, Transact};

    const BLOCKS: usize = 200;
    // WEAVER_MEASURE_VERSIONS=45 runs past the first full version's chain.
    let versions_wanted: usize = std::env::var("WEAVER_MEASURE_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    const EDITS: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), no_auto()).await;
    let room = "bench-history";
    let doc = Doc::with_client_id(77);
    let blocks: MapRef = doc.get_or_insert_map("blocks");
    let paragraph = "lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(90);
    {
        let mut t = doc.transact_mut();
        for i in 0..BLOCKS {
            blocks.insert(
                &mut t,
                format!("b{i:04}"),
                TextPrelim::new(paragraph.as_str()),
            );
        }
    }
    let full = doc
        .transact()
        .encode_state_as_update_v1(&yrs::StateVector::default());
    s.handle
        .apply_update(room, full.clone(), "bench")
        .await
        .unwrap();
    println!("document: {} bytes", full.len());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut plain = Vec::new();
    let mut after_version = Vec::new();
    let mut version_ms = Vec::new();
    for v in 0..versions_wanted {
        for e in 0..EDITS {
            let update = {
                let key = format!("b{:04}", next(BLOCKS));
                let mut t = doc.transact_mut();
                let Some(Out::YText(text)) = blocks.get(&t, &key) else {
                    panic!("no block {key}")
                };
                let len = text.get_string(&t).len() as u32;
                let at = next(len as usize + 1) as u32;
                if e % 4 == 3 && len > 1 {
                    text.remove_range(&mut t, at.min(len - 1), 1);
                } else {
                    text.insert(&mut t, at, "x");
                }
                t.encode_update_v1()
            };
            let started = Instant::now();
            s.handle.apply_update(room, update, "bench").await.unwrap();
            plain.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        // Take a version while an edit is committed right behind it: the edit waits for the
        // version's one extra write at most.
        let handle = s.handle.clone();
        let started = Instant::now();
        let taking = tokio::spawn(async move { handle.create_version(room, None).await });
        let update = {
            let key = format!("b{:04}", next(BLOCKS));
            let mut t = doc.transact_mut();
            let Some(Out::YText(text)) = blocks.get(&t, &key) else {
                panic!("no block {key}")
            };
            text.insert(&mut t, 0, "y");
            t.encode_update_v1()
        };
        let edit_started = Instant::now();
        s.handle.apply_update(room, update, "bench").await.unwrap();
        after_version.push(edit_started.elapsed().as_secs_f64() * 1000.0);
        let info = taking.await.unwrap().unwrap();
        version_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        println!("version {}: {} bytes ({})", v + 1, info.bytes, info.id);
    }
    let versions = s.handle.versions(room).await.unwrap();
    let total: u64 = versions.iter().map(|v| v.bytes).sum();
    println!(
        "{} versions, {} bytes stored in all, {} bytes per version on average",
        versions.len(),
        total,
        total / versions.len() as u64
    );
    let rebuild = Instant::now();
    let newest = versions[0].id.clone();
    let state = s.handle.version_state(room, &newest).await.unwrap();
    println!(
        "reading the newest version back: {:.1} ms ({} bytes)",
        rebuild.elapsed().as_secs_f64() * 1000.0,
        state.len()
    );
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * p) as usize]
    };
    println!(
        "commit latency of an edit: p50 {:.2} ms, p99 {:.2} ms; an edit queued behind a version: median {:.2} ms, max {:.2} ms; taking a version: median {:.2} ms",
        pct(&mut plain, 0.5),
        pct(&mut plain, 0.99),
        pct(&mut after_version, 0.5),
        pct(&mut after_version, 1.0),
        pct(&mut version_ms, 0.5),
    );
    s.stop().await;
}
