//! Bounded string blocks (vendor/yrs/WEAVER.md, issue 23): the patched yrs never keeps a string
//! item longer than `yrs::bounded::MAX_STRING_BLOCK_UTF8` bytes, whether the text came from one
//! huge local insert, from appends, or from a stock Yjs update carrying one huge item, and peers
//! editing across the resulting block boundaries still converge.
//!
//! Block sizes are read from the document's own v1 encoding (yrs writes one struct per block),
//! with a small parser below, so the tests see exactly what the store holds.

use proptest::prelude::*;
use yrs::bounded::MAX_STRING_BLOCK_UTF8;
use yrs::updates::decoder::Decode;
use yrs::{
    ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, TextRef, Transact,
    Update,
};

fn doc(client: u64) -> Doc {
    let mut options = Options::with_client_id(ClientID::new(client));
    // Like weaver-doc and Yjs: positions in UTF-16 code units.
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

fn text(doc: &Doc) -> TextRef {
    doc.get_or_insert_text("t")
}

fn string(doc: &Doc) -> String {
    text(doc).get_string(&doc.transact())
}

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).unwrap();
    doc.transact_mut().apply_update(update).unwrap();
}

/// One struct of a v1 update: (client, clock, length in UTF-16 units, UTF-8 bytes of its string
/// content, or None when it is not a string).
#[derive(Debug, Clone, Copy)]
struct Struct {
    client: u64,
    clock: u64,
    len: u64,
    utf8: Option<usize>,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().expect("truncated update");
        self.0 = rest;
        *b
    }
    fn var(&mut self) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8();
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }
    fn string(&mut self) -> &str {
        let len = self.var() as usize;
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        std::str::from_utf8(s).expect("utf-8 string")
    }
}

/// The structs of a v1 update (string, deleted and GC/skip structs: all these tests produce).
fn structs(update: &[u8]) -> Vec<Struct> {
    let mut r = Reader(update);
    let mut out = Vec::new();
    for _ in 0..r.var() {
        let n = r.var();
        let client = r.var();
        let mut clock = r.var();
        for _ in 0..n {
            let info = r.u8();
            let (len, utf8) = match info & 0x1f {
                // GC and Skip: a length only.
                0 | 10 => (r.var(), None),
                kind => {
                    if info & 0x80 != 0 {
                        r.var();
                        r.var();
                    }
                    if info & 0x40 != 0 {
                        r.var();
                        r.var();
                    }
                    if info & 0xc0 == 0 {
                        if r.var() == 1 {
                            r.string();
                        } else {
                            r.var();
                            r.var();
                        }
                        if info & 0x20 != 0 {
                            r.string();
                        }
                    }
                    match kind {
                        1 => (r.var(), None),
                        4 => {
                            let s = r.string();
                            (s.encode_utf16().count() as u64, Some(s.len()))
                        }
                        other => panic!("unexpected content kind {other}"),
                    }
                }
            };
            out.push(Struct {
                client,
                clock,
                len,
                utf8,
            });
            clock += len;
        }
    }
    out
}

/// Asserts every string block of `doc` is within the cap and returns how many there are.
fn assert_bounded(doc: &Doc) -> usize {
    let strings: Vec<usize> = structs(&state(doc)).iter().filter_map(|s| s.utf8).collect();
    for &n in &strings {
        assert!(n <= MAX_STRING_BLOCK_UTF8, "string block of {n} bytes");
    }
    strings.len()
}

/// `n` bytes or a bit more of mixed text: ASCII, 2- and 3-byte chars and surrogate pairs, so
/// that block cuts land next to multi-byte chars.
fn big_text(n: usize) -> String {
    let unit = "lorem ipsum é 女 😀 dolor sit amet, ";
    unit.repeat(n / unit.len() + 1)
}

#[test]
fn one_huge_insert_becomes_bounded_blocks() {
    let a = doc(1);
    let big = big_text(2_500_000);
    text(&a).insert(&mut a.transact_mut(), 0, &big);
    assert_eq!(string(&a), big);
    let blocks = assert_bounded(&a);
    assert!(
        blocks >= big.len() / MAX_STRING_BLOCK_UTF8,
        "{blocks} blocks for {} bytes",
        big.len()
    );

    // A second huge insert in the middle (another transaction): split + bounded run.
    let mid = text(&a).len(&a.transact()) / 2;
    let middle = big_text(100_000);
    text(&a).insert(&mut a.transact_mut(), mid, &middle);
    assert_bounded(&a);

    // The clock range is the text's UTF-16 length: no unit lost or duplicated by the cuts.
    let units = (big.encode_utf16().count() + middle.encode_utf16().count()) as u32;
    assert_eq!(a.transact().state_vector().get(&ClientID::new(1)), units);

    // A replica built from the encoded state sees the same text.
    let b = doc(2);
    apply(&b, &state(&a));
    assert_eq!(string(&b), string(&a));
    assert_bounded(&b);
}

#[test]
fn appends_squash_up_to_the_cap_only() {
    let a = doc(1);
    let t = text(&a);
    let chunk = big_text(1000);
    let mut expected = String::new();
    while expected.len() < 2_000_000 {
        let len = t.len(&a.transact());
        t.insert(&mut a.transact_mut(), len, &chunk);
        expected.push_str(&chunk);
    }
    assert_eq!(string(&a), expected);
    let blocks = assert_bounded(&a);
    // Squashing still happens (otherwise there would be one block per append)...
    assert!(
        blocks <= 2 * expected.len() / MAX_STRING_BLOCK_UTF8 + 1,
        "{blocks} blocks"
    );
    // ...and stops at the cap (stock yrs would have one block).
    assert!(blocks >= expected.len() / MAX_STRING_BLOCK_UTF8);
}

/// Encodes a v1 update as stock Yjs does for a client that typed `s` into root text `t`: one
/// string struct, whatever its size (Yjs squashes a client's consecutive inserts).
fn yjs_style_update(client: u64, s: &str) -> Vec<u8> {
    fn var(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut out = Vec::new();
    var(&mut out, 1); // one client
    var(&mut out, 1); // one struct
    var(&mut out, client);
    var(&mut out, 0); // first clock
    out.push(4); // ContentString, no origins: parent info follows
    var(&mut out, 1); // parent is a root type, by name
    var(&mut out, 1);
    out.push(b't');
    var(&mut out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
    var(&mut out, 0); // empty delete set
    out
}

#[test]
fn stock_yjs_update_with_one_huge_item_round_trips() {
    let big = big_text(3_000_000);
    let update = yjs_style_update(7, &big);
    assert_eq!(structs(&update).len(), 1);

    let a = doc(1);
    apply(&a, &update);
    assert_eq!(string(&a), big);
    assert_bounded(&a);
    // Every piece has the original client and consecutive clocks covering the whole item.
    let pieces = structs(&state(&a));
    let mut clock = 0;
    for p in &pieces {
        assert_eq!((p.client, p.clock), (7, clock));
        clock += p.len;
    }
    assert_eq!(clock as usize, big.encode_utf16().count());

    // Round trip: a second replica loads our (split) encoding; a third applies the stock update
    // too and then our encoding (a no-op): all equal, same state vectors.
    let b = doc(2);
    apply(&b, &state(&a));
    let c = doc(3);
    apply(&c, &update);
    apply(&c, &state(&a));
    for d in [&b, &c] {
        assert_eq!(string(d), big);
        assert_eq!(d.transact().state_vector(), a.transact().state_vector());
    }

    // Edits on top of the split item from two peers converge, also with the stock original.
    let n = text(&a).len(&a.transact());
    text(&a).insert(&mut a.transact_mut(), n / 3, "from a");
    text(&b).insert(&mut b.transact_mut(), n / 3, "from b");
    text(&b).remove_range(&mut b.transact_mut(), n / 2, 40_000);
    let sa = state(&a);
    let sb = state(&b);
    apply(&a, &sb);
    apply(&b, &sa);
    apply(&c, &sa);
    apply(&c, &sb);
    assert_eq!(string(&a), string(&b));
    assert_eq!(string(&a), string(&c));
    assert_eq!(a.transact().state_vector(), b.transact().state_vector());
    assert_eq!(a.transact().state_vector(), c.transact().state_vector());
}

#[derive(Debug, Clone)]
enum Op {
    /// Insert at fraction `at`/256 of the text (rounded to a char boundary) `len` chars.
    Insert { peer: usize, at: u8, len: u32 },
    /// Delete `len` chars at fraction `at`/256.
    Delete { peer: usize, at: u8, len: u32 },
    /// Send peer `from`'s missing changes to the other peer.
    Sync { from: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly small, sometimes several blocks long.
        4 => (0..2usize, any::<u8>(), prop_oneof![1..20u32, 10_000..40_000u32])
            .prop_map(|(peer, at, len)| Op::Insert { peer, at, len }),
        2 => (0..2usize, any::<u8>(), prop_oneof![1..20u32, 5_000..40_000u32])
            .prop_map(|(peer, at, len)| Op::Delete { peer, at, len }),
        1 => (0..2usize).prop_map(|from| Op::Sync { from }),
    ]
}

const ALPHABET: [char; 4] = ['a', 'é', '女', '😀'];

/// UTF-16 offset of char index `i` in `chars`.
fn utf16_at(chars: &[char], i: usize) -> u32 {
    chars[..i].iter().map(|c| c.len_utf16() as u32).sum()
}

fn sync(from: &Doc, to: &Doc) {
    let sv = to.transact().state_vector();
    let update = from.transact().encode_state_as_update_v1(&sv);
    apply(to, &update);
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // Shared starting text of several blocks, from one stock-Yjs-style huge item.
    let base: String = (0..60_000).map(|i| ALPHABET[i % 4]).collect();
    let peers = [doc(1), doc(2)];
    let update = yjs_style_update(9, &base);
    for p in &peers {
        apply(p, &update);
    }
    // Each peer's own view as chars: local edits must match it exactly before syncing.
    let mut models: [Vec<char>; 2] = [base.chars().collect(), base.chars().collect()];
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert { peer, at, len } => {
                let model = &mut models[peer];
                let i = model.len() * at as usize / 256;
                let new: Vec<char> = (0..len as usize).map(|k| ALPHABET[(k + n) % 4]).collect();
                let s: String = new.iter().collect();
                text(&peers[peer]).insert(&mut peers[peer].transact_mut(), utf16_at(model, i), &s);
                model.splice(i..i, new);
            }
            Op::Delete { peer, at, len } => {
                let model = &mut models[peer];
                let i = model.len() * at as usize / 256;
                let end = (i + len as usize).min(model.len());
                let (from, to) = (utf16_at(model, i), utf16_at(model, end));
                if to > from {
                    text(&peers[peer]).remove_range(
                        &mut peers[peer].transact_mut(),
                        from,
                        to - from,
                    );
                }
                model.drain(i..end);
            }
            Op::Sync { from } => {
                sync(&peers[from], &peers[1 - from]);
                models[1 - from] = string(&peers[1 - from]).chars().collect();
            }
        }
        for p in 0..2 {
            let model: String = models[p].iter().collect();
            prop_assert_eq!(string(&peers[p]), model, "peer {} after op {}", p, n);
        }
    }
    sync(&peers[0], &peers[1]);
    sync(&peers[1], &peers[0]);
    prop_assert_eq!(string(&peers[0]), string(&peers[1]));
    prop_assert_eq!(
        peers[0].transact().state_vector(),
        peers[1].transact().state_vector()
    );
    // A fresh replica loading either full state agrees too.
    let fresh = doc(3);
    apply(&fresh, &state(&peers[0]));
    prop_assert_eq!(string(&fresh), string(&peers[1]));
    for p in &peers {
        assert_bounded(p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn concurrent_edits_across_block_boundaries_converge(ops in prop::collection::vec(op(), 1..24)) {
        run(ops)?;
    }
}

/// A diff from a state vector that ends inside a block encodes a partial slice (the upstream
/// `encode_slice` path), a full encoding whole items (the patched fast path): both must give a
/// replica the writer's exact text, including the 4-byte chars (surrogate pairs in UTF-16).
#[test]
fn whole_and_partial_item_encodings_round_trip() {
    let a = doc(1);
    let t = text(&a);
    let first = big_text(40_000);
    t.insert(&mut a.transact_mut(), 0, &first);
    // The replica gets the first insert, then a diff that starts in the middle of a's last block
    // once `a` appends into it (squashing up to the cap).
    let b = doc(2);
    apply(&b, &state(&a));
    let more = big_text(3_000);
    let len = t.len(&a.transact());
    t.insert(&mut a.transact_mut(), len, &more);
    let diff = a
        .transact()
        .encode_state_as_update_v1(&b.transact().state_vector());
    apply(&b, &diff);
    assert_eq!(string(&b), string(&a));
    assert_eq!(string(&b), format!("{first}{more}"));
    // The full encoding re-decoded and re-encoded is byte-identical (whole items are written
    // exactly as decoded).
    let full = state(&a);
    let c = doc(3);
    apply(&c, &full);
    assert_eq!(state(&c), full);
}
