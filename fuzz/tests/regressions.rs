//! Every fuzz target over its kept corpus (`fuzz/libfuzzer/corpus/<target>`) and over every input that ever
//! made it fail (`fuzz/regressions/<target>`), on the stable toolchain: a crash found by `scripts/fuzz` is
//! copied to `fuzz/regressions/<target>/` with the fix, and this test holds it fixed.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn run(target: &str) {
    let (_, body) = facekey_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = inputs(&root.join("libfuzzer/corpus").join(target));
    let regressions = inputs(&root.join("regressions").join(target));
    // An empty corpus would make this test pass without running anything.
    assert!(!corpus.is_empty(), "no kept corpus for {target}");
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a readable input");
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
    println!(
        "{target}: {} corpus inputs, {} regressions",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn decode() {
    run("decode");
}

#[test]
fn store() {
    run("store");
}

#[test]
fn config() {
    run("config");
}

#[test]
fn howdy() {
    run("howdy");
}

#[test]
fn protocol() {
    run("protocol");
}

#[test]
fn negotiate() {
    run("negotiate");
}

#[test]
fn descriptors() {
    run("descriptors");
}

#[test]
fn pipeline() {
    run("pipeline");
}

/// Every target has its test above and its libFuzzer entry point.
#[test]
fn every_target_is_run_here_and_by_libfuzzer() {
    let source = include_str!("regressions.rs");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in facekey_fuzz::TARGETS {
        assert!(
            source.contains(&format!("fn {name}()")),
            "no test for {name}"
        );
        let entry = root
            .join("libfuzzer/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(entry.is_file(), "no libFuzzer target {}", entry.display());
    }
}
