//! Guest-side limits and fault survival (legacy ABI spec §6.2 items 7-8, §6.4 item 17):
//! CPU budget (metering), wall-clock limit (watchdog + host interrupts), stack overflow,
//! memory cap (declared maximum and `memory.grow`), host panics in host functions.
//! After every breach the same plugin answers on a fresh instance and other plugins are
//! unaffected. Runs on both compilers.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::fixtures::{compilers, TestEnv};
use common::servers::HttpTestServer;
use tark_wasmer::engine::{Compiler, EngineSettings, WasmEngine};
use tark_wasmer::plugin::Message;
use tark_wasmer::CallError;
use tark_wasmer::InstantiateError;
use tark_wasmer::{Error, HostOptions, Limits, PluginHost};

/// A legacy guest with a bump allocator and exports that spin, recurse, grow memory or
/// do a known amount of work. Every export follows the S convention (`() -> i32`).
const GUEST: &str = r#"
(module
  (import "tark:log" "info" (func $log (param i32 i32)))
  (import "tark:storage" "get" (func $sget (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2 65536)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) "PANIC_IN_HOST_LOGGER")
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (global.set $heap (local.get $end))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow
        (i32.add (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                            (i32.const 65536)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "ok") (result i32) (i32.const 7))
  (func (export "take") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "pages") (result i32) (memory.size))
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  (func $rec (param $d i32) (result i32)
    (i32.add (call $rec (i32.add (local.get $d) (i32.const 1))) (i32.const 1)))
  (func (export "recurse") (result i32) (call $rec (i32.const 0)))
  (func (export "work") (result i32) (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000000))))
    (local.get $i))
  (func (export "grow_until_refused") (result i32)
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable)
  (func (export "try_grow_1000") (result i32) (memory.grow (i32.const 1000)))
  (func (export "spin_import") (result i32)
    (loop $l (call $log (i32.const 16) (i32.const 5)) (br $l))
    (i32.const 0))
  (func $fib (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "fib_huge") (result i32) (call $fib (i32.const 60)))
  (func (export "spin_storage") (result i32)
    (loop $l (drop (call $sget (i32.const 16) (i32.const 5) (i32.const 4096))) (br $l))
    (i32.const 0))
  (func (export "log_marker") (result i32)
    (call $log (i32.const 16) (i32.const 20))
    (i32.const 0))
)
"#;

/// A legacy plugin whose `alloc` never returns: the host calls it to pass any input.
const ALLOC_SPIN: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (loop $l (br $l)) (i32.const 1024))
  (func (export "take") (param i32 i32) (result i32) (i32.const 0))
)
"#;

/// A canonical tool plugin whose `cabi_realloc` never returns: the host calls it to
/// lower the tool name of `get-risk-level`.
const REALLOC_SPIN: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (loop $l (br $l)) (i32.const 1024))
  (func (export "tark:plugin/tool-plugin#get-risk-level") (param i32 i32) (result i32)
    (i32.const 0))
)
"#;

/// A second, well-behaved legacy plugin.
const HEALTHY: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ok") (result i32) (i32.const 42))
)
"#;

/// A legacy guest whose only export blocks in `tark:http.get` on the URL it was built with.
fn http_guest(url: &str) -> String {
    format!(
        r#"
(module
  (import "tark:http" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "{url}")
  (data (i32.const 512) "[]")
  (func (export "alloc") (param i32) (result i32) (i32.const 60000))
  (func (export "fetch") (result i32)
    (call $get (i32.const 16) (i32.const {len}) (i32.const 512) (i32.const 2) (i32.const 1024)))
)
"#,
        len = url.len()
    )
}

/// A canonical tool plugin: `get-risk-level(name)` spins for "spin", grows memory until
/// refused for "grow", logs the panic marker through `tark:plugin/log` for "panic", and
/// answers `risky` (2) otherwise.
const CANONICAL: &str = r#"
(module
  (import "tark:plugin/log" "info" (func $log (param i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "PANIC_IN_HOST_LOGGER")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (i32.add (local.get 3) (i32.const 8))))
    (local.get $p))
  (func (export "tark:plugin/tool-plugin#get-risk-level") (param $ptr i32) (param $len i32) (result i32)
    (local $c i32)
    (local.set $c (i32.load8_u (local.get $ptr)))
    (if (i32.eq (local.get $c) (i32.const 115)) (then (loop $l (br $l))))
    (if (i32.eq (local.get $c) (i32.const 103))
      (then (loop $g (br_if $g (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable))
    (if (i32.eq (local.get $c) (i32.const 112)) (then (call $log (i32.const 16) (i32.const 20))))
    (i32.const 2))
)
"#;

const MARKER: &str = "PANIC_IN_HOST_LOGGER";

/// A logger that panics when a plugin logs [`MARKER`]: a real panic inside a host
/// function (`tark:log.info` / `tark:plugin/log.info` call the `log` crate), without any
/// test hook in the library.
struct PanickyLogger;

impl log::Log for PanickyLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target() == "tark_wasmer::plugin" && record.args().to_string().ends_with(MARKER) {
            panic!("logger exploded");
        }
    }
    fn flush(&self) {}
}

fn install_panicky_logger() {
    static LOGGER: PanickyLogger = PanickyLogger;
    static SET: OnceLock<bool> = OnceLock::new();
    let ok = *SET.get_or_init(|| {
        let ok = log::set_logger(&LOGGER).is_ok();
        log::set_max_level(log::LevelFilter::Trace);
        ok
    });
    assert!(ok, "another logger was installed first");
}

fn host_with(
    env: &TestEnv,
    compiler: Compiler,
    limits: Limits,
    plugin_limits: &[(&str, Limits)],
) -> PluginHost {
    let mut config = env.config.clone();
    config.limits = limits;
    let plugin_limits: HashMap<String, Limits> = plugin_limits
        .iter()
        .map(|(id, l)| (id.to_string(), l.clone()))
        .collect();
    let mut host = PluginHost::with_options(HostOptions {
        plugins_dir: Some(env.plugins_dir.clone()),
        compiler: Some(compiler),
        config,
        plugin_limits,
        ..Default::default()
    })
    .expect("host");
    let failures = host.load_all();
    assert!(failures.is_empty(), "plugins failed to load: {failures:?}");
    host
}

fn guest_env() -> TestEnv {
    let env = TestEnv::new();
    env.install_wat("guest", "provider", "", GUEST);
    env.install_wat("healthy", "provider", "", HEALTHY);
    env
}

fn code(host: &mut PluginHost, id: &str, f: &str) -> i32 {
    host.get_mut(id)
        .expect("loaded")
        .legacy_code(f, None)
        .unwrap_or_else(|e| panic!("{id} {f} failed: {e}"))
}

fn call_err<T: std::fmt::Debug>(r: tark_wasmer::Result<T>) -> CallError {
    match r {
        Err(Error::Call { source, .. }) => source,
        other => panic!("expected a call error, got {other:?}"),
    }
}

fn guest_err(host: &mut PluginHost, f: &str) -> CallError {
    call_err(host.get_mut("guest").expect("loaded").legacy_code(f, None))
}

fn instances(host: &PluginHost, id: &str) -> u64 {
    host.get(id).expect("loaded").instances_created()
}

/// The guest answers normally on a fresh instance, and the healthy plugin never needed
/// a second one.
fn assert_recovered(host: &mut PluginHost, instances_before: u64) {
    assert_eq!(code(host, "guest", "ok"), 7);
    assert_eq!(instances(host, "guest"), instances_before + 1);
    assert_eq!(code(host, "healthy", "ok"), 42);
    assert_eq!(instances(host, "healthy"), 1);
}

fn no_wall_clock(cpu_time: Duration) -> Limits {
    Limits {
        cpu_time,
        call_time_limit: None,
        ..Limits::default()
    }
}

/// CPU time of the calling thread (Linux: `CLOCK_THREAD_CPUTIME_ID`): what a CPU budget
/// bounds, whatever else runs on the machine. Elsewhere: None.
fn thread_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: a valid clock id and a valid out-pointer.
        let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        Some(Duration::new(
            u64::try_from(ts.sec).expect("seconds"),
            u32::try_from(ts.nsec).expect("nanoseconds"),
        ))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// One runaway case under the default limits: its name and what it does on a host.
type Runaway = (&'static str, fn(Compiler) -> String);

fn runaway_env(id: &str, ty: &str, wat: &str) -> TestEnv {
    let env = TestEnv::new();
    env.install_wat(id, ty, "storage = true", wat);
    env
}

fn runaway_legacy(compiler: Compiler, id: &str, wat: &str, f: &str, input: Option<&str>) -> String {
    let env = runaway_env(id, "provider", wat);
    let mut host = host_with(&env, compiler, Limits::default(), &[]);
    match host.get_mut(id).expect("loaded").legacy_code(f, input) {
        Err(e) => e.to_string(),
        Ok(n) => panic!("{compiler} {id} {f}: returned {n}"),
    }
}

const RUNAWAYS: &[Runaway] = &[
    ("loop br 0", |c| {
        runaway_legacy(c, "guest", GUEST, "spin", None)
    }),
    ("loop calling log.info", |c| {
        runaway_legacy(c, "guest", GUEST, "spin_import", None)
    }),
    ("loop calling storage.get", |c| {
        runaway_legacy(c, "guest", GUEST, "spin_storage", None)
    }),
    ("recursion without loops", |c| {
        runaway_legacy(c, "guest", GUEST, "fib_huge", None)
    }),
    ("deep recursion", |c| {
        runaway_legacy(c, "guest", GUEST, "recurse", None)
    }),
    ("loop in alloc", |c| {
        runaway_legacy(c, "allocspin", ALLOC_SPIN, "take", Some("input"))
    }),
    ("loop in cabi_realloc", |c| {
        let env = runaway_env("reallocspin", "tool", REALLOC_SPIN);
        let mut host = host_with(&env, c, Limits::default(), &[]);
        let p = host.get_mut("reallocspin").expect("loaded");
        call_err(p.tool_get_risk_level("some tool")).to_string()
    }),
    ("endless start function", |c| {
        let wat = r#"(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s)
                       (func (export "ok") (result i32) (i32.const 1)))"#;
        let env = runaway_env("starter", "provider", wat);
        let mut host = host_with(&env, c, Limits::default(), &[]);
        match host
            .get_mut("starter")
            .expect("loaded")
            .legacy_code("ok", None)
        {
            Err(e) => e.to_string(),
            Ok(n) => panic!("{c}: returned {n}"),
        }
    }),
    ("endless _initialize", |c| {
        let wat = r#"(module (memory (export "memory") 1)
                       (func (export "_initialize") (loop $l (br $l)))
                       (func (export "ok") (result i32) (i32.const 1)))"#;
        let env = runaway_env("reactor", "provider", wat);
        let mut host = host_with(&env, c, Limits::default(), &[]);
        match host
            .get_mut("reactor")
            .expect("loaded")
            .legacy_code("ok", None)
        {
            Err(e) => e.to_string(),
            Ok(n) => panic!("{c}: returned {n}"),
        }
    }),
];

/// Issue 11: with the default limits, every runaway case ends with a clear error within
/// 10 s of CPU on both compilers (the default budget is 5 s of the cheapest code per
/// point; everything else is charged more per second). The cases run concurrently, so
/// the test takes about the longest case's time times the oversubscription of the
/// cores; the bound is on each call's own thread CPU time, which load does not stretch.
/// Wall-clock time is only bounded by the default 120 s wall-clock limit: a CPU budget
/// error (not a time-limit error) proves the budget fired first.
#[test]
fn every_runaway_case_ends_with_a_clear_error_within_10_s_by_default() {
    let defaults = Limits::default();
    assert_eq!(defaults.cpu_time, Duration::from_secs(5));
    let mut threads = Vec::new();
    for compiler in compilers() {
        for &(case, run) in RUNAWAYS {
            threads.push(
                std::thread::Builder::new()
                    .name(format!("{compiler} {case}"))
                    // Room for the host's own frames around a guest that overflows.
                    .stack_size(8 << 20)
                    .spawn(move || {
                        let cpu = thread_cpu_time();
                        let wall = std::time::Instant::now();
                        let message = run(compiler);
                        let cpu = thread_cpu_time().zip(cpu).map(|(b, a)| b - a);
                        (compiler, case, message, cpu, wall.elapsed())
                    })
                    .expect("spawn"),
            );
        }
    }
    let mut report = Vec::new();
    for t in threads {
        let (compiler, case, message, cpu, wall) = t.join().expect("case thread");
        report.push(format!(
            "{compiler} {case}: cpu {cpu:?} wall {wall:?}: {message}"
        ));
        let expected = match case {
            "deep recursion" => "stack",
            "loop in cabi_realloc" => {
                "exceeded its CPU budget of 5 s in tark:plugin/tool-plugin#get-risk-level"
            }
            "loop in alloc" => "exceeded its CPU budget of 5 s in take",
            "endless start function" => "exceeded its CPU budget of 5 s in start",
            "endless _initialize" => "exceeded its CPU budget of 5 s in _initialize",
            "loop br 0" => "exceeded its CPU budget of 5 s in spin",
            "loop calling log.info" => "exceeded its CPU budget of 5 s in spin_import",
            "loop calling storage.get" => "exceeded its CPU budget of 5 s in spin_storage",
            "recursion without loops" => "exceeded its CPU budget of 5 s in fib_huge",
            other => panic!("unknown case {other}"),
        };
        assert!(
            message.contains(expected),
            "{compiler} {case}: {message:?} should say {expected:?}"
        );
        if let Some(cpu) = cpu {
            assert!(
                cpu <= Duration::from_secs(12),
                "{compiler} {case}: stopped after {cpu:?} of CPU: {message}"
            );
        }
    }
    // The measured times, for the record (`cargo test -- --nocapture`).
    println!("{}", report.join("\n"));
}

/// `[limits]` in plugin.toml replaces the host's values for that plugin, capped at the
/// host's `plugin_max`; host-set per-plugin limits are the base the manifest applies to.
#[test]
fn plugin_toml_limits_apply_up_to_the_host_maximum() {
    let compiler = compilers()[0];
    let env = TestEnv::new();
    let lowered = "[limits]\ncpu_seconds = 0.02\nmemory_mb = 8";
    env.install_wat("modest", "provider", lowered, GUEST);
    let greedy = "[limits]\ncpu_seconds = 3600";
    env.install_wat("greedy", "provider", greedy, GUEST);
    let host_limits = Limits {
        plugin_max: tark_wasmer::limits::PluginMax {
            cpu_time: Duration::from_millis(50),
            ..Default::default()
        },
        ..Limits::default()
    };
    let mut host = host_with(&env, compiler, host_limits, &[]);
    let e = call_err(
        host.get_mut("modest")
            .expect("loaded")
            .legacy_code("spin", None),
    );
    assert_eq!(
        e.to_string(),
        "plugin modest exceeded its CPU budget of 0.02 s in spin"
    );
    let e = call_err(
        host.get_mut("modest")
            .expect("loaded")
            .legacy_code("grow_until_refused", None),
    );
    assert!(e.to_string().contains("memory limit of 8 MiB"), "{e}");
    // 3600 s asked, 0.05 s allowed by this host.
    let e = call_err(
        host.get_mut("greedy")
            .expect("loaded")
            .legacy_code("spin", None),
    );
    assert_eq!(
        e.to_string(),
        "plugin greedy exceeded its CPU budget of 0.05 s in spin"
    );
    // A host-set per-plugin limit is the base: its own maximum caps the manifest.
    let per_plugin = Limits {
        plugin_max: tark_wasmer::limits::PluginMax {
            cpu_time: Duration::from_millis(30),
            ..Default::default()
        },
        ..Limits::default()
    };
    let mut host = host_with(&env, compiler, Limits::default(), &[("greedy", per_plugin)]);
    let e = call_err(
        host.get_mut("greedy")
            .expect("loaded")
            .legacy_code("spin", None),
    );
    assert_eq!(
        e.to_string(),
        "plugin greedy exceeded its CPU budget of 0.03 s in spin"
    );
}

#[test]
fn an_infinite_loop_ends_with_the_cpu_budget_error() {
    for compiler in compilers() {
        let env = guest_env();
        // Metering alone (no wall clock) must stop it.
        let mut host = host_with(
            &env,
            compiler,
            no_wall_clock(Duration::from_millis(20)),
            &[],
        );
        assert_eq!(code(&mut host, "healthy", "ok"), 42);
        assert_eq!(code(&mut host, "guest", "ok"), 7);
        let e = guest_err(&mut host, "spin");
        assert_eq!(
            e,
            CallError::CpuBudget {
                plugin: "guest".into(),
                function: "spin".into(),
                limit: Duration::from_millis(20),
            }
        );
        assert_eq!(
            e.to_string(),
            "plugin guest exceeded its CPU budget of 0.02 s in spin"
        );
        assert!(e.poisons_instance());
        assert_recovered(&mut host, 1);
        // The budget is per call: the fresh instance can spin out again, and again recover.
        let e = guest_err(&mut host, "spin");
        assert!(matches!(e, CallError::CpuBudget { .. }), "{compiler}: {e}");
        assert_recovered(&mut host, 2);
    }
}

#[test]
fn the_budget_is_reset_before_each_call_and_overridable_per_plugin() {
    for compiler in compilers() {
        let env = guest_env();
        // `work` runs a million iterations of 8 operators and a charge: about 2.4 ms at
        // the reference speed (2.4 G points).
        let mut host = host_with(&env, compiler, no_wall_clock(Duration::from_millis(1)), &[]);
        let e = guest_err(&mut host, "work");
        assert_eq!(
            e.to_string(),
            "plugin guest exceeded its CPU budget of 0.001 s in work"
        );
        let mut host = host_with(
            &env,
            compiler,
            no_wall_clock(Duration::from_millis(1)),
            &[("guest", no_wall_clock(Duration::from_millis(5)))],
        );
        // Ten calls of 2.4 ms each fit because each call gets the full budget.
        for _ in 0..10 {
            assert_eq!(code(&mut host, "guest", "work"), 1_000_000);
        }
        assert_eq!(instances(&host, "guest"), 1);
        // The host-wide budget still applies to the plugin without an override.
        assert_eq!(code(&mut host, "healthy", "ok"), 42);
    }
}

#[test]
fn a_loop_with_a_huge_budget_ends_at_the_wall_clock_limit() {
    for compiler in compilers() {
        let env = guest_env();
        let limits = Limits {
            cpu_time: Duration::MAX,
            call_time_limit: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, limits, &[]);
        let e = guest_err(&mut host, "spin");
        assert_eq!(
            e.to_string(),
            "plugin guest exceeded its time limit of 1 s in spin",
            "{compiler}"
        );
        assert!(e.poisons_instance());
        assert_recovered(&mut host, 1);
    }
}

/// The deadline stops every shape of runaway guest code on every compiler, within a
/// generous bound of the limit: a `loop br 0`, a loop around a cheap host function and a
/// call-heavy recursion without any loop (`fib(60)`), with and without metering.
#[test]
fn a_short_wall_clock_limit_stops_loops_import_loops_and_recursion() {
    for compiler in compilers() {
        let env = guest_env();
        for cpu_metering in [true, false] {
            let limits = Limits {
                cpu_metering,
                cpu_time: Duration::MAX,
                call_time_limit: Some(Duration::from_millis(200)),
                ..Limits::default()
            };
            let mut host = host_with(&env, compiler, limits, &[]);
            for (n, f) in ["spin", "spin_import", "fib_huge"].into_iter().enumerate() {
                let started = std::time::Instant::now();
                let e = guest_err(&mut host, f);
                let took = started.elapsed();
                assert_eq!(
                    e.to_string(),
                    format!("plugin guest exceeded its time limit of 0.2 s in {f}"),
                    "{compiler} metering={cpu_metering}"
                );
                assert!(
                    took >= Duration::from_millis(200) && took < Duration::from_secs(3),
                    "{compiler} metering={cpu_metering} {f}: stopped after {took:?}"
                );
                assert_recovered(&mut host, n as u64 + 1);
            }
        }
    }
}

#[test]
fn without_metering_the_wall_clock_limit_still_stops_a_loop() {
    for compiler in compilers() {
        let env = guest_env();
        let unmetered = Limits {
            cpu_metering: false,
            call_time_limit: Some(Duration::from_millis(500)),
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, Limits::default(), &[("guest", unmetered)]);
        let e = guest_err(&mut host, "spin");
        assert_eq!(
            e.to_string(),
            "plugin guest exceeded its time limit of 0.5 s in spin",
            "{compiler}"
        );
        assert_recovered(&mut host, 1);
    }
}

#[test]
fn engines_are_shared_per_compiler_and_code_affecting_settings() {
    for compiler in compilers() {
        let on = EngineSettings { metering: true };
        let off = EngineSettings { metering: false };
        let a = WasmEngine::shared_with(compiler, on).expect("engine");
        let b = WasmEngine::shared_with(compiler, on).expect("engine");
        let c = WasmEngine::shared_with(compiler, off).expect("engine");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(a.settings(), on);
        assert_eq!(c.settings(), off);
        assert_ne!(a.settings_fingerprint(), c.settings_fingerprint());
        assert!(a.settings_fingerprint().starts_with(compiler.as_str()));
        assert!(c.settings_fingerprint().contains("metering=off"));
        // Metering is the default.
        assert!(Arc::ptr_eq(
            &WasmEngine::shared(compiler).expect("engine"),
            &a
        ));
        // Many modules compile on one metered engine (wasmer's own Metering panics on
        // the second module of an engine).
        for i in 0..3 {
            let wasm = wat::parse_str(format!(
                "(module (global i32 (i32.const {i})) (func (export \"f\") (result i32) i32.const {i}))"
            ))
            .expect("wat");
            a.compile("m", &wasm).expect("compiles");
        }
    }
}

#[test]
fn time_blocked_in_host_functions_costs_no_cpu_budget() {
    let srv = HttpTestServer::start();
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_wat(
            "fetcher",
            "provider",
            "http = [\"127.0.0.1\"]",
            &http_guest(&srv.url("/slow/700")),
        );
        // A budget far too small for 0.7 s of guest execution.
        let mut host = host_with(&env, compiler, no_wall_clock(Duration::from_millis(1)), &[]);
        for _ in 0..2 {
            let n = code(&mut host, "fetcher", "fetch");
            assert!(n > 0, "{compiler}: http.get returned {n}");
        }
        assert_eq!(instances(&host, "fetcher"), 1);
    }
}

#[test]
fn a_call_blocked_in_a_host_function_past_its_deadline_fails_when_it_returns() {
    let srv = HttpTestServer::start();
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_wat(
            "fetcher",
            "provider",
            "http = [\"127.0.0.1\"]",
            &http_guest(&srv.url("/slow/2500")),
        );
        let limits = Limits {
            call_time_limit: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, limits, &[]);
        let e = call_err(
            host.get_mut("fetcher")
                .expect("loaded")
                .legacy_code("fetch", None),
        );
        assert_eq!(
            e.to_string(),
            "plugin fetcher exceeded its time limit of 1 s in fetch",
            "{compiler}"
        );
    }
}

#[test]
fn deep_recursion_is_a_clean_stack_overflow_trap() {
    for compiler in compilers() {
        let env = guest_env();
        let mut host = host_with(&env, compiler, Limits::default(), &[]);
        let e = guest_err(&mut host, "recurse");
        match &e {
            CallError::Trap { function, message } => {
                assert_eq!(function, "recurse");
                assert!(message.contains("stack"), "{compiler}: {message}");
            }
            other => panic!("{compiler}: expected a trap, got {other}"),
        }
        assert!(e.poisons_instance());
        assert_recovered(&mut host, 1);
    }
}

#[test]
fn memory_grow_stops_at_the_limit_with_a_clean_error() {
    for compiler in compilers() {
        let env = guest_env();
        let capped = Limits {
            memory_max: 16 * 1024 * 1024,
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, Limits::default(), &[("guest", capped)]);
        assert_eq!(code(&mut host, "guest", "pages"), 2);
        // The module declares a maximum of 65536 pages; the cap (256 pages) wins.
        assert_eq!(code(&mut host, "guest", "try_grow_1000"), -1);
        assert_eq!(code(&mut host, "guest", "pages"), 2);
        let e = guest_err(&mut host, "grow_until_refused");
        match &e {
            CallError::MemoryLimit {
                plugin,
                function,
                max_bytes,
                message,
            } => {
                assert_eq!(plugin, "guest");
                assert_eq!(function, "grow_until_refused");
                assert_eq!(*max_bytes, 16 * 1024 * 1024);
                assert!(message.contains("unreachable"), "{compiler}: {message}");
            }
            other => panic!("{compiler}: expected a memory-limit error, got {other}"),
        }
        assert!(e
            .to_string()
            .starts_with("plugin guest reached its memory limit of 16 MiB in grow_until_refused:"));
        assert!(e.poisons_instance());
        assert_recovered(&mut host, 1);
        // The fresh instance starts from the module's initial memory again.
        assert_eq!(code(&mut host, "guest", "pages"), 2);
        // Host allocations hit the cap too: an input larger than it cannot be passed in.
        let big = "x".repeat(20 * 1024 * 1024);
        let p = host.get_mut("guest").expect("loaded");
        let e = call_err(p.legacy_text_with_input("take", &big));
        assert!(
            matches!(e, CallError::MemoryLimit { .. }),
            "{compiler}: {e}"
        );
        assert_eq!(code(&mut host, "guest", "ok"), 7);
    }
}

#[test]
fn a_huge_initial_memory_is_refused_cleanly() {
    for compiler in compilers() {
        let env = TestEnv::new();
        // 8192 pages = 512 MiB, above the 256 MiB default.
        env.install_wat(
            "hog",
            "provider",
            "",
            r#"(module (memory (export "memory") 8192) (func (export "ok") (result i32) (i32.const 1)))"#,
        );
        env.install_wat("healthy", "provider", "", HEALTHY);
        let mut host = host_with(&env, compiler, Limits::default(), &[]);
        for _ in 0..2 {
            match host.get_mut("hog").expect("loaded").legacy_code("ok", None) {
                Err(Error::Instantiate {
                    source: e @ InstantiateError::MemoryTooLarge { .. },
                    ..
                }) => assert_eq!(
                    e.to_string(),
                    "plugin hog declares an initial linear memory of 8192 pages (512 MiB), above its memory limit of 256 MiB"
                ),
                other => panic!("{compiler}: expected MemoryTooLarge, got {other:?}"),
            }
        }
        assert_eq!(code(&mut host, "healthy", "ok"), 42);
        // With a larger per-plugin limit the same module runs.
        let roomy = Limits {
            memory_max: 1024 * 1024 * 1024,
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, Limits::default(), &[("hog", roomy)]);
        assert_eq!(code(&mut host, "hog", "ok"), 1);
    }
}

#[test]
fn start_functions_and_initialize_are_limited_too() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_wat(
            "starter",
            "provider",
            "",
            r#"(module (memory (export "memory") 1) (func $s (loop $l (br $l))) (start $s)
                 (func (export "ok") (result i32) (i32.const 1)))"#,
        );
        env.install_wat(
            "reactor",
            "provider",
            "",
            r#"(module (memory (export "memory") 1)
                 (func (export "_initialize") (loop $l (br $l)))
                 (func (export "ok") (result i32) (i32.const 1)))"#,
        );
        env.install_wat("healthy", "provider", "", HEALTHY);
        let starter = Limits {
            call_time_limit: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let mut host = host_with(
            &env,
            compiler,
            Limits::default(),
            &[
                ("starter", starter),
                ("reactor", no_wall_clock(Duration::from_millis(10))),
            ],
        );
        match host
            .get_mut("starter")
            .expect("loaded")
            .legacy_code("ok", None)
        {
            Err(Error::Instantiate {
                source: InstantiateError::Limit(e),
                ..
            }) => assert_eq!(
                e.to_string(),
                "plugin starter exceeded its time limit of 1 s in start",
                "{compiler}"
            ),
            other => panic!("{compiler}: expected a time limit, got {other:?}"),
        }
        match host
            .get_mut("reactor")
            .expect("loaded")
            .legacy_code("ok", None)
        {
            Err(Error::Instantiate {
                source: InstantiateError::Limit(e),
                ..
            }) => assert_eq!(
                e.to_string(),
                "plugin reactor exceeded its CPU budget of 0.01 s in _initialize",
                "{compiler}"
            ),
            other => panic!("{compiler}: expected a CPU budget error, got {other:?}"),
        }
        assert_eq!(code(&mut host, "healthy", "ok"), 42);
    }
}

#[test]
fn a_panic_in_a_host_function_is_caught_and_the_instance_replaced() {
    install_panicky_logger();
    for compiler in compilers() {
        // Legacy ABI: `tark:log.info`.
        let env = guest_env();
        let mut host = host_with(&env, compiler, Limits::default(), &[]);
        let e = guest_err(&mut host, "log_marker");
        match &e {
            CallError::Trap { function, message } => {
                assert_eq!(function, "log_marker");
                assert!(
                    message.contains("host panic: logger exploded"),
                    "{compiler}: {message}"
                );
            }
            other => panic!("{compiler}: expected a trap, got {other}"),
        }
        assert_recovered(&mut host, 1);

        // Canonical ABI: `tark:plugin/log.info`.
        let env = TestEnv::new();
        env.install_wat("canon", "tool", "", CANONICAL);
        let mut host = host_with(&env, compiler, Limits::default(), &[]);
        let p = host.get_mut("canon").expect("loaded");
        let e = call_err(p.tool_get_risk_level("panic"));
        assert!(
            e.to_string().contains("host panic: logger exploded"),
            "{compiler}: {e}"
        );
        assert!(e.poisons_instance());
        assert_eq!(
            p.tool_get_risk_level("fine").expect("fresh instance"),
            tark_wasmer::plugin::RiskLevel::Risky
        );
        assert_eq!(p.instances_created(), 2);
    }
}

#[test]
fn canonical_plugins_get_the_same_limits() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_wat("canon", "tool", "", CANONICAL);
        let limits = Limits {
            cpu_time: Duration::from_millis(20),
            call_time_limit: None,
            memory_max: 8 * 1024 * 1024,
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, limits, &[]);
        let p = host.get_mut("canon").expect("loaded");
        let e = call_err(p.tool_get_risk_level("spin"));
        assert_eq!(
            e.to_string(),
            "plugin canon exceeded its CPU budget of 0.02 s in tark:plugin/tool-plugin#get-risk-level"
        );
        assert_eq!(
            p.tool_get_risk_level("x").expect("fresh"),
            tark_wasmer::plugin::RiskLevel::Risky
        );
        let e = call_err(p.tool_get_risk_level("grow"));
        assert!(
            e.to_string().starts_with(
                "plugin canon reached its memory limit of 8 MiB in tark:plugin/tool-plugin#get-risk-level:"
            ),
            "{compiler}: {e}"
        );
        assert_eq!(
            p.tool_get_risk_level("x").expect("fresh"),
            tark_wasmer::plugin::RiskLevel::Risky
        );
        assert_eq!(p.instances_created(), 3);
        let limits = Limits {
            cpu_time: Duration::MAX,
            call_time_limit: Some(Duration::from_secs(1)),
            ..Limits::default()
        };
        let mut host = host_with(&env, compiler, limits, &[]);
        let p = host.get_mut("canon").expect("loaded");
        let e = call_err(p.tool_get_risk_level("spin"));
        assert_eq!(
            e.to_string(),
            "plugin canon exceeded its time limit of 1 s in tark:plugin/tool-plugin#get-risk-level"
        );
        assert_eq!(
            p.tool_get_risk_level("x").expect("fresh"),
            tark_wasmer::plugin::RiskLevel::Risky
        );
    }
}

#[test]
fn a_looping_plugin_does_not_disturb_a_healthy_one_on_another_thread() {
    for compiler in compilers() {
        let env = Arc::new(guest_env());
        let done = Arc::new(AtomicBool::new(false));
        let looper = {
            let env = env.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let limits = Limits {
                    cpu_time: Duration::MAX,
                    call_time_limit: Some(Duration::from_secs(2)),
                    ..Limits::default()
                };
                let mut host = host_with(&env, compiler, limits, &[]);
                let e = guest_err(&mut host, "spin");
                done.store(true, Ordering::SeqCst);
                assert_eq!(
                    e.to_string(),
                    "plugin guest exceeded its time limit of 2 s in spin"
                );
                assert_eq!(code(&mut host, "guest", "ok"), 7);
            })
        };
        // Same process, same engines and watchdog, another host and thread.
        let mut host = host_with(&env, compiler, Limits::default(), &[]);
        let mut calls = 0u32;
        loop {
            assert_eq!(code(&mut host, "healthy", "ok"), 42);
            assert_eq!(code(&mut host, "guest", "work"), 1_000_000);
            calls += 1;
            if done.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        looper.join().expect("looping thread");
        assert!(calls >= 1);
        assert_eq!(instances(&host, "healthy"), 1);
        assert_eq!(instances(&host, "guest"), 1);
    }
}

#[test]
fn the_legacy_provider_loop_model_ends_with_the_cpu_budget_error() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_example("legacy-provider");
        let budget = Limits {
            cpu_time: Duration::from_millis(200),
            call_time_limit: None,
            ..Limits::default()
        };
        let mut host = host_with(
            &env,
            compiler,
            Limits::default(),
            &[("legacy-provider", budget)],
        );
        let p = host.get_mut("legacy-provider").expect("loaded");
        let msgs = vec![Message {
            role: tark_wasmer::plugin::Role::User,
            content: "hello".into(),
        }];
        let e = call_err(p.provider_chat(&msgs, "loop"));
        assert_eq!(
            e.to_string(),
            "plugin legacy-provider exceeded its CPU budget of 0.2 s in provider_chat",
            "{compiler}"
        );
        let answer = p
            .provider_chat(&msgs, "echo")
            .expect("fresh instance answers");
        assert_eq!(answer.text, "hello");
        assert_eq!(p.instances_created(), 2);
    }
}

/// The CLI's limit flags reach the host: a looping plugin call ends with the budget or
/// time-limit error on stderr and exit status 1.
#[test]
fn cli_limit_flags_stop_a_looping_call() {
    common::fixtures::ensure_plugins_built();
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_tark-wasmer");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .arg("--plugins-dir")
            .arg(tmp.path().join("plugins"))
            .arg("--cache-dir")
            .arg(tmp.path().join("cache"))
            .args(args)
            .output()
            .expect("run tark-wasmer")
    };
    let src = common::fixtures::example_plugin_dir("legacy-provider");
    let add = run(&["plugin", "add", src.to_str().expect("utf-8 path")]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let msgs = r#"[{"role":"user","content":"x"}]"#;
    let out = run(&[
        "--cpu-seconds",
        "0.05",
        "call",
        "legacy-provider",
        "chat",
        msgs,
        "loop",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin legacy-provider exceeded its CPU budget of 0.05 s in provider_chat"),
        "{err}"
    );
    let out = run(&[
        "--no-metering",
        "--time-limit",
        "0.5",
        "call",
        "legacy-provider",
        "chat",
        msgs,
        "loop",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin legacy-provider exceeded its time limit of 0.5 s in provider_chat"),
        "{err}"
    );
    let out = run(&["--time-limit=-1", "call", "legacy-provider", "info"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time-limit must be"));
}
