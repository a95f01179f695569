//! Fuzzing over the ABI boundary in CI (property tests with proptest), on both compilers,
//! through the same harness the coverage-guided fuzzers run (`tests/fuzz/harness`; the
//! properties are documented there and in the README's "Fuzzing" section):
//!
//! 1. Random pointers, lengths and bytes for every host import of both ABIs (the 15
//!    `tark:*` functions of the legacy ABI; storage, http, env, fs, log and ws of the
//!    canonical ABI, with a misbehaving `cabi_realloc` at random): the host never panics,
//!    a legacy import answers with a documented code, a canonical import answers or traps
//!    cleanly, well-formed arguments are never refused, the storage file stays a JSON map
//!    of strings, and a normal call works right after.
//! 2. Random guest results for every lifted type (structure-aware memory images with
//!    corruptions): the host's value or `AbiError` equals an independent decoder's, and
//!    the host never holds more than a small multiple of the per-call limit.
//!
//! proptest draws the harness's input layout field by field (so shrinking shrinks towards
//! "first import, no noise, no corruption"); libFuzzer (`scripts/fuzz.sh`) mutates the same
//! inputs by coverage, and `tests/fuzz_regressions.rs` replays its corpus.
//!
//! Cases per property: 1000 by default (seconds; sized for CI), each on every compiler;
//! `TARK_WASMER_FUZZ_CASES=<n>` runs more.

#[path = "fuzz/harness/mod.rs"]
mod harness;

use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use harness::Outcome;

#[global_allocator]
static ALLOC: harness::alloc_track::Tracking = harness::alloc_track::Tracking;

/// Cases per property.
fn cases() -> u32 {
    std::env::var("TARK_WASMER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// How many inputs were well-formed and how many the host refused.
#[derive(Debug, Default)]
struct Tally {
    well_formed: u32,
    refused: u32,
}

/// Run `target` of the harness over `strategy`'s inputs; panic with the minimal failure.
/// Returns what the inputs exercised.
fn fuzz(target: &str, strategy: impl Strategy<Value = Vec<u8>>) -> Tally {
    let config = Config {
        cases: cases(),
        // Shrunk failures are printed; no regression files in the source tree (a finding
        // worth keeping goes to tests/fuzz/regressions/<target>/).
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let start = Instant::now();
    let tally = std::cell::RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |input| {
        let Outcome {
            well_formed,
            refused,
        } = harness::run(target, &input);
        let mut t = tally.borrow_mut();
        t.well_formed += u32::from(well_formed);
        t.refused += u32::from(refused);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    let tally = tally.into_inner();
    eprintln!(
        "fuzz {target} on {:?}: {} cases in {:.1} s, {tally:?}",
        harness::compilers(),
        cases(),
        start.elapsed().as_secs_f64()
    );
    tally
}

/// An import input: `[import][noise length][noise][argument choices as LE words]`.
fn import_inputs() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        vec(any::<u8>(), 0..256),
        vec(any::<u32>(), 0..48),
    )
        .prop_map(|(sel, noise, words)| {
            let mut input = vec![sel, noise.len() as u8];
            input.extend_from_slice(&noise);
            for w in words {
                input.extend_from_slice(&w.to_le_bytes());
            }
            input
        })
}

/// Not degenerate: with enough cases, some inputs were well-formed and some refused.
fn assert_mixed(target: &str, t: &Tally) {
    if cases() >= 100 {
        assert!(
            t.well_formed > 0 && t.refused > 0,
            "{target}: degenerate generator: {t:?}"
        );
    }
}

#[test]
fn legacy_imports_survive_random_pointers_lengths_and_bytes() {
    let t = fuzz("legacy_imports", import_inputs());
    assert_mixed("legacy_imports", &t);
}

#[test]
fn canonical_imports_survive_random_pointers_lengths_and_bytes() {
    let t = fuzz("canonical_imports", import_inputs());
    assert_mixed("canonical_imports", &t);
}

#[test]
fn lifting_random_guest_results_matches_an_independent_decoder() {
    // `[result type][corruption rate][image choices as LE words]`.
    let inputs =
        (any::<u8>(), 0u8..12, vec(any::<u32>(), 0..600)).prop_map(|(index, rate, words)| {
            let mut input = vec![index, rate];
            for w in words {
                input.extend_from_slice(&w.to_le_bytes());
            }
            input
        });
    let t = fuzz("lift", inputs);
    assert_mixed("lift", &t);
}
