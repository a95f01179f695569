//! Support shared by the benches: criterion settings, the example plugins (built from
//! source by `scripts/build-plugins.sh`), a host on a temporary plugins directory, and,
//! with the feature `bench-wasmtime`, the wasmtime peers (`wt27`, `wt48`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::Criterion;
use tark_wasmer::engine::Compiler;
use tark_wasmer::registry::{InstallSource, PluginRegistry};
use tark_wasmer::HostConfig;
use tark_wasmer::{HostOptions, PluginHost};

/// wasmtime 27.0.0, the version tark uses.
#[cfg(feature = "bench-wasmtime")]
pub mod wt27 {
    use wasmtime27 as wasmtime;
    include!("wasmtime_harness.rs");
}

/// The newest wasmtime this toolchain and lock file can build (see Cargo.toml).
#[cfg(feature = "bench-wasmtime")]
pub mod wt48 {
    include!("wasmtime_harness.rs");
}

/// Is this a short run (`TARK_BENCH_QUICK=1`, set by `scripts/bench.sh --quick`)?
pub fn quick() -> bool {
    std::env::var_os("TARK_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Criterion with short runs: the whole suite must stay under ~20 minutes on 2 cores.
pub fn criterion() -> Criterion {
    let (warm, measure) = if quick() { (100, 400) } else { (300, 1200) };
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(warm))
        .measurement_time(Duration::from_millis(measure))
        .without_plots()
        .configure_from_args()
}

/// The compilers of this build, and their names in bench ids.
pub fn compilers() -> Vec<Compiler> {
    Compiler::available()
}

/// Name of one of our engines in bench ids: the compiler, `+metering` when operator
/// metering is compiled in (the wasmtime peers are `wasmtime27` and `wasmtime48`).
pub fn label(compiler: Compiler, metering: bool) -> String {
    if metering {
        format!("{compiler}+metering")
    } else {
        compiler.to_string()
    }
}

/// Whether a default host meters (label of the host-level benches).
pub fn default_metering() -> bool {
    tark_wasmer::Limits::default().cpu_metering
}

/// Repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory of an example plugin crate.
pub fn plugin_dir(name: &str) -> PathBuf {
    repo_root().join("tests/plugins").join(name)
}

/// Build the example plugins once per process (a fast no-op when up to date).
pub fn ensure_plugins_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("scripts/build-plugins.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// The wasm bytes of an example plugin.
pub fn plugin_wasm(name: &str) -> Vec<u8> {
    ensure_plugins_built();
    let path = plugin_dir(name).join("plugin.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The storage key the bench loops read, and its value.
pub const BENCH_KEY: &str = "bench-key";
/// See [`BENCH_KEY`].
pub const BENCH_VALUE: &str = "bench-value-0123456789abcdef";

/// How many host calls one loop export makes (per-call cost = loop time / this).
pub const LOOP: u32 = 1000;

/// A legacy-ABI bench module: a trivial export, and loops of 1000 host calls
/// (`tark:storage.get` hits, `tark:log.debug`), all S convention `() -> i32`.
pub const LEGACY_BENCH_WAT: &str = r#"(module
  (import "tark:storage" "get" (func $get (param i32 i32 i32) (result i32)))
  (import "tark:log" "debug" (func $debug (param i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "bench-key")
  (data (i32.const 64) "bench: a debug line below the host's log level")
  (func (export "bench_trivial") (result i32) i32.const 1)
  (func (export "bench_storage_get_1000") (result i32) (local $i i32) (local $hits i32)
    (loop $l
      (if (i32.gt_s (call $get (i32.const 16) (i32.const 9) (i32.const 1024)) (i32.const 0))
        (then (local.set $hits (i32.add (local.get $hits) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    local.get $hits)
  (func (export "bench_log_debug_1000") (result i32) (local $i i32)
    (loop $l
      (call $debug (i32.const 64) (i32.const 46))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    i32.const 0))"#;

/// The legacy bench module's wasm bytes.
pub fn legacy_bench_wasm() -> Vec<u8> {
    wat::parse_str(LEGACY_BENCH_WAT).expect("valid WAT")
}

/// A canonical hook-world module whose `on-event` calls one import `LOOP` times (the
/// session id names it: `list-keys` = `storage.list-keys()`, `env-get` =
/// `env.get("BENCH_UNSET")`) and answers `allow`. Its `cabi_realloc` is a bump allocator
/// reset at every event, so the host's answers never exhaust memory.
pub const IMPORT_LOOP_WAT: &str = r#"(module
  (import "tark:plugin/storage" "list-keys" (func $keys (param i32)))
  (import "tark:plugin/env" "get" (func $env (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "BENCH_UNSET")
  (data (i32.const 1024) "\00")
  (global $heap (mut i32) (i32.const 32768))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))
  (func (export "tark:plugin/hook-plugin#name") (result i32) (i32.const 64))
  (func (export "cabi_post_tark:plugin/hook-plugin#name") (param i32))
  (func (export "tark:plugin/hook-plugin#on-event")
    (param i32) (param $sp i32) (param $sl i32) (param i32 i32) (result i32)
    (local $i i32)
    (global.set $heap (i32.const 32768))
    (local.set $i (i32.const 1000))
    (if (i32.eq (local.get $sl) (i32.const 9))
      (then (loop $l
        (call $keys (i32.const 512))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br_if $l (local.get $i))))
      (else (loop $l
        (call $env (i32.const 16) (i32.const 11) (i32.const 512))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br_if $l (local.get $i)))))
    (i32.const 1024))
  (func (export "cabi_post_tark:plugin/hook-plugin#on-event") (param i32)))"#;

/// A temporary plugins directory with plugins installed, and hosts on it.
pub struct BenchEnv {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// `<tmp>/plugins`.
    pub plugins_dir: PathBuf,
    /// Host settings.
    pub config: HostConfig,
}

impl BenchEnv {
    /// An empty plugins directory.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plugins_dir = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        let mut config = HostConfig::default();
        config.policy.workspace_root = tmp.path().to_path_buf();
        config.policy.home_dir = Some(tmp.path().join("home"));
        BenchEnv {
            tmp,
            plugins_dir,
            config,
        }
    }

    fn install(&self, src: &Path) {
        let mut reg = PluginRegistry::new(&self.plugins_dir);
        reg.scan().expect("scan");
        let source = InstallSource::local(src).expect("install source");
        reg.install_from_dir(src, source, false).expect("install");
    }

    /// Install example plugins (built first).
    pub fn with_examples(self, names: &[&str]) -> Self {
        ensure_plugins_built();
        for n in names {
            self.install(&plugin_dir(n));
        }
        self
    }

    /// Install the legacy bench module as plugin `bench-legacy`.
    pub fn with_legacy_bench(self) -> Self {
        let src = self.tmp.path().join("src/bench-legacy");
        std::fs::create_dir_all(&src).expect("dir");
        std::fs::write(
            src.join("plugin.toml"),
            "[plugin]\nname = \"bench-legacy\"\nversion = \"0.1.0\"\ntype = \"auth\"\nwasm = \"plugin.wasm\"\n\n[capabilities]\nstorage = true\n",
        )
        .expect("manifest");
        std::fs::write(src.join("plugin.wasm"), legacy_bench_wasm()).expect("wasm");
        self.install(&src);
        self
    }

    /// Install the canonical import-loop module (`IMPORT_LOOP_WAT`) as plugin
    /// `bench-imports` (hook world; storage and `BENCH_*` environment names granted).
    pub fn with_import_loop(self) -> Self {
        let src = self.tmp.path().join("src/bench-imports");
        std::fs::create_dir_all(&src).expect("dir");
        std::fs::write(
            src.join("plugin.toml"),
            "[plugin]\nname = \"bench-imports\"\nversion = \"0.1.0\"\ntype = \"hook\"\nwasm = \"plugin.wasm\"\n\n[capabilities]\nstorage = true\nenv = [\"BENCH_*\"]\n",
        )
        .expect("manifest");
        let wasm = wat::parse_str(IMPORT_LOOP_WAT).expect("valid WAT");
        std::fs::write(src.join("plugin.wasm"), wasm).expect("wasm");
        self.install(&src);
        self
    }

    /// A host with `compiler` and every installed plugin loaded.
    pub fn host(&self, compiler: Compiler) -> PluginHost {
        let mut host = PluginHost::with_options(HostOptions {
            plugins_dir: Some(self.plugins_dir.clone()),
            compiler: Some(compiler),
            config: self.config.clone(),
            // The benches' own artifact cache, never the user's.
            cache: tark_wasmer::cache::CacheConfig {
                dir: Some(self.tmp.path().join("cache")),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("host");
        let failures = host.load_all();
        assert!(failures.is_empty(), "plugins failed to load: {failures:?}");
        host
    }
}

/// A string of `len` bytes (ASCII, varied, so nothing can shortcut it).
pub fn payload_string(len: usize) -> String {
    (0..len)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// A `list<string>` of 64-byte strings totalling `len` bytes.
pub fn payload_strings(len: usize) -> Vec<String> {
    let s = payload_string(64);
    vec![s; (len / 64).max(1)]
}

/// Sizes of the marshalling benches: 1 KiB, 64 KiB, 1 MiB.
pub const SIZES: &[(usize, &str)] = &[(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];
