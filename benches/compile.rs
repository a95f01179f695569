//! Getting a plugin ready: compile time (and MB/s of wasm) per example plugin, loading a
//! compiled artifact from the on-disk cache, a fresh instance from a compiled module (both
//! ABIs), and the whole warm start of the 438 KB bench plugin (read + hash + cache load +
//! instantiate + first call). Each on singlepass and cranelift, and, with the feature
//! `bench-wasmtime`, on wasmtime 27 and 48.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use sha2::{Digest, Sha256};
use tark_wasmer::cache::{ArtifactCache, FileStamp};
use tark_wasmer::engine::{Compiler, EngineSettings, WasmEngine};
use tark_wasmer::inspect::detect_abi;
use tark_wasmer::lowlevel::CanonicalInstance;
use tark_wasmer::lowlevel::LegacyInstance;
use tark_wasmer::AbiKind;
use tark_wasmer::{
    lowlevel::{HostServices, PluginContext},
    HostConfig,
};
use tark_wasmer::{Limits, PluginCapabilities};
use wasmer::Module;

use common::{compilers, label, plugin_wasm};

/// The example plugins compiled: 50 KB canonical, 105 KB legacy, 113 KB canonical, and the
/// 438 KB bench plugin (serde_json, regex-lite, url, sha2).
const MODULES: &[&str] = &[
    "conformance",
    "legacy-provider",
    "chat-channel",
    "bench-hook",
];

/// Plugins instantiated: one per ABI with WASI, and the WASI-free bench plugin.
const INSTANTIATED: &[&str] = &["legacy-provider", "chat-channel", "bench-hook"];

fn engine(compiler: Compiler, metering: bool) -> WasmEngine {
    WasmEngine::with_settings(compiler, EngineSettings { metering }).expect("engine")
}

fn context(tmp: &std::path::Path, id: &str) -> Arc<PluginContext> {
    let services = HostServices::new(HostConfig::default()).expect("services");
    let caps = PluginCapabilities {
        storage: true,
        ..Default::default()
    };
    PluginContext::new(services, id, &caps, &tmp.join(id), Limits::default()).expect("context")
}

fn compile(c: &mut Criterion) {
    for name in MODULES {
        let wasm = plugin_wasm(name);
        let mut g = c.benchmark_group(format!("compile/{name}"));
        g.throughput(Throughput::Bytes(wasm.len() as u64));
        g.sampling_mode(SamplingMode::Flat);
        for compiler in compilers() {
            for metering in [false, true] {
                let e = engine(compiler, metering);
                g.bench_function(label(compiler, metering), |b| {
                    b.iter(|| Module::new(e.engine(), black_box(&wasm)).expect("compiles"))
                });
            }
        }
        #[cfg(feature = "bench-wasmtime")]
        {
            macro_rules! peer {
                ($wt:ident, $label:expr) => {
                    let e = common::$wt::engine(false);
                    g.bench_function($label, |b| {
                        b.iter(|| common::$wt::compile(&e, black_box(&wasm)).expect("compiles"))
                    });
                };
            }
            peer!(wt27, "wasmtime27");
            peer!(wt48, "wasmtime48");
        }
        g.finish();
    }
}

/// Loading a compiled artifact from disk: our cache (read, header and SHA-256 checks,
/// deserialize) and wasmtime's `Module::deserialize_file`.
fn cache_load(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let metering = Limits::default().cpu_metering;
    for name in MODULES {
        let wasm = plugin_wasm(name);
        let hash: [u8; 32] = Sha256::digest(&wasm).into();
        let mut g = c.benchmark_group(format!("cache-load/{name}"));
        g.throughput(Throughput::Bytes(wasm.len() as u64));
        for compiler in compilers() {
            let e = engine(compiler, metering);
            let cache = ArtifactCache::new(tmp.path().join("cache"), 1 << 30);
            let key = e.cache_key(&hash);
            let module = Module::new(e.engine(), &wasm).expect("compiles");
            assert!(
                cache.store(&key, &module).expect("stores"),
                "artifact stored"
            );
            g.bench_function(label(compiler, metering), |b| {
                b.iter(|| {
                    cache
                        .load(black_box(&key), e.engine())
                        .expect("verified")
                        .expect("present")
                })
            });
            // The part that is wasmer's own: deserializing artifact bytes already in memory.
            let bytes = module.serialize().expect("serializes");
            g.bench_function(
                format!("{}-deserialize-only", label(compiler, metering)),
                |b| {
                    // SAFETY: bytes this process just serialized with the same engine.
                    b.iter(|| {
                        unsafe { Module::deserialize(e.engine(), black_box(bytes.clone())) }
                            .expect("loads")
                    })
                },
            );
        }
        #[cfg(feature = "bench-wasmtime")]
        {
            macro_rules! peer {
                ($wt:ident, $label:expr) => {
                    let e = common::$wt::engine(false);
                    let m = common::$wt::compile(&e, &wasm).expect("compiles");
                    let path = tmp.path().join(format!("{}-{name}.cwasm", $label));
                    std::fs::write(&path, common::$wt::serialize(&m).expect("serializes"))
                        .expect("write");
                    g.bench_function($label, |b| {
                        b.iter(|| {
                            common::$wt::deserialize_file(&e, black_box(&path)).expect("loads")
                        })
                    });
                };
            }
            peer!(wt27, "wasmtime27");
            peer!(wt48, "wasmtime48");
        }
        g.finish();
    }
}

/// A fresh instance of a compiled module: imports built, memory and data segments set up,
/// WASI wired when the module imports it, `_initialize` run; then dropped.
fn instantiate(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let metering = Limits::default().cpu_metering;
    for name in INSTANTIATED {
        let wasm = plugin_wasm(name);
        let ctx = context(tmp.path(), name);
        let mut g = c.benchmark_group(format!("instantiate/{name}"));
        for compiler in compilers() {
            let e = engine(compiler, metering);
            let module = e.compile(name, &wasm).expect("compiles").module;
            let abi = detect_abi(&module);
            g.bench_function(label(compiler, metering), |b| {
                b.iter(|| match abi {
                    AbiKind::Legacy => drop(
                        LegacyInstance::new(e.new_store(), &module, ctx.clone()).expect("instance"),
                    ),
                    AbiKind::Canonical => drop(
                        CanonicalInstance::new(e.new_store(), &module, ctx.clone())
                            .expect("instance"),
                    ),
                })
            });
        }
        #[cfg(feature = "bench-wasmtime")]
        {
            macro_rules! peer {
                ($wt:ident, $label:expr) => {
                    let e = common::$wt::engine(false);
                    let m = common::$wt::compile(&e, &wasm).expect("compiles");
                    let linker = common::$wt::linker(&e, &m).expect("linker");
                    g.bench_function($label, |b| {
                        b.iter(|| common::$wt::Guest::new(&e, &linker, &m).expect("instance"))
                    });
                };
            }
            peer!(wt27, "wasmtime27");
            peer!(wt48, "wasmtime48");
        }
        g.finish();
    }
}

/// Warm start of the 438 KB bench plugin: what loading an already-cached plugin costs
/// before its first answer, as `WasmEngine::compile_file_cached` does it in a new process
/// (stat and read the wasm, take its SHA-256 from the cache's record of the unchanged
/// file, find its custom sections, load the artifact whose digest a record vouches for,
/// instantiate, call `name`). The wasmtime peers load their artifact and instantiate.
fn warm_start(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let metering = Limits::default().cpu_metering;
    let name = "bench-hook";
    let wasm_path = common::plugin_dir(name).join("plugin.wasm");
    let wasm = plugin_wasm(name);
    let ctx = context(tmp.path(), name);
    let mut g = c.benchmark_group(format!("warm-start/{name}"));
    g.bench_function("sha256-of-wasm", |b| {
        b.iter(|| Sha256::digest(black_box(&wasm)))
    });
    for compiler in compilers() {
        let e = engine(compiler, metering);
        let cache = ArtifactCache::new(tmp.path().join("cache"), 1 << 30);
        let hash: [u8; 32] = Sha256::digest(&wasm).into();
        let module = Module::new(e.engine(), &wasm).expect("compiles");
        assert!(cache.store(&e.cache_key(&hash), &module).expect("stores"));
        let stamp = |f: &std::fs::File| {
            FileStamp::of(&f.metadata().expect("stat")).expect("stamps on this platform")
        };
        let f = std::fs::File::open(&wasm_path).expect("open");
        cache.remember_wasm_hash(&wasm_path, &stamp(&f), &hash);
        // The first (verifying) load writes the artifact's record.
        cache
            .load(&e.cache_key(&hash), e.engine())
            .expect("verified")
            .expect("present");
        g.bench_function(label(compiler, metering), |b| {
            b.iter(|| {
                let mut f = std::fs::File::open(&wasm_path).expect("open");
                let st = stamp(&f);
                let mut wasm = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut wasm).expect("read");
                let hash: [u8; 32] = cache
                    .known_wasm_hash(&wasm_path, &st)
                    .unwrap_or_else(|| Sha256::digest(&wasm).into());
                black_box(tark_wasmer::engine::custom_section_names(&wasm));
                let module = cache
                    .load(&e.cache_key(&hash), e.engine())
                    .expect("verified")
                    .expect("present");
                let mut inst =
                    CanonicalInstance::new(e.new_store(), &module, ctx.clone()).expect("instance");
                inst.call("hook-plugin", "name", &[]).expect("name")
            })
        });
    }
    #[cfg(feature = "bench-wasmtime")]
    {
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                let e = common::$wt::engine(false);
                let m = common::$wt::compile(&e, &wasm).expect("compiles");
                let path = tmp.path().join(format!("{}-{name}.cwasm", $label));
                std::fs::write(&path, common::$wt::serialize(&m).expect("serializes"))
                    .expect("write");
                let linker = common::$wt::linker(&e, &m).expect("linker");
                g.bench_function($label, |b| {
                    b.iter(|| {
                        let m = common::$wt::deserialize_file(&e, &path).expect("loads");
                        let mut h = common::$wt::Hook::new(&e, &linker, &m).expect("instance");
                        h.name().expect("name")
                    })
                });
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = compile, cache_load, instantiate, warm_start
}
criterion_main!(benches);
