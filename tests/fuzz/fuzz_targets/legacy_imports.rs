//! libFuzzer target `legacy_imports`: the property checks live in `harness` (shared with the
//! regression replay in tests/fuzz_regressions.rs).
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

#[global_allocator]
static ALLOC: harness::alloc_track::Tracking = harness::alloc_track::Tracking;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run("legacy_imports", data);
});
