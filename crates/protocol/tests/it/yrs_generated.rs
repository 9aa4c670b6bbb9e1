//! Every update real yrs 0.28.1 produces must pass the validator: random documents built through
//! the yrs API (text with formats and embeds, maps, arrays, nested Any values, XML, subdocs,
//! deletions, several clients), as incremental updates, full states, diffs and merges.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use weaver_protocol::{UpdateLimits, validate_state_vector, validate_update_v1};
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, Doc, GetString, Map, MapPrelim, Number, OffsetKind, Options, ReadTxn,
    StateVector, Text, TextPrelim, Transact, Update, XmlElementPrelim, XmlFragment, XmlTextPrelim,
    merge_updates_v1,
};

fn any_value() -> impl Strategy<Value = Any> {
    let leaf = prop_oneof![
        Just(Any::Null),
        Just(Any::Undefined),
        any::<bool>().prop_map(Any::Bool),
        any::<i64>().prop_map(|n| Any::Number(Number::Int(n))),
        any::<f64>().prop_map(|f| Any::Number(Number::Float(f))),
        ".{0,8}".prop_map(|s| Any::String(Arc::from(s.as_str()))),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Any::Buffer(Arc::from(b))),
    ];
    leaf.prop_recursive(6, 40, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| Any::Array(Arc::from(v))),
            proptest::collection::hash_map(".{0,4}", inner, 0..4)
                .prop_map(|m| Any::Map(Arc::new(m))),
        ]
    })
}

/// JSON-representable values (embeds and format attributes are written as JSON text).
fn json_value() -> impl Strategy<Value = Any> {
    let leaf = prop_oneof![
        Just(Any::Null),
        any::<bool>().prop_map(Any::Bool),
        (-1_000_000i64..1_000_000).prop_map(|n| Any::Number(Number::Int(n))),
        (-1e9f64..1e9).prop_map(|f| Any::Number(Number::Float(f))),
        "[a-z\u{e9}\u{2713}]{0,6}".prop_map(|s| Any::String(Arc::from(s.as_str()))),
    ];
    leaf.prop_recursive(5, 24, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| Any::Array(Arc::from(v))),
            proptest::collection::hash_map("[a-z]{1,4}", inner, 0..3)
                .prop_map(|m| Any::Map(Arc::new(m))),
        ]
    })
}

/// BMP-only text, so every UTF-16 index is a character boundary.
fn text() -> impl Strategy<Value = String> {
    "[a-z \u{e9}\u{fc}\u{2713}\n]{1,12}"
}

#[derive(Debug, Clone)]
enum Op {
    TextInsert(u32, String, Option<(String, Any)>),
    TextDelete(u32, u32),
    TextFormat(u32, u32, String, Any),
    TextEmbed(u32, Any),
    MapSet(String, Any),
    MapNested(String, u8),
    MapRemove(String),
    MapSubdoc(String),
    ArrayInsert(u32, Vec<Any>),
    ArrayNested(u32, u8),
    ArrayDelete(u32, u32),
    XmlElement(u32, String, Option<(String, String)>),
    XmlText(u32, String),
    XmlDelete(u32),
    /// Exchange state between the two replicas.
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    let key = "[a-c]";
    prop_oneof![
        (
            any::<u32>(),
            text(),
            proptest::option::of(("[a-z]{1,5}", json_value()))
        )
            .prop_map(|(i, s, a)| Op::TextInsert(i, s, a)),
        (any::<u32>(), 1u32..6).prop_map(|(i, n)| Op::TextDelete(i, n)),
        (any::<u32>(), 1u32..6, "[a-z]{1,5}", json_value())
            .prop_map(|(i, n, k, v)| Op::TextFormat(i, n, k, v)),
        (any::<u32>(), json_value()).prop_map(|(i, v)| Op::TextEmbed(i, v)),
        (key, any_value()).prop_map(|(k, v)| Op::MapSet(k, v)),
        (key, 0u8..3).prop_map(|(k, t)| Op::MapNested(k, t)),
        key.prop_map(Op::MapRemove),
        key.prop_map(Op::MapSubdoc),
        (any::<u32>(), proptest::collection::vec(any_value(), 1..4))
            .prop_map(|(i, v)| Op::ArrayInsert(i, v)),
        (any::<u32>(), 0u8..3).prop_map(|(i, t)| Op::ArrayNested(i, t)),
        (any::<u32>(), 1u32..4).prop_map(|(i, n)| Op::ArrayDelete(i, n)),
        (
            any::<u32>(),
            "[a-z]{1,6}",
            proptest::option::of(("[a-z]{1,4}", "[a-z]{0,4}"))
        )
            .prop_map(|(i, t, a)| Op::XmlElement(i, t, a)),
        (any::<u32>(), text()).prop_map(|(i, s)| Op::XmlText(i, s)),
        any::<u32>().prop_map(Op::XmlDelete),
        Just(Op::Sync),
    ]
}

fn new_doc(client: u64) -> Doc {
    let mut options = Options::with_client_id(yrs::ClientID::new(client));
    options.offset_kind = OffsetKind::Utf16;
    Doc::with_options(options)
}

fn nested(kind: u8) -> yrs::In {
    match kind {
        0 => ArrayPrelim::from([Any::from(1.5), Any::from("x")]).into(),
        1 => MapPrelim::from([("k", Any::from(true))]).into(),
        _ => TextPrelim::new("nested").into(),
    }
}

/// Applies one op inside one transaction and returns the update it produced.
fn apply(doc: &Doc, op: &Op) -> Vec<u8> {
    let t = doc.get_or_insert_text("t");
    let m = doc.get_or_insert_map("m");
    let a = doc.get_or_insert_array("a");
    let x = doc.get_or_insert_xml_fragment("x");
    let mut txn = doc.transact_mut();
    match op {
        Op::TextInsert(i, s, attrs) => {
            let i = i % (t.len(&txn) + 1);
            match attrs {
                Some((k, v)) => {
                    let attrs: Attrs = HashMap::from([(Arc::from(k.as_str()), v.clone())]);
                    t.insert_with_attributes(&mut txn, i, s, attrs);
                }
                None => t.insert(&mut txn, i, s),
            }
        }
        Op::TextDelete(i, n) => {
            let len = t.len(&txn);
            if len > 0 {
                let i = i % len;
                t.remove_range(&mut txn, i, (*n).min(len - i));
            }
        }
        Op::TextFormat(i, n, k, v) => {
            let len = t.len(&txn);
            if len > 0 {
                let i = i % len;
                let attrs: Attrs = HashMap::from([(Arc::from(k.as_str()), v.clone())]);
                t.format(&mut txn, i, (*n).min(len - i), attrs);
            }
        }
        Op::TextEmbed(i, v) => {
            let i = i % (t.len(&txn) + 1);
            t.insert_embed(&mut txn, i, v.clone());
        }
        Op::MapSet(k, v) => {
            m.insert(&mut txn, k.as_str(), v.clone());
        }
        Op::MapNested(k, kind) => {
            m.insert(&mut txn, k.as_str(), nested(*kind));
        }
        Op::MapRemove(k) => {
            m.remove(&mut txn, k);
        }
        Op::MapSubdoc(k) => {
            m.insert(&mut txn, k.as_str(), Doc::new());
        }
        Op::ArrayInsert(i, v) => {
            let i = i % (a.len(&txn) + 1);
            a.insert_range(&mut txn, i, v.clone());
        }
        Op::ArrayNested(i, kind) => {
            let i = i % (a.len(&txn) + 1);
            a.insert(&mut txn, i, nested(*kind));
        }
        Op::ArrayDelete(i, n) => {
            let len = a.len(&txn);
            if len > 0 {
                let i = i % len;
                a.remove_range(&mut txn, i, (*n).min(len - i));
            }
        }
        Op::XmlElement(i, tag, attr) => {
            let i = i % (x.len(&txn) + 1);
            let el = x.insert(&mut txn, i, XmlElementPrelim::empty(tag.as_str()));
            if let Some((k, v)) = attr {
                use yrs::Xml;
                el.insert_attribute(&mut txn, k.as_str(), v.as_str());
            }
        }
        Op::XmlText(i, s) => {
            let i = i % (x.len(&txn) + 1);
            x.insert(&mut txn, i, XmlTextPrelim::new(s.as_str()));
        }
        Op::XmlDelete(i) => {
            let len = x.len(&txn);
            if len > 0 {
                x.remove_range(&mut txn, i % len, 1);
            }
        }
        Op::Sync => {}
    }
    txn.encode_update_v1()
}

fn check(what: &str, update: &[u8]) -> Result<(), TestCaseError> {
    let res = validate_update_v1(update, &UpdateLimits::default());
    prop_assert!(res.is_ok(), "{what}: {res:?} for {update:?}");
    prop_assert!(Update::decode_v1(update).is_ok());
    Ok(())
}

fn sync(a: &Doc, b: &Doc) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (from, to) in [(a, b), (b, a)] {
        let sv = to.transact().state_vector();
        let diff = from.transact().encode_state_as_update_v1(&sv);
        to.transact_mut()
            .apply_update(Update::decode_v1(&diff).unwrap())
            .unwrap();
        out.push(diff);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn yrs_generated_updates_validate(
        ops in proptest::collection::vec((any::<bool>(), op()), 1..40),
    ) {
        let docs = [new_doc(11), new_doc(22)];
        let mut updates = Vec::new();
        let mut mid_sv = None;
        for (n, (which, op)) in ops.iter().enumerate() {
            if let Op::Sync = op {
                for diff in sync(&docs[0], &docs[1]) {
                    check("sync diff", &diff)?;
                }
                continue;
            }
            let u = apply(&docs[usize::from(*which)], op);
            check("incremental", &u)?;
            updates.push(u);
            if n == ops.len() / 2 {
                mid_sv = Some(docs[0].transact().state_vector());
            }
        }
        sync(&docs[0], &docs[1]);
        // Root refs first: get_or_insert_* takes a write transaction, which would wait forever
        // on the read transaction below.
        let text0 = docs[0].get_or_insert_text("t");
        let copy = new_doc(33);
        let copy_text = copy.get_or_insert_text("t");
        let txn = docs[0].transact();
        let full = txn.encode_state_as_update_v1(&StateVector::default());
        check("full state", &full)?;
        let sv = yrs::updates::encoder::Encode::encode_v1(&txn.state_vector());
        prop_assert!(validate_state_vector(&sv).is_ok());
        if let Some(mid) = mid_sv {
            check("diff", &txn.encode_state_as_update_v1(&mid))?;
        }
        if !updates.is_empty() {
            let merged = merge_updates_v1(&updates).unwrap();
            check("merged", &merged)?;
            // A merge with holes (every other update) produces Skip structs.
            let holes: Vec<_> = updates.iter().step_by(2).collect();
            check("merged with gaps", &merge_updates_v1(holes).unwrap())?;
        }
        // Sanity: the text actually round-trips through the validated full state.
        copy.transact_mut().apply_update(Update::decode_v1(&full).unwrap()).unwrap();
        prop_assert_eq!(copy_text.get_string(&copy.transact()), text0.get_string(&txn));
    }
}
