//! Replays the coverage-guided fuzzers' inputs as ordinary tests, on both compilers: the
//! minimized corpus (`tests/fuzz/corpus/<target>/`) and every past finding
//! (`tests/fuzz/regressions/<target>/`), through the same harness the libFuzzer targets
//! run (`tests/fuzz/harness`). The long fuzz runs are `scripts/fuzz.sh`; see the README's
//! "Fuzzing" section.

#[path = "fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: harness::alloc_track::Tracking = harness::alloc_track::Tracking;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    out.sort();
    out
}

/// Run every corpus and regression input of `target`; returns how many ran.
fn replay(target: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        for path in inputs(&root.join(kind).join(target)) {
            let data = std::fs::read(&path).expect("read input");
            let r = std::panic::catch_unwind(|| harness::run(target, &data));
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{target}: {} fails: {msg}", path.display());
            }
            n += 1;
        }
    }
    eprintln!("{target}: replayed {n} inputs");
    n
}

#[test]
fn legacy_imports_corpus_and_findings_replay_cleanly() {
    assert!(replay("legacy_imports") > 0);
}

#[test]
fn canonical_imports_corpus_and_findings_replay_cleanly() {
    assert!(replay("canonical_imports") > 0);
}

#[test]
fn lift_corpus_and_findings_replay_cleanly() {
    assert!(replay("lift") > 0);
}

#[test]
fn manifest_corpus_and_findings_replay_cleanly() {
    assert!(replay("manifest") > 0);
}
