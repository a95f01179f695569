//! The fuzz harness, shared by the libFuzzer targets (`tests/fuzz/fuzz_targets`) and the
//! replay of the corpus and of past findings (`tests/fuzz_regressions.rs`).
//!
//! [`run`] takes one raw input, runs it on every selected compiler (both by default;
//! `TARK_FUZZ_COMPILER=singlepass|cranelift` picks one) and panics when a property
//! fails, which libFuzzer records as a crash. Each target keeps one host per compiler for
//! the whole process (per thread), like a real host keeps its plugins loaded.
#![allow(dead_code)]

#[path = "../../alloc_track/mod.rs"]
pub mod alloc_track;
pub mod env;
pub mod gen;
pub mod imports;
pub mod lift;
pub mod manifest;
pub mod server;
pub mod wat;

use tark_wasmer::engine::Compiler;

/// The fuzz targets (one corpus directory each under `tests/fuzz/corpus/`).
pub const TARGETS: &[&str] = &["legacy_imports", "canonical_imports", "lift", "manifest"];

/// What one input exercised, so that a driver can tell a degenerate generator (one that
/// only ever produces garbage, or never any) from a useful one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The input was well-formed: the host had to answer it (an import's well-formed
    /// arguments, a lifted image the decoder accepts, a manifest that validates).
    pub well_formed: bool,
    /// The host refused the input with a clean error (an error code, a trap, an
    /// `AbiError`, a manifest error).
    pub refused: bool,
}

/// Run one input of `target`; panics with the failed property.
pub fn run(target: &str, data: &[u8]) -> Outcome {
    match target {
        "legacy_imports" => imports::run_legacy(data),
        "canonical_imports" => imports::run_canonical(data),
        "lift" => lift::run(data),
        "manifest" => manifest::run(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The compilers each input runs on: `TARK_FUZZ_COMPILER`, or every compiler built in.
pub fn compilers() -> Vec<Compiler> {
    match std::env::var("TARK_FUZZ_COMPILER") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "both" => {
            vec![v
                .parse()
                .expect("TARK_FUZZ_COMPILER: singlepass, cranelift or both")]
        }
        _ => Compiler::available(),
    }
}

pub use wat::{wat_sig, wat_types};
