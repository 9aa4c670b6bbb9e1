//! Interop with real `yjs` 13.6 from npm, both directions, plus the committed regression
//! fixtures. JS → Rust: `tests/js/gen-fixtures.mjs` writes schema documents with yjs and the
//! expected `readBlocks` JSON; Rust applies them and must produce the same JSON. Rust → JS:
//! Rust writes updates with every API operation; `tests/js/check-rust.mjs` decodes them with
//! yjs and compares JavaScript `readBlocks` with Rust's `to_json`. Needs `node` on PATH and
//! `npm ci` run at the repository root.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use weaver_doc::{BRIDGE_ORIGIN, Status, StatusRecord, Workspace};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Runs `node script arg`, failing the test with a clear message if Node or the npm packages
/// are missing, or if the script fails.
fn run_node(script: &str, arg: &Path) -> String {
    node(
        &[js_dir().join(script).as_os_str(), arg.as_os_str()],
        script,
    )
}

fn node(args: &[&std::ffi::OsStr], what: &str) -> String {
    let script = what;
    let yjs = repo_root().join("node_modules/yjs/package.json");
    assert!(
        yjs.exists(),
        "interop tests need the npm packages: run `npm ci` in the repository root ({} is missing)",
        yjs.display()
    );
    let out = Command::new("node")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("interop tests need Node.js (`node` on PATH) to run {script}: {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node {script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

struct Scenario {
    name: String,
    updates: Vec<Vec<u8>>,
    expected: Value,
}

fn read_manifest(dir: &Path) -> Vec<Scenario> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Scenario {
            name: s["name"].as_str().unwrap().to_string(),
            updates: s["updates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| std::fs::read(dir.join(f.as_str().unwrap())).unwrap())
                .collect(),
            expected: s["expected"].clone(),
        })
        .collect()
}

fn apply_all<'a>(updates: impl IntoIterator<Item = &'a Vec<u8>>) -> Workspace {
    let ws = Workspace::with_client_id(999);
    for u in updates {
        ws.apply_update_v1(u, "fixture").unwrap();
    }
    ws
}

/// Every scenario reads identically in Rust, whatever the delivery order, with duplicates.
fn check_js_scenarios(scenarios: &[Scenario]) {
    assert!(!scenarios.is_empty());
    for sc in scenarios {
        let in_order = apply_all(&sc.updates).to_json().unwrap();
        assert_eq!(in_order, sc.expected, "scenario {} (in order)", sc.name);
        let reversed = apply_all(sc.updates.iter().rev()).to_json().unwrap();
        assert_eq!(reversed, sc.expected, "scenario {} (reversed)", sc.name);
        let twice = apply_all(sc.updates.iter().chain(sc.updates.iter()))
            .to_json()
            .unwrap();
        assert_eq!(twice, sc.expected, "scenario {} (duplicated)", sc.name);
    }
}

/// Spot checks of typed fields, so a mismatch in both JSONs could not pass unnoticed.
fn check_typed_fields(scenarios: &[Scenario]) {
    let by_name = |n: &str| scenarios.iter().find(|s| s.name == n).unwrap();

    let ws = apply_all(&by_name("single-writer").updates);
    let b1 = ws.block("b1").unwrap().unwrap();
    assert_eq!(b1.block_type, "text");
    assert_eq!(b1.content, "Ωmega héllo 😀🎉 world 👋🏽");
    let search = b1.entry("search").unwrap();
    assert_eq!((search.status, search.attempt), (Status::Done, 1));
    assert_eq!(search.api_call_id.as_deref(), Some("call-1"));
    assert_eq!(
        search.result,
        Some(json!({"chunks_indexed": 3, "duration_ms": 12.5}))
    );
    assert_eq!(search.completed_at, Some(1_763_900_000_000.0));
    assert_eq!(search.collection_configs["model"], json!("mini-🤖"));
    let files = b1.entry("files").unwrap();
    assert_eq!((files.status, files.attempt), (Status::NotStarted, 2));
    assert!(ws.block("gone").unwrap().is_none());
    let b2 = ws.block("b2").unwrap().unwrap();
    assert_eq!(b2.indexing_list.len(), 1);
    assert_eq!(b2.indexing_list[0].index_name, "vec");

    let ws = apply_all(&by_name("two-writers").updates);
    let d = ws.block("doc").unwrap().unwrap();
    assert_eq!(d.content, "ab🎉ABßcd");
    assert_eq!(
        d.indexing_list.len(),
        1,
        "concurrent same-name adds: one entry"
    );
    let e = &d.indexing_list[0];
    assert_eq!((e.attempt, e.status), (2, Status::Processing));
    assert_eq!(e.api_call_id.as_deref(), Some("c-2"));
    assert!(ws.block("other").unwrap().is_none());

    let ws = apply_all(&by_name("raw-yjs").updates);
    let ids: Vec<String> = ws.blocks().unwrap().into_iter().map(|b| b.id).collect();
    assert_eq!(ids, ["Zed", "odd", "raw", "😀emoji", "！fullwidth"]);
    let raw = ws.block("raw").unwrap().unwrap();
    let names: Vec<&str> = raw
        .indexing_list
        .iter()
        .map(|e| e.index_name.as_str())
        .collect();
    assert_eq!(names, ["valid-mixed", "odd-configs", "empty", "bigint"]);
    let vm = raw.entry("valid-mixed").unwrap();
    assert_eq!((vm.attempt, vm.status), (2, Status::Error));
    assert_eq!(vm.collection_configs, json!({"a": 1}));
    assert_eq!(raw.entry("bigint").unwrap().attempt, 4);
    assert_eq!(raw.entry("empty").unwrap().attempt, 0);
}

#[test]
fn js_written_documents_read_identically_in_rust() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_node("gen-fixtures.mjs", dir.path());
    assert!(out.contains("yjs 13.6"), "unexpected yjs version: {out}");
    let scenarios = read_manifest(dir.path());
    check_js_scenarios(&scenarios);
    check_typed_fields(&scenarios);
}

#[test]
fn js_module_unit_tests_pass() {
    let file = js_dir().join("weaver-doc.test.mjs");
    let out = node(
        &["--test".as_ref(), file.as_os_str()],
        "weaver-doc.test.mjs",
    );
    assert!(out.contains("# fail 0"), "{out}");
}

#[test]
fn committed_fixtures_still_read_identically() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let scenarios = read_manifest(&dir);
    check_js_scenarios(&scenarios);
    check_typed_fields(&scenarios);
}

/// Collects every update a sequence of transactions produced.
struct Writer {
    ws: Workspace,
    updates: Vec<Vec<u8>>,
}

impl Writer {
    fn new(client: u64) -> Self {
        Writer {
            ws: Workspace::with_client_id(client),
            updates: Vec::new(),
        }
    }
    fn tx<R>(&mut self, origin: &str, f: impl FnOnce(&mut weaver_doc::WriteTxn<'_>) -> R) -> R {
        let (r, u) = self.ws.transact(origin, f).unwrap();
        if !u.is_empty() {
            self.updates.push(u);
        }
        r
    }
    fn receive(&self, other: &Writer) {
        let sv = self.ws.state_vector_v1().unwrap();
        let diff = other.ws.encode_diff_v1(&sv).unwrap();
        self.ws.apply_update_v1(&diff, "sync").unwrap();
    }
}

fn write_scenario(
    dir: &Path,
    manifest: &mut Vec<Value>,
    name: &str,
    updates: &[Vec<u8>],
    expected: Value,
) {
    let files: Vec<String> = updates
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let f = format!("{name}-{i:02}.bin");
            std::fs::write(dir.join(&f), u).unwrap();
            f
        })
        .collect();
    manifest.push(json!({"name": name, "updates": files, "expected": expected}));
}

#[test]
fn rust_written_documents_read_identically_in_js() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();

    // 1. One writer, every API operation, non-ASCII text and ids.
    let mut a = Writer::new(11);
    a.tx("local", |t| {
        t.add_block("b1", "text", "héllo 🌍 world")?;
        t.replace_text("b1", 6, 2, "😀🎉")?;
        t.insert_text("b1", 0, "Ωmega ")?;
        let len = t.content_len("b1")?;
        t.insert_text("b1", len, " 👋🏽")?;
        t.delete_text("b1", 0, 1)?;
        t.add_block("😀emoji", "text", "")?;
        t.add_block("！fullwidth", "vector_collection", "x")?;
        t.add_block("gone", "text", "bye")
    })
    .unwrap();
    a.tx("local", |t| {
        let cfg = json!({"dim": 384, "model": "mini-🤖", "nested": {"k": [1, 2.5, null, true]}});
        assert_eq!(t.request_index("b1", "search", &cfg)?, 1);
        assert_eq!(t.request_index("b1", "files", &json!({}))?, 1);
        assert_eq!(t.request_index("！fullwidth", "tmp", &json!({}))?, 1);
        assert_eq!(t.remove_index("！fullwidth", "tmp"), 1);
        assert!(t.remove_block("gone"));
        Ok::<_, weaver_doc::DocError>(())
    })
    .unwrap();
    a.tx(BRIDGE_ORIGIN, |t| {
        assert!(t.record_status("b1", "search", &StatusRecord::processing(1, "call-1"))?);
        let done = StatusRecord::done(
            1,
            "call-1",
            json!({"chunks_indexed": 3, "duration_ms": 12.5}),
            1_763_900_000_000,
        );
        assert!(t.record_status("b1", "search", &done)?);
        assert!(
            !t.record_status("b1", "search", &done)?,
            "duplicate is skipped"
        );
        let err = StatusRecord::error(1, "call-2", "HTTP 503: ünavailable", 1_763_900_000_123);
        assert!(t.record_status("b1", "files", &err)?);
        Ok::<_, weaver_doc::DocError>(())
    })
    .unwrap();
    a.tx("local", |t| t.request_index("b1", "files", &json!({})))
        .unwrap();
    a.tx(BRIDGE_ORIGIN, |t| {
        let mut r = StatusRecord::processing(2, "call-3");
        r.completed_at = Some(1.25);
        t.record_status("b1", "files", &r)?;
        assert_eq!(t.prune_status_log("b1", "files"), 2);
        Ok::<_, weaver_doc::DocError>(())
    })
    .unwrap();
    let expected = a.ws.to_json().unwrap();
    assert_eq!(expected["blocks"][0]["id"], json!("b1"));
    write_scenario(
        dir.path(),
        &mut manifest,
        "rust-single",
        &a.updates,
        expected.clone(),
    );
    write_scenario(
        dir.path(),
        &mut manifest,
        "rust-single-state",
        &[a.ws.encode_state_v1().unwrap()],
        expected,
    );

    // 2. Three Rust replicas racing on one entry and one text.
    let mut r: Vec<Writer> = (21..24).map(Writer::new).collect();
    r[0].tx("local", |t| t.add_block("doc", "text", "ab😀cd"))
        .unwrap();
    for i in 1..3 {
        r[i].receive(&r[0]);
    }
    r[0].tx("local", |t| t.replace_text("doc", 2, 2, "🎉A"))
        .unwrap();
    r[1].tx("local", |t| t.insert_text("doc", 4, "Bß")).unwrap();
    for (i, w) in r.iter_mut().enumerate() {
        w.tx("local", |t| {
            t.request_index("doc", "search", &json!({"from": i}))
        })
        .unwrap();
    }
    let sync_all = |r: &[Writer]| {
        for i in 0..r.len() {
            for j in 0..r.len() {
                if i != j {
                    r[i].receive(&r[j]);
                }
            }
        }
    };
    sync_all(&r);
    r[0].tx(BRIDGE_ORIGIN, |t| {
        t.record_status("doc", "search", &StatusRecord::processing(1, "c0"))
    })
    .unwrap();
    r[1].tx(BRIDGE_ORIGIN, |t| {
        t.record_status(
            "doc",
            "search",
            &StatusRecord::done(1, "c1", json!({"n": 1}), 5),
        )
    })
    .unwrap();
    r[2].tx("local", |t| t.request_index("doc", "search", &json!({})))
        .unwrap();
    sync_all(&r);
    r[0].tx("local", |t| t.request_index("doc", "search", &json!({})))
        .unwrap();
    r[1].tx("local", |t| t.request_index("doc", "search", &json!({})))
        .unwrap();
    r[2].tx(BRIDGE_ORIGIN, |t| {
        t.record_status("doc", "search", &StatusRecord::error(2, "c2", "late", 6))
    })
    .unwrap();
    sync_all(&r);
    let expected = r[0].ws.to_json().unwrap();
    for w in &r[1..] {
        assert_eq!(w.ws.to_json().unwrap(), expected);
    }
    let e = r[0].ws.block("doc").unwrap().unwrap();
    assert_eq!(e.indexing_list.len(), 1);
    assert_eq!(
        (e.indexing_list[0].attempt, e.indexing_list[0].status),
        (3, Status::NotStarted)
    );
    let mut all: Vec<Vec<u8>> = Vec::new();
    let longest = r.iter().map(|w| w.updates.len()).max().unwrap();
    for k in 0..longest {
        for w in r.iter().rev() {
            if let Some(u) = w.updates.get(k) {
                all.push(u.clone());
            }
        }
    }
    write_scenario(
        dir.path(),
        &mut manifest,
        "rust-three-writers",
        &all,
        expected,
    );

    // 3. Seeded random operations on three replicas with partial, shuffled exchange.
    let (pool, expected) = random_rust_run(0x5eed_4321, 200);
    let entries: usize = expected["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["indexingList"].as_array().unwrap().len())
        .sum();
    assert!(
        pool.len() > 30 && entries >= 2,
        "random run too trivial: {expected}"
    );
    write_scenario(dir.path(), &mut manifest, "rust-random", &pool, expected);

    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec_pretty(&json!({"scenarios": manifest})).unwrap(),
    )
    .unwrap();
    let out = run_node("check-rust.mjs", dir.path());
    assert!(out.contains(": 0 mismatches"), "{out}");
}

/// Deterministic xorshift, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random API operations on three replicas exchanging updates partially and out of order.
/// Returns every update written (shuffled, some duplicated) and the converged JSON.
fn random_rust_run(seed: u64, steps: usize) -> (Vec<Vec<u8>>, Value) {
    let mut rng = Rng(seed);
    let reps: Vec<Workspace> = (31..34).map(Workspace::with_client_id).collect();
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let ids = ["r1", "r2", "r😀"];
    let names = ["search", "files"];
    let texts = ["a", "😀", "ßc", "🎉"];
    let (_, u) = reps[0]
        .transact("local", |t| t.add_block("r1", "text", "seed"))
        .unwrap();
    for r in &reps[1..] {
        r.apply_update_v1(&u, "relay").unwrap();
    }
    pool.push(u);
    for i in 0..steps {
        let r = &reps[rng.below(3)];
        let id = ids[rng.below(3)];
        let name = names[rng.below(2)];
        let op = rng.below(9);
        let (a, b, c) = (rng.below(1000), rng.below(1000), rng.below(4));
        let origin = if op == 6 || op == 7 {
            BRIDGE_ORIGIN
        } else {
            "local"
        };
        if op == 8 {
            for _ in 0..c {
                let k = a % pool.len();
                r.apply_update_v1(&pool[k].clone(), "relay").unwrap();
            }
            continue;
        }
        let (_, u) = r
            .transact(origin, |t| {
                let len = t.content_len(id).unwrap_or(0);
                // Errors (missing block, split surrogate pair) write nothing: ignore them.
                let _ = match op {
                    0 => t.add_block(id, "text", texts[c]),
                    1 => {
                        if a % 25 == 0 {
                            t.remove_block(id);
                        }
                        Ok(())
                    }
                    2 => t.insert_text(id, (a % (len as usize + 1)) as u32, texts[c]),
                    3 => {
                        let at = (a % (len as usize + 1)) as u32;
                        t.delete_text(id, at, (b as u32 % 3).min(len - at))
                    }
                    4 => t.request_index(id, name, &json!({"n": a})).map(|_| ()),
                    5 => {
                        if a % 10 == 0 {
                            t.remove_index(id, name);
                        }
                        Ok(())
                    }
                    _ => {
                        let cur = t
                            .block(id)
                            .and_then(|v| v.entry(name).map(|e| e.attempt))
                            .unwrap_or(0);
                        let attempt = cur.saturating_sub((b % 2) as u64).max(1);
                        let call = format!("c{}", c % 3);
                        let rec = match a % 3 {
                            0 => StatusRecord::processing(attempt, call),
                            1 => StatusRecord::done(
                                attempt,
                                call,
                                json!({"chunks_indexed": b % 9}),
                                1_763_900_000_000 + i as u64,
                            ),
                            _ => StatusRecord::error(
                                attempt,
                                call,
                                format!("e{i}"),
                                1_763_900_000_000 + i as u64,
                            ),
                        };
                        t.record_status(id, name, &rec).map(|_| ())
                    }
                };
            })
            .unwrap();
        if !u.is_empty() {
            pool.push(u);
        }
    }
    // Converge everyone, then shuffle the pool and add duplicates for the JS side.
    for r in &reps {
        for u in &pool {
            r.apply_update_v1(u, "relay").unwrap();
        }
    }
    let expected = reps[0].to_json().unwrap();
    for r in &reps[1..] {
        assert_eq!(r.to_json().unwrap(), expected, "Rust replicas diverged");
    }
    let mut shuffled = pool.clone();
    for i in (1..shuffled.len()).rev() {
        let j = rng.below(i + 1);
        shuffled.swap(i, j);
    }
    for _ in 0..5 {
        let k = rng.below(pool.len());
        shuffled.push(pool[k].clone());
    }
    (shuffled, expected)
}

/// Rust writes, JS continues on top of it (two replicas), Rust applies the JS updates and
/// continues again, and yjs checks the final document: edits cross the language boundary
/// twice, inside emoji text.
#[test]
fn mixed_rust_js_rust_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::with_client_id(41);
    ws.transact("local", |t| {
        t.add_block("m", "text", "x😀y🎉z")?;
        t.request_index("m", "search", &json!({"dim": 8}))?;
        t.record_status(
            "m",
            "search",
            &StatusRecord::done(1, "rust-1", json!({"chunks_indexed": 1}), 10),
        )
        .map(|_| ())
    })
    .unwrap()
    .0
    .unwrap();
    let base = ws.encode_state_v1().unwrap();
    std::fs::write(dir.path().join("base.bin"), &base).unwrap();

    run_node("continue-from-rust.mjs", dir.path());
    let js: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("js.json")).unwrap()).unwrap();
    let count = js["count"].as_u64().unwrap() as usize;
    let js_updates: Vec<Vec<u8>> = (0..count)
        .map(|i| std::fs::read(dir.path().join(format!("js-{i:02}.bin"))).unwrap())
        .collect();
    for u in js_updates.iter().rev() {
        ws.apply_update_v1(u, "relay").unwrap();
    }
    assert_eq!(ws.to_json().unwrap(), js["expected"]);
    let m = ws.block("m").unwrap().unwrap();
    assert_eq!(m.content, "x😀Ÿ👍🎉!z");
    assert_eq!(
        m.indexing_list.len(),
        2,
        "concurrent JS adds of `files` are one entry"
    );
    let search = m.entry("search").unwrap();
    assert_eq!((search.attempt, search.status), (2, Status::Processing));

    // Rust continues: edits around the JS emoji, finishes attempt 2, removes the JS block.
    let (_, last) = ws
        .transact(BRIDGE_ORIGIN, |t| {
            t.replace_text("m", 3, 3, "…")?; // "Ÿ👍" (3 UTF-16 units)
            t.record_status(
                "m",
                "search",
                &StatusRecord::done(2, "js-2", json!({"chunks_indexed": 2}), 20),
            )?;
            t.remove_block("from-js");
            Ok::<_, weaver_doc::DocError>(())
        })
        .unwrap();
    assert_eq!(ws.block("m").unwrap().unwrap().content, "x😀…🎉!z");

    let mut manifest = Vec::new();
    let mut all = vec![base];
    all.extend(js_updates);
    all.push(last);
    write_scenario(
        dir.path(),
        &mut manifest,
        "mixed",
        &all,
        ws.to_json().unwrap(),
    );
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_vec(&json!({"scenarios": manifest})).unwrap(),
    )
    .unwrap();
    let out = run_node("check-rust.mjs", dir.path());
    assert!(out.contains(": 0 mismatches"), "{out}");
}
