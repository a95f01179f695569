//! Crossing the boundary: latency of trivial and string-returning export calls (both
//! ABIs), the per-call cost of guest-to-host imports (`storage.get` hits, `log.debug`
//! below the log level, each in a guest loop of 1000), and marshalling throughput of
//! strings and lists from 1 KiB to 1 MiB in both directions (conformance plugin:
//! `echo-*` host -> guest -> host, `relay-*` through a host import as well).
//!
//! Ours go through the public host API with default settings (`PluginHost`,
//! `PluginInstance::call_canonical` / `legacy_code`); the `*-floor` entries call the same
//! exports through bare wasmer `TypedFunction`s with the canonical-ABI work done by hand
//! and the cheapest host functions (`storage.get` copies a constant, `log.*` does
//! nothing): the engine's own cost for the same call shape, without our host. The
//! wasmtime peers use the minimal harness in `common/wasmtime_harness.rs`.

mod common;

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::Val;
use tark_wasmer::plugin::{HookDecision, HookEvent, HookEventKind, WebhookRequest};
use tark_wasmer::{PluginHost, PluginInstance};
use wasmer::{
    imports, Function, FunctionEnv, FunctionEnvMut, Imports, Instance, Memory, Module, Store,
    TypedFunction, Value,
};

use common::{compilers, default_metering, label, BenchEnv, BENCH_KEY, BENCH_VALUE, LOOP};

/// One host per compiler with the bench plugins loaded (default settings).
struct Hosts {
    _env: BenchEnv,
    hosts: Vec<(Compiler, PluginHost)>,
}

impl Hosts {
    fn new() -> Self {
        let env = BenchEnv::new()
            .with_examples(&["bench-hook", "conformance", "chat-channel"])
            .with_legacy_bench()
            .with_import_loop();
        let hosts = compilers()
            .into_iter()
            .map(|c| {
                let mut h = env.host(c);
                for id in ["bench-hook", "bench-legacy", "bench-imports"] {
                    let p = h.get_mut(id).expect("loaded");
                    p.context()
                        .storage_set(BENCH_KEY, BENCH_VALUE)
                        .expect("storage.set");
                }
                (c, h)
            })
            .collect();
        Hosts { _env: env, hosts }
    }
}

fn plugin<'a>(host: &'a mut PluginHost, id: &str) -> &'a mut PluginInstance {
    host.get_mut(id).expect("loaded")
}

/// The `on-event` argument that selects a bench workload.
fn event(workload: &str, payload: &str) -> Val {
    Val::Record(vec![
        Val::Enum(0),
        Val::String(workload.to_string()),
        Val::String(payload.to_string()),
    ])
}

/// `allow` (case 0 of hook-decision).
fn is_allow(v: &Option<Val>) -> bool {
    matches!(v, Some(Val::Variant(0, None)))
}

/// Bare wasmer: the bench plugin with stub imports and its exports as typed functions.
struct Floor {
    store: Store,
    memory: wasmer::Memory,
    name: TypedFunction<(), i32>,
    post_name: TypedFunction<i32, ()>,
}

impl Floor {
    fn new(compiler: Compiler) -> Self {
        let e = bare_engine(compiler);
        let wasm = common::plugin_wasm("bench-hook");
        let module = Module::new(&e, &wasm).expect("compiles");
        let mut store = Store::new(e);
        let log = |s: &mut Store| Function::new_typed(s, |_: i32, _: i32| {});
        let imports = imports! {
            "tark:plugin/log" => {
                "debug" => log(&mut store),
                "warn" => log(&mut store),
            },
            "tark:plugin/storage" => {
                "get" => Function::new_typed(&mut store, |_: i32, _: i32, _: i32| {}),
            },
        };
        let inst = Instance::new(&mut store, &module, &imports).expect("instance");
        let memory = inst.exports.get_memory("memory").expect("memory").clone();
        let f = "tark:plugin/hook-plugin#name";
        Floor {
            name: inst.exports.get_typed_function(&store, f).expect("name"),
            post_name: inst
                .exports
                .get_typed_function(&store, &format!("cabi_post_{f}"))
                .expect("post"),
            memory,
            store,
        }
    }

    fn name(&mut self) -> String {
        let ret = self.name.call(&mut self.store).expect("call");
        let view = self.memory.view(&self.store);
        let mut pair = [0u8; 8];
        view.read(ret as u32 as u64, &mut pair).expect("read");
        let (p, n) = (
            u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
            u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
        );
        let mut s = vec![0u8; n as usize];
        view.read(u64::from(p), &mut s).expect("read");
        let s = String::from_utf8(s).expect("utf-8");
        self.post_name.call(&mut self.store, ret).expect("post");
        s
    }
}

/// A bare wasmer engine for `compiler`: none of our middleware (no charge points, no
/// metering globals), so the floors are wasmer's own cost.
fn bare_engine(compiler: Compiler) -> wasmer::Engine {
    match compiler {
        Compiler::Singlepass => wasmer::sys::Singlepass::default().into(),
        Compiler::Cranelift => wasmer::sys::Cranelift::default().into(),
    }
}

/// What the bare-wasmer floors' host functions need of their instance.
#[derive(Default)]
struct BareEnv {
    memory: Option<Memory>,
    realloc: Option<TypedFunction<(i32, i32, i32, i32), i32>>,
}

/// Bare wasmer: a canonical plugin with no-op stubs for every import except the ones
/// `typed` defines (module, name, function), and the minimum of canonical-ABI work per
/// call done by hand (the floor of the same call shape, without our host).
struct Bare {
    store: Store,
    memory: Memory,
    realloc: TypedFunction<(i32, i32, i32, i32), i32>,
    instance: Instance,
}

impl Bare {
    fn new(
        compiler: Compiler,
        plugin: &str,
        typed: impl FnOnce(
            &mut Store,
            &FunctionEnv<BareEnv>,
        ) -> Vec<(&'static str, &'static str, Function)>,
    ) -> Self {
        let e = bare_engine(compiler);
        let module = Module::new(&e, common::plugin_wasm(plugin)).expect("compiles");
        let mut store = Store::new(e);
        let env = FunctionEnv::new(&mut store, BareEnv::default());
        let mut imports = Imports::new();
        for import in module.imports() {
            if let wasmer::ExternType::Function(ty) = import.ty() {
                let results: Vec<Value> = ty
                    .results()
                    .iter()
                    .map(|t| match t {
                        wasmer::Type::I64 => Value::I64(0),
                        wasmer::Type::F32 => Value::F32(0.0),
                        wasmer::Type::F64 => Value::F64(0.0),
                        _ => Value::I32(0),
                    })
                    .collect();
                let f = Function::new(&mut store, ty.clone(), move |_| Ok(results.clone()));
                imports.define(import.module(), import.name(), f);
            }
        }
        for (m, n, f) in typed(&mut store, &env) {
            imports.define(m, n, f);
        }
        let instance = Instance::new(&mut store, &module, &imports).expect("instance");
        let memory = instance
            .exports
            .get_memory("memory")
            .expect("memory")
            .clone();
        let realloc: TypedFunction<(i32, i32, i32, i32), i32> = instance
            .exports
            .get_typed_function(&store, "cabi_realloc")
            .expect("realloc");
        let data = env.as_mut(&mut store);
        data.memory = Some(memory.clone());
        data.realloc = Some(realloc.clone());
        Bare {
            store,
            memory,
            realloc,
            instance,
        }
    }

    fn func<A: wasmer::WasmTypeList, R: wasmer::WasmTypeList>(
        &self,
        name: &str,
    ) -> TypedFunction<A, R> {
        self.instance
            .exports
            .get_typed_function(&self.store, name)
            .expect("export")
    }

    /// A string copied into the guest (cabi_realloc): its pointer and length.
    fn lower_str(&mut self, s: &str) -> (i32, i32) {
        let p = self
            .realloc
            .call(&mut self.store, 0, 0, 1, s.len() as i32)
            .expect("realloc");
        self.memory
            .view(&self.store)
            .write(p as u32 as u64, s.as_bytes())
            .expect("write");
        (p, s.len() as i32)
    }

    fn read_u32(&self, at: i32) -> u32 {
        let mut b = [0u8; 4];
        self.memory
            .view(&self.store)
            .read(at as u32 as u64, &mut b)
            .expect("read");
        u32::from_le_bytes(b)
    }

    /// The string whose (pointer, length) pair is at `at`.
    fn lift_str(&self, at: i32) -> String {
        let (p, n) = (self.read_u32(at), self.read_u32(at + 4));
        let mut s = vec![0u8; n as usize];
        self.memory
            .view(&self.store)
            .read(u64::from(p), &mut s)
            .expect("read");
        String::from_utf8(s).expect("utf-8")
    }
}

/// `echo-string` of the conformance plugin on bare wasmer.
struct BareEcho {
    bare: Bare,
    echo: TypedFunction<(i32, i32), i32>,
    post: TypedFunction<i32, ()>,
}

impl BareEcho {
    fn new(compiler: Compiler) -> Self {
        let bare = Bare::new(compiler, "conformance", |_, _| Vec::new());
        let f = "tark:plugin/conformance#echo-string";
        BareEcho {
            echo: bare.func(f),
            post: bare.func(&format!("cabi_post_{f}")),
            bare,
        }
    }

    fn echo(&mut self, s: &str) -> String {
        let (p, l) = self.bare.lower_str(s);
        let ret = self.echo.call(&mut self.bare.store, p, l).expect("call");
        let out = self.bare.lift_str(ret);
        self.post.call(&mut self.bare.store, ret).expect("post");
        out
    }
}

/// The bench hook's `on-event` on bare wasmer, with `storage.get` answering a hit the
/// cheapest way (a realloc and two writes) and `log.*` doing nothing.
struct BareHook {
    bare: Bare,
    on_event: TypedFunction<(i32, i32, i32, i32, i32), i32>,
    post: TypedFunction<i32, ()>,
}

fn bare_storage_get(mut env: FunctionEnvMut<BareEnv>, _kp: i32, _kl: i32, ret: i32) {
    let (data, mut store) = env.data_and_store_mut();
    let (Some(memory), Some(realloc)) = (data.memory.clone(), data.realloc.clone()) else {
        return;
    };
    let v = BENCH_VALUE.as_bytes();
    let p = realloc
        .call(&mut store, 0, 0, 1, v.len() as i32)
        .unwrap_or(0);
    let view = memory.view(&store);
    let _ = view.write(p as u32 as u64, v);
    let mut area = [0u8; 12];
    area[0] = 1;
    area[4..8].copy_from_slice(&(p as u32).to_le_bytes());
    area[8..12].copy_from_slice(&(v.len() as u32).to_le_bytes());
    let _ = view.write(ret as u32 as u64, &area);
}

impl BareHook {
    fn new(compiler: Compiler) -> Self {
        let bare = Bare::new(compiler, "bench-hook", |store, env| {
            let log = |store: &mut Store| Function::new_typed(store, |_: i32, _: i32| {});
            vec![
                ("tark:plugin/log", "debug", log(store)),
                ("tark:plugin/log", "warn", log(store)),
                (
                    "tark:plugin/storage",
                    "get",
                    Function::new_typed_with_env(store, env, bare_storage_get),
                ),
            ]
        });
        let f = "tark:plugin/hook-plugin#on-event";
        BareHook {
            on_event: bare.func(f),
            post: bare.func(&format!("cabi_post_{f}")),
            bare,
        }
    }

    /// `on-event(kind 0, workload, payload)`: the decision's discriminant.
    fn on_event(&mut self, workload: &str, payload: &str) -> u8 {
        let (wp, wl) = self.bare.lower_str(workload);
        let (pp, pl) = self.bare.lower_str(payload);
        let ret = self
            .on_event
            .call(&mut self.bare.store, 0, wp, wl, pp, pl)
            .expect("call");
        let disc = self.bare.read_u32(ret) as u8;
        self.post.call(&mut self.bare.store, ret).expect("post");
        disc
    }
}

/// A conformance instance on a wasmtime peer.
#[cfg(feature = "bench-wasmtime")]
macro_rules! wasmtime_conformance {
    ($wt:ident) => {{
        let e = common::$wt::engine(false);
        let m = common::$wt::compile(&e, &common::plugin_wasm("conformance")).expect("compiles");
        let linker = common::$wt::linker(&e, &m).expect("linker");
        common::$wt::Conformance::new(&e, &linker, &m).expect("instance")
    }};
}

/// Bare wasmer: the legacy bench module with typed no-op host functions.
struct LegacyFloor {
    store: Store,
    trivial: TypedFunction<(), i32>,
    log_loop: TypedFunction<(), i32>,
    get_loop: TypedFunction<(), i32>,
}

impl LegacyFloor {
    fn new(compiler: Compiler) -> Self {
        let e = bare_engine(compiler);
        let module = Module::new(&e, common::legacy_bench_wasm()).expect("compiles");
        let mut store = Store::new(e);
        let env = FunctionEnv::new(&mut store, BareEnv::default());
        // A hit answered the cheapest way: the value copied to the guest's buffer.
        fn get(env: FunctionEnvMut<BareEnv>, _kp: i32, _kl: i32, ret: i32) -> i32 {
            let Some(memory) = env.data().memory.clone() else {
                return -1;
            };
            let v = BENCH_VALUE.as_bytes();
            match memory.view(&env).write(ret as u32 as u64, v) {
                Ok(()) => v.len() as i32,
                Err(_) => -1,
            }
        }
        let imports = imports! {
            "tark:storage" => {
                "get" => Function::new_typed_with_env(&mut store, &env, get),
            },
            "tark:log" => {
                "debug" => Function::new_typed(&mut store, |_: i32, _: i32| {}),
            },
        };
        let inst = Instance::new(&mut store, &module, &imports).expect("instance");
        env.as_mut(&mut store).memory =
            Some(inst.exports.get_memory("memory").expect("memory").clone());
        LegacyFloor {
            trivial: inst
                .exports
                .get_typed_function(&store, "bench_trivial")
                .expect("export"),
            log_loop: inst
                .exports
                .get_typed_function(&store, "bench_log_debug_1000")
                .expect("export"),
            get_loop: inst
                .exports
                .get_typed_function(&store, "bench_storage_get_1000")
                .expect("export"),
            store,
        }
    }
}

fn latency(c: &mut Criterion) {
    let mut hosts = Hosts::new();
    let metering = default_metering();

    // Legacy: an S-convention export returning a constant.
    let mut g = c.benchmark_group("call/legacy-trivial");
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "bench-legacy");
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| {
                p.legacy_code(black_box("bench_trivial"), None)
                    .expect("call")
            })
        });
    }
    for comp in compilers() {
        let mut floor = LegacyFloor::new(comp);
        g.bench_function(format!("{comp}-floor"), |b| {
            b.iter(|| floor.trivial.call(&mut floor.store).expect("call"))
        });
    }
    wasmtime_legacy(&mut g, "bench_trivial");
    g.finish();

    // Canonical: `name() -> string` with post-return (the trivial string-returning export).
    let mut g = c.benchmark_group("call/canonical-name");
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "bench-hook");
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| p.call_canonical("hook-plugin", "name", &[]).expect("call"))
        });
    }
    for comp in compilers() {
        let mut floor = Floor::new(comp);
        assert_eq!(floor.name(), "Bench Hook");
        g.bench_function(format!("{comp}-floor"), |b| b.iter(|| floor.name()));
    }
    #[cfg(feature = "bench-wasmtime")]
    {
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                let e = common::$wt::engine(false);
                let m =
                    common::$wt::compile(&e, &common::plugin_wasm("bench-hook")).expect("compiles");
                let linker = common::$wt::linker(&e, &m).expect("linker");
                let mut h = common::$wt::Hook::new(&e, &linker, &m).expect("instance");
                assert_eq!(h.name().expect("name"), "Bench Hook");
                g.bench_function($label, |b| b.iter(|| h.name().expect("name")));
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
    }
    g.finish();

    // The same through the typed API (JSON mapping on top).
    let mut g = c.benchmark_group("call/canonical-name-typed-api");
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "bench-hook");
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| p.hook_name().expect("call"))
        });
    }
    // The same call shape on bare wasmer (a string lifted, post-return).
    for comp in compilers() {
        let mut floor = Floor::new(comp);
        g.bench_function(format!("{comp}-floor"), |b| b.iter(|| floor.name()));
    }
    g.finish();

    // A hook event with two short strings in, a variant out (the typical hook call).
    let mut g = c.benchmark_group("call/canonical-on-event-noop");
    let ev = [event("noop", "{}")];
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "bench-hook");
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| {
                p.call_canonical("hook-plugin", "on-event", &ev)
                    .expect("call")
            })
        });
    }
    for comp in compilers() {
        let mut floor = BareHook::new(comp);
        assert_eq!(floor.on_event("noop", "{}"), 0, "allow");
        g.bench_function(format!("{comp}-floor"), |b| {
            b.iter(|| floor.on_event(black_box("noop"), "{}"))
        });
    }
    wasmtime_hook(&mut g, "noop", "{}");
    g.finish();

    // The same event through the typed API (`hook_on_event`: the record lowered straight
    // into the guest, the variant lifted straight back; tark's call shape).
    let mut g = c.benchmark_group("call/canonical-on-event-typed-api");
    let typed_ev = HookEvent {
        kind: HookEventKind::SessionStart,
        session_id: "noop".into(),
        payload_json: "{}".into(),
    };
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "bench-hook");
        assert_eq!(
            p.hook_on_event(&typed_ev).expect("call"),
            HookDecision::Allow
        );
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| p.hook_on_event(black_box(&typed_ev)).expect("call"))
        });
    }
    for comp in compilers() {
        let mut floor = BareHook::new(comp);
        g.bench_function(format!("{comp}-floor"), |b| {
            b.iter(|| floor.on_event(black_box("noop"), "{}"))
        });
    }
    g.finish();

    // A record of 11 flat values in (past the 6 `i32` of the old fast shapes), a record
    // with lists out: chat-channel's `handle-webhook` answering a bad body with 400.
    let mut g = c.benchmark_group("call/canonical-webhook-typed-api");
    let req = WebhookRequest {
        method: "POST".into(),
        path: "/hook".into(),
        query: Some("a=1".into()),
        headers: vec![("content-type".into(), "text/plain".into())],
        body: "x".into(),
    };
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "chat-channel");
        assert_eq!(p.channel_handle_webhook(&req).expect("call").status, 400);
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| p.channel_handle_webhook(black_box(&req)).expect("call"))
        });
    }
    g.finish();

    // A short string through `echo-string` (lowered and lifted, post-return).
    let mut g = c.benchmark_group("call/canonical-echo-short-string");
    let arg = [Val::String("hello, tark!".into())];
    for (comp, host) in &mut hosts.hosts {
        let p = plugin(host, "conformance");
        g.bench_function(label(*comp, metering), |b| {
            b.iter(|| {
                p.call_canonical("conformance", "echo-string", &arg)
                    .expect("call")
            })
        });
    }
    for comp in compilers() {
        let mut floor = BareEcho::new(comp);
        assert_eq!(floor.echo("hello, tark!"), "hello, tark!");
        g.bench_function(format!("{comp}-floor"), |b| {
            b.iter(|| floor.echo(black_box("hello, tark!")))
        });
    }
    #[cfg(feature = "bench-wasmtime")]
    {
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                let mut conf = wasmtime_conformance!($wt);
                g.bench_function($label, |b| {
                    b.iter(|| conf.echo_string(black_box("hello, tark!")).expect("call"))
                });
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
    }
    g.finish();

    // The storage service alone (no wasm): what every `storage.get` import pays.
    let mut g = c.benchmark_group("host/storage-get-service");
    if let Some((_, host)) = hosts.hosts.first_mut() {
        let ctx = plugin(host, "bench-hook").context().clone();
        g.bench_function("PluginContext::storage_get", |b| {
            b.iter(|| ctx.storage_get(black_box(BENCH_KEY)).expect("get"))
        });
    }
    g.finish();

    // Guest -> host imports, 1000 per call.
    for (what, export, workload) in [
        ("storage-get", "bench_storage_get_1000", "storage-get"),
        ("log-debug", "bench_log_debug_1000", "log-debug"),
    ] {
        let mut g = c.benchmark_group(format!("import-x1000/legacy-{what}"));
        g.throughput(Throughput::Elements(u64::from(LOOP)));
        for (comp, host) in &mut hosts.hosts {
            let p = plugin(host, "bench-legacy");
            if what == "storage-get" {
                assert_eq!(p.legacy_code(export, None).expect("call"), LOOP as i32);
            }
            g.bench_function(label(*comp, metering), |b| {
                b.iter(|| p.legacy_code(export, None).expect("call"))
            });
        }
        for comp in compilers() {
            let mut floor = LegacyFloor::new(comp);
            let f = if what == "log-debug" {
                floor.log_loop.clone()
            } else {
                floor.get_loop.clone()
            };
            if what == "storage-get" {
                assert_eq!(f.call(&mut floor.store).expect("call"), LOOP as i32);
            }
            g.bench_function(format!("{comp}-floor"), |b| {
                b.iter(|| f.call(&mut floor.store).expect("call"))
            });
        }
        wasmtime_legacy(&mut g, export);
        g.finish();

        let mut g = c.benchmark_group(format!("import-x1000/canonical-{what}"));
        g.throughput(Throughput::Elements(u64::from(LOOP)));
        let ev = [event(workload, &LOOP.to_string())];
        for (comp, host) in &mut hosts.hosts {
            let p = plugin(host, "bench-hook");
            let out = p
                .call_canonical("hook-plugin", "on-event", &ev)
                .expect("call");
            assert!(is_allow(&out), "{workload}: {out:?}");
            g.bench_function(label(*comp, metering), |b| {
                b.iter(|| {
                    p.call_canonical("hook-plugin", "on-event", &ev)
                        .expect("call")
                })
            });
        }
        let loops = LOOP.to_string();
        for comp in compilers() {
            let mut floor = BareHook::new(comp);
            assert_eq!(floor.on_event(workload, &loops), 0, "{workload}: allow");
            g.bench_function(format!("{comp}-floor"), |b| {
                b.iter(|| floor.on_event(workload, &loops))
            });
        }
        wasmtime_hook(&mut g, workload, &LOOP.to_string());
        g.finish();
    }

    // Canonical imports beyond the hot two (typed host functions answering at a return
    // pointer): `storage.list-keys` (a list of strings allocated in the guest) and
    // `env.get` of an unset granted name; 1000 per call, from a WAT guest loop.
    for (what, workload) in [("list-keys", "list-keys"), ("env-get", "env-get")] {
        let mut g = c.benchmark_group(format!("import-x1000/canonical-{what}"));
        g.throughput(Throughput::Elements(u64::from(LOOP)));
        let ev = HookEvent {
            kind: HookEventKind::SessionStart,
            session_id: workload.into(),
            payload_json: String::new(),
        };
        for (comp, host) in &mut hosts.hosts {
            let p = plugin(host, "bench-imports");
            assert_eq!(p.hook_on_event(&ev).expect("call"), HookDecision::Allow);
            g.bench_function(label(*comp, metering), |b| {
                b.iter(|| p.hook_on_event(black_box(&ev)).expect("call"))
            });
        }
        g.finish();
    }
}

/// The legacy bench module's `export` on the wasmtime peers.
fn wasmtime_legacy(_g: &mut BenchmarkGroup<'_, WallTime>, _export: &str) {
    #[cfg(feature = "bench-wasmtime")]
    {
        let wasm = common::legacy_bench_wasm();
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                let e = common::$wt::engine(false);
                let m = common::$wt::compile(&e, &wasm).expect("compiles");
                let linker = common::$wt::linker(&e, &m).expect("linker");
                let mut l =
                    common::$wt::Legacy::new(&e, &linker, &m, &[_export]).expect("instance");
                l.guest
                    .store
                    .data_mut()
                    .storage
                    .insert(BENCH_KEY.into(), BENCH_VALUE.into());
                let f = l.get(_export).expect("export");
                if _export.contains("storage") {
                    assert_eq!(l.call(&f).expect("call"), LOOP as i32);
                }
                _g.bench_function($label, |b| b.iter(|| l.call(&f).expect("call")));
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
    }
}

/// The bench hook's `on-event(workload, payload)` on the wasmtime peers.
fn wasmtime_hook(_g: &mut BenchmarkGroup<'_, WallTime>, _workload: &str, _payload: &str) {
    #[cfg(feature = "bench-wasmtime")]
    {
        let wasm = common::plugin_wasm("bench-hook");
        macro_rules! peer {
            ($wt:ident, $label:expr) => {
                let e = common::$wt::engine(false);
                let m = common::$wt::compile(&e, &wasm).expect("compiles");
                let linker = common::$wt::linker(&e, &m).expect("linker");
                let mut h = common::$wt::Hook::new(&e, &linker, &m).expect("instance");
                h.guest
                    .store
                    .data_mut()
                    .storage
                    .insert(BENCH_KEY.into(), BENCH_VALUE.into());
                let out = h.on_event(0, _workload, _payload).expect("call");
                assert_eq!(out.0, 0, "{_workload}: {out:?}");
                _g.bench_function($label, |b| {
                    b.iter(|| h.on_event(0, black_box(_workload), _payload).expect("call"))
                });
            };
        }
        peer!(wt27, "wasmtime27");
        peer!(wt48, "wasmtime48");
    }
}

fn marshalling(c: &mut Criterion) {
    let mut hosts = Hosts::new();
    let metering = default_metering();
    #[cfg(feature = "bench-wasmtime")]
    let (mut c27, mut c48) = (wasmtime_conformance!(wt27), wasmtime_conformance!(wt48));
    for &(size, size_name) in common::SIZES {
        let s = common::payload_string(size);
        let bytes = s.clone().into_bytes();
        let list = common::payload_strings(size);
        let list_val = Val::List(list.iter().cloned().map(Val::String).collect());
        for func in [
            "echo-string",
            "relay-string",
            "echo-bytes",
            "echo-strings",
            "relay-strings",
        ] {
            let arg = match func {
                "echo-bytes" => Val::Bytes(bytes.clone()),
                "echo-strings" | "relay-strings" => list_val.clone(),
                _ => Val::String(s.clone()),
            };
            let args = [arg];
            let mut g = c.benchmark_group(format!("marshal/{func}/{size_name}"));
            g.throughput(Throughput::Bytes(size as u64));
            for (comp, host) in &mut hosts.hosts {
                let p = plugin(host, "conformance");
                let out = p.call_canonical("conformance", func, &args).expect("call");
                assert_eq!(out.as_ref(), Some(&args[0]), "{func} round trip");
                g.bench_function(label(*comp, metering), |b| {
                    b.iter(|| p.call_canonical("conformance", func, &args).expect("call"))
                });
            }
            #[cfg(feature = "bench-wasmtime")]
            for (peer_label, conf) in [
                ("wasmtime27", &mut c27 as &mut dyn Marshal),
                ("wasmtime48", &mut c48),
            ] {
                conf.check(func, &s, &bytes, &list);
                g.bench_function(peer_label, |b| b.iter(|| conf.run(func, &s, &bytes, &list)));
            }
            g.finish();
        }
    }
}

/// The marshalling calls of a wasmtime peer, behind one interface for the loop above
/// (one dynamic call per iteration: noise next to copying 1 KiB - 1 MiB).
#[cfg(feature = "bench-wasmtime")]
trait Marshal {
    fn run(&mut self, func: &str, s: &str, bytes: &[u8], list: &[String]) -> usize;
    fn check(&mut self, func: &str, s: &str, bytes: &[u8], list: &[String]) {
        let want = match func {
            "echo-bytes" => bytes.len(),
            "echo-strings" | "relay-strings" => list.len(),
            _ => s.len(),
        };
        assert_eq!(self.run(func, s, bytes, list), want, "{func} round trip");
    }
}

#[cfg(feature = "bench-wasmtime")]
macro_rules! impl_marshal {
    ($wt:ident) => {
        impl Marshal for common::$wt::Conformance {
            fn run(&mut self, func: &str, s: &str, bytes: &[u8], list: &[String]) -> usize {
                match func {
                    "echo-string" => self.echo_string(s).expect("call").len(),
                    "relay-string" => self.relay_string(s).expect("call").len(),
                    "echo-bytes" => self.echo_bytes(bytes).expect("call").len(),
                    "echo-strings" => self.echo_strings(list).expect("call").len(),
                    "relay-strings" => self.relay_strings(list).expect("call").len(),
                    other => panic!("unknown function {other}"),
                }
            }
        }
    };
}
#[cfg(feature = "bench-wasmtime")]
impl_marshal!(wt27);
#[cfg(feature = "bench-wasmtime")]
impl_marshal!(wt48);

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = latency, marshalling
}
criterion_main!(benches);
