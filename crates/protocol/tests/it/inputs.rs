//! The committed inputs every suite here replays: the fuzz seed corpus (`fuzz/corpus/<target>`)
//! and the fuzzer's findings (`crates/protocol/tests/data/fuzz-regressions`).

use std::path::Path;

/// Every file of `dir` (relative to the repository root) as `(name, bytes)`, sorted by name.
pub fn files(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// The fuzzer's findings kept as regression files.
pub fn fuzz_regressions() -> Vec<(String, Vec<u8>)> {
    files("crates/protocol/tests/data/fuzz-regressions")
}
