//! `weaver-bench yrs-split` (issue 23): the pure-yrs cost of one small insert into a big text,
//! no server, no network. For each size: a text built by appending 1 MB chunks (one transaction
//! each, like bench/docsize.mjs builds its document; stock yrs squashes them into one block),
//! then N 2-byte inserts walking forward through the text, each its own transaction, as a
//! writer typing further and further in. Reported: µs per insert for the writer's local insert,
//! and for a replica applying that insert's v1 update (what the relay does for each message).
//!
//! Only yrs and std: the file also builds against stock yrs (see docs/benchmarks.md, "Bounded
//! string blocks in yrs", for how the before/after figures were taken).

use std::fmt::Write as _;
use std::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, Text, Transact, Update};

/// One measured size.
#[derive(Debug, Clone)]
pub struct Point {
    pub size_mb: f64,
    pub build_s: f64,
    pub local_us: f64,
    pub apply_us: f64,
}

fn doc(client: u64) -> Doc {
    let mut options = Options::with_client_id(ClientID::new(client));
    // As the relay (weaver-doc): Yjs positions, in UTF-16 code units.
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

/// Non-compressible ASCII (one UTF-16 unit per byte), deterministic.
fn chunk(n: usize, seed: &mut u32) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            A[(*seed >> 16) as usize % A.len()] as char
        })
        .collect()
}

/// Builds `size_mb` of text on a writer and a replica, then times `inserts` forward-walking
/// 2-byte inserts on the writer and the application of each one's update on the replica.
pub fn measure(size_mb: f64, inserts: usize) -> Result<Point, String> {
    let bytes = (size_mb * 1_000_000.0) as usize;
    let writer = doc(1);
    let replica = doc(2);
    let wt = writer.get_or_insert_text("t");
    let rt = replica.get_or_insert_text("t");
    let t0 = Instant::now();
    let mut seed = 23;
    let mut len = 0usize;
    while len < bytes {
        let n = (bytes - len).min(1 << 20);
        let s = chunk(n, &mut seed);
        let mut txn = writer.transact_mut();
        wt.insert(&mut txn, len as u32, &s);
        len += n;
    }
    // The replica loads the writer's state as one update (like a cold load).
    let state = writer
        .transact()
        .encode_state_as_update_v1(&Default::default());
    let update = Update::decode_v1(&state).map_err(|e| format!("decoding the state: {e}"))?;
    replica
        .transact_mut()
        .apply_update(update)
        .map_err(|e| format!("loading the state: {e}"))?;
    let build_s = t0.elapsed().as_secs_f64();

    // Forward-walking: from a tenth into the text, each insert a prime stride further on.
    let stride = (len / 2 / inserts.max(1)).max(1) | 1;
    let mut local = 0.0;
    let mut apply = 0.0;
    for i in 0..inserts {
        let at = (len / 10 + i * stride).min(len) as u32;
        let t = Instant::now();
        let update = {
            let mut txn = writer.transact_mut();
            wt.insert(&mut txn, at, "ab");
            txn.encode_update_v1()
        };
        local += t.elapsed().as_secs_f64();
        len += 2;
        let t = Instant::now();
        let update = Update::decode_v1(&update).map_err(|e| format!("decoding: {e}"))?;
        replica
            .transact_mut()
            .apply_update(update)
            .map_err(|e| format!("applying: {e}"))?;
        apply += t.elapsed().as_secs_f64();
    }
    // The figures are only worth something if both ended up with the same text.
    let (a, b) = (
        wt.get_string(&writer.transact()),
        rt.get_string(&replica.transact()),
    );
    if a != b || a.len() != len {
        return Err(format!(
            "writer and replica diverged at {size_mb} MB ({} vs {} bytes)",
            a.len(),
            b.len()
        ));
    }
    let per = |s: f64| s * 1e6 / inserts.max(1) as f64;
    Ok(Point {
        size_mb,
        build_s,
        local_us: per(local),
        apply_us: per(apply),
    })
}

/// Measures every size in turn (printing each as it comes) and returns the markdown table.
pub fn run(sizes_mb: &[f64], inserts: usize) -> Result<String, String> {
    let mut t = format!(
        "\n### yrs: µs per 2-byte forward-walking insert into a text built by appending ({inserts} inserts)\n\n| text MB | build + replica load s | local insert µs | replica apply µs |\n|---|---|---|---|\n"
    );
    for &size in sizes_mb {
        eprint!("yrs-split {size} MB … ");
        let p = measure(size, inserts)?;
        eprintln!(
            "local {:.1} µs, apply {:.1} µs per insert",
            p.local_us, p.apply_us
        );
        let _ = writeln!(
            t,
            "| {} | {:.2} | {:.1} | {:.1} |",
            p.size_mb, p.build_s, p.local_us, p.apply_us
        );
    }
    Ok(t)
}
