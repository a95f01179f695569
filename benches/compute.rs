//! Compute-bound plugin work: parse and re-serialise 1 MiB of JSON (serde_json, typed
//! records), FNV-1a over 16 MiB and XXH64 over 16 MiB, inside the bench plugin
//! (`tests/plugins/bench-hook`, `on-event` workloads `json`, `fnv`, `xxh`), with and
//! without metering on both compilers, on the wasmtime peers (with and without fuel), and
//! the same source compiled natively (`workload.rs` is shared with the guest).

mod common;

#[path = "../tests/plugins/bench-hook/src/workload.rs"]
mod workload;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tark_wasmer::engine::{EngineSettings, WasmEngine};
use tark_wasmer::lowlevel::CanonicalInstance;
use tark_wasmer::lowlevel::Val;
use tark_wasmer::{
    lowlevel::{HostServices, PluginContext},
    HostConfig,
};
use tark_wasmer::{Limits, PluginCapabilities};

use common::{compilers, label};

/// The workloads: (bench-hook workload name, bench name, bytes processed).
const WORKLOADS: &[(&str, &str, usize)] = &[
    ("json", "json-1MiB", workload::JSON_BYTES),
    ("fnv", "fnv1a-16MiB", workload::HASH_BYTES),
    ("xxh", "xxh64-16MiB", workload::HASH_BYTES),
];

/// What the guest answers for `workload` (`rewrite(<text>)`), computed natively.
struct Native {
    json: String,
    data: Vec<u8>,
}

impl Native {
    fn new() -> Self {
        assert!(workload::xxh64_self_test(), "xxh64 test vectors");
        Native {
            json: workload::make_json(workload::JSON_BYTES),
            data: workload::make_data(workload::HASH_BYTES),
        }
    }

    fn run(&self, w: &str) -> String {
        match w {
            "json" => workload::json_roundtrip(black_box(&self.json))
                .expect("valid JSON")
                .to_string(),
            "fnv" => format!("{:016x}", workload::fnv1a64(black_box(&self.data))),
            "xxh" => format!("{:016x}", workload::xxh64(black_box(&self.data), 0)),
            other => panic!("unknown workload {other}"),
        }
    }
}

/// A wasmtime peer's workload runner: workload name in, `rewrite` text out.
#[cfg(feature = "bench-wasmtime")]
type PeerRun = Box<dyn FnMut(&str) -> String>;

fn event(w: &str) -> [Val; 1] {
    [Val::Record(vec![
        Val::Enum(0),
        Val::String(w.to_string()),
        Val::String(String::new()),
    ])]
}

/// The `rewrite(text)` of a hook decision.
fn rewrite_text(v: Option<Val>) -> String {
    match v {
        Some(Val::Variant(1, Some(b))) => match *b {
            Val::String(s) => s,
            other => panic!("rewrite payload {other:?}"),
        },
        other => panic!("expected rewrite, got {other:?}"),
    }
}

fn compute(c: &mut Criterion) {
    let native = Native::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let wasm = common::plugin_wasm("bench-hook");
    let services = HostServices::new(HostConfig::default()).expect("services");
    let caps = PluginCapabilities::default();

    // Our instances: every compiler, unmetered and metered (default CPU budget per call).
    let mut ours: Vec<(String, CanonicalInstance)> = Vec::new();
    for compiler in compilers() {
        for metering in [false, true] {
            let e =
                WasmEngine::with_settings(compiler, EngineSettings { metering }).expect("engine");
            let module = e.compile("bench-hook", &wasm).expect("compiles").module;
            let limits = Limits {
                cpu_metering: metering,
                ..Limits::default()
            };
            let ctx: Arc<PluginContext> = PluginContext::new(
                services.clone(),
                "bench-hook",
                &caps,
                &tmp.path().join("data"),
                limits,
            )
            .expect("context");
            let inst = CanonicalInstance::new(e.new_store(), &module, ctx).expect("instance");
            ours.push((label(compiler, metering), inst));
        }
    }

    #[cfg(feature = "bench-wasmtime")]
    let mut peers = {
        let mut peers: Vec<(String, PeerRun)> = Vec::new();
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                for fuel in [false, true] {
                    let e = common::$wt::engine(fuel);
                    let m = common::$wt::compile(&e, &wasm).expect("compiles");
                    let linker = common::$wt::linker(&e, &m).expect("linker");
                    let mut h = common::$wt::Hook::new(&e, &linker, &m).expect("instance");
                    let name = if fuel {
                        format!("{}+fuel", $label)
                    } else {
                        $label.to_string()
                    };
                    peers.push((
                        name,
                        Box::new(move |w: &str| match h.on_event(0, w, "").expect("call") {
                            (1, Some(text)) => text,
                            other => panic!("expected rewrite, got {other:?}"),
                        }),
                    ));
                }
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
        peers
    };

    for &(w, bench, bytes) in WORKLOADS {
        let want = native.run(w);
        let ev = event(w);
        let mut g = c.benchmark_group(format!("compute/{bench}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.sampling_mode(SamplingMode::Flat);
        g.bench_function("native", |b| b.iter(|| native.run(w)));
        for (name, inst) in &mut ours {
            // First call generates the input inside the guest (untimed) and checks the answer.
            let got = rewrite_text(inst.call("hook-plugin", "on-event", &ev).expect("call"));
            assert_eq!(got, want, "{name} {w}");
            g.bench_function(name.as_str(), |b| {
                b.iter(|| inst.call("hook-plugin", "on-event", &ev).expect("call"))
            });
        }
        #[cfg(feature = "bench-wasmtime")]
        for (name, run) in &mut peers {
            assert_eq!(run(w), want, "{name} {w}");
            g.bench_function(name.as_str(), |b| b.iter(|| run(w)));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = compute
}
criterion_main!(benches);
