//! No decoder panics on any input: random bytes, and real Yjs updates with random mutations
//! (which reach much deeper into the update grammar than random bytes do). Whatever the
//! validator accepts, yrs must decode.

use std::sync::OnceLock;

use proptest::prelude::*;
use weaver_protocol::{
    UpdateLimits, decode_awareness, decode_message, validate_state_vector, validate_update_v1,
};
use yrs::Update;
use yrs::updates::decoder::Decode;

use crate::inputs::files;

fn corpus() -> &'static Vec<Vec<u8>> {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        files("fuzz/corpus/validate_update")
            .into_iter()
            .filter(|(name, _)| name.starts_with("yjs-"))
            .map(|(_, bytes)| bytes)
            .collect()
    })
}

fn all_decoders(bytes: &[u8]) {
    let _ = decode_message(bytes);
    let _ = validate_state_vector(bytes);
    let _ = decode_awareness(bytes);
    if validate_update_v1(bytes, &UpdateLimits::default()).is_ok() {
        assert!(
            Update::decode_v1(bytes).is_ok(),
            "validated but yrs refused: {bytes:?}"
        );
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<usize>(), 1usize..6).prop_map(|(i, n)| Mutation::Remove(i, n)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if !bytes.is_empty() {
                    bytes[i % len] = *b;
                }
            }
            Mutation::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                if !bytes.is_empty() {
                    let at = i % len;
                    let end = (at + n).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        all_decoders(&bytes);
    }

    #[test]
    fn mutated_yjs_updates_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let files = corpus();
        let base = files[pick.index(files.len())].clone();
        let bytes = mutate(base, &muts);
        all_decoders(&bytes);
        // The same bytes framed as a y-websocket update message.
        all_decoders(&weaver_protocol::encode_update(&bytes));
    }
}
