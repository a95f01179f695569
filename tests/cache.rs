//! The on-disk artifact cache end to end: real modules (the example legacy-provider plugin
//! and WAT plugins) under both compilers, hits across engines and processes, every kind of
//! damaged file rejected and recompiled with the plugin still running, two processes
//! filling one cache at once, eviction under the limit, `cache stats`/`cache clear` and
//! `--no-cache` through the real binary.
//!
//! Hits and misses are asserted through [`CacheOutcome`], the cache's counters and the
//! binary's debug log lines, never through timing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::fixtures::{compilers, ensure_plugins_built, example_plugin_dir, TestEnv};
use tark_wasmer::cache::{ArtifactCache, CacheConfig, CacheOutcome, Rejection, HEADER_LEN};
use tark_wasmer::engine::{Compiler, WasmEngine};
use tark_wasmer::{HostOptions, PluginHost};

const PROVIDER: &str = "legacy-provider";

/// The example provider's wasm bytes.
fn provider_wasm() -> Vec<u8> {
    ensure_plugins_built();
    fs::read(example_plugin_dir(PROVIDER).join("plugin.wasm")).expect("provider wasm")
}

/// A legacy auth plugin whose `display_name` is the single character `tag` (so every test
/// gets a module of its own, never compiled before in this process).
fn auth_wat(tag: char) -> String {
    format!(
        r#"(module
  (memory (export "memory") 64)
  (global $next (mut i32) (i32.const 4096))
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "status") (result i32) (i32.const 1))
  (func (export "display_name") (param $out i32) (result i32)
    (i32.store8 (local.get $out) (i32.const {code}))
    (i32.const 1)))"#,
        code = u32::from(tag)
    )
}

/// All entry files (`*.art`) of a cache directory, sorted.
fn entry_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "art"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Every file name in a directory (to check that nothing else, e.g. a temp file, is left).
fn all_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn outcome_of(engine: &WasmEngine, wasm: &[u8], cache: &ArtifactCache) -> CacheOutcome {
    engine
        .compile_cached("t", wasm, Some(cache))
        .map(|(_, o)| o)
        .expect("compiles")
}

#[test]
fn second_load_is_a_disk_hit_under_both_compilers() {
    let wasm = provider_wasm();
    for compiler in compilers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path().join("artifacts"), 512 << 20);
        let first = WasmEngine::new(compiler).expect("engine");
        let (compiled, outcome) = first
            .compile_cached(PROVIDER, &wasm, Some(&cache))
            .expect("compiles");
        assert_eq!(outcome, CacheOutcome::Miss { stored: true }, "{compiler}");
        let (_, outcome) = first
            .compile_cached(PROVIDER, &wasm, Some(&cache))
            .expect("compiles");
        assert_eq!(outcome, CacheOutcome::Memory, "{compiler}");
        // A new engine (as in a new process) loads the artifact from disk.
        let second = WasmEngine::new(compiler).expect("engine");
        let (loaded, outcome) = second
            .compile_cached(PROVIDER, &wasm, Some(&cache))
            .expect("loads");
        assert_eq!(outcome, CacheOutcome::DiskHit, "{compiler}");
        let names = |m: &wasmer::Module| {
            m.exports()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&loaded.module), names(&compiled.module), "{compiler}");
        assert_eq!(loaded.hash, compiled.hash);
        assert!(loaded.custom_sections == compiled.custom_sections);
        let c = cache.counters();
        assert_eq!(
            (c.hits, c.misses, c.stored, c.rejected),
            (1, 1, 1, 0),
            "{compiler}"
        );
        assert_eq!(entry_files(cache.dir()).len(), 1, "{compiler}");
    }
    // The other compiler's artifact is a different entry, not a hit.
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ArtifactCache::new(dir.path(), 512 << 20);
    let sp = WasmEngine::new(Compiler::Singlepass).expect("engine");
    let cl = WasmEngine::new(Compiler::Cranelift).expect("engine");
    assert_eq!(
        outcome_of(&sp, &wasm, &cache),
        CacheOutcome::Miss { stored: true }
    );
    assert_eq!(
        outcome_of(&cl, &wasm, &cache),
        CacheOutcome::Miss { stored: true }
    );
    assert_eq!(entry_files(dir.path()).len(), 2);
}

/// One damaged-file case: `damage` gets the entry file (and the path of another valid
/// entry); the plugin is then loaded through a real [`PluginHost`] and must be recompiled,
/// still run, and leave a valid entry behind.
fn damaged_entry_is_rejected(tag: char, expect: fn(&Rejection) -> bool, damage: fn(&Path, &Path)) {
    for compiler in compilers() {
        let env = TestEnv::new();
        let id = format!("cache-auth-{}", u32::from(tag));
        env.install_wat(&id, "auth", "", &auth_wat(tag));
        let wasm_path = env.plugins_dir.join(&id).join("plugin.wasm");
        let wasm = fs::read(&wasm_path).expect("wasm");
        let cache_dir = env.tmp.path().join("cache");
        let cache = ArtifactCache::new(&cache_dir, 512 << 20);
        // Fill the cache from a separate engine (the host's shared engine never saw it).
        let filler = WasmEngine::new(compiler).expect("engine");
        let (compiled, _) = filler
            .compile_cached(&id, &wasm, Some(&cache))
            .expect("compiles");
        let entry = cache.entry_path(&filler.cache_key(&compiled.hash));
        assert!(entry.is_file());
        // Another key's valid entry, for the "renamed into place" case.
        let other_wasm = wat::parse_str(auth_wat('#')).expect("wat");
        let (other, _) = filler
            .compile_cached("other", &other_wasm, Some(&cache))
            .expect("compiles");
        let other_entry = cache.entry_path(&filler.cache_key(&other.hash));
        damage(&entry, &other_entry);

        let mut host = PluginHost::with_options(HostOptions {
            plugins_dir: Some(env.plugins_dir.clone()),
            compiler: Some(compiler),
            config: env.config.clone(),
            cache: CacheConfig {
                dir: Some(cache_dir.clone()),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("host");
        host.load_id(&id)
            .expect("loads despite the damaged cache file");
        match host.cache_outcome(&id) {
            Some(CacheOutcome::Rejected { reason, stored }) => {
                assert!(
                    expect(reason),
                    "{compiler} {tag}: unexpected reason {reason:?}"
                );
                assert!(*stored, "{compiler} {tag}: not overwritten");
            }
            other => panic!("{compiler} {tag}: expected a rejection, got {other:?}"),
        }
        let counters = host
            .artifact_cache()
            .map(|c| c.counters())
            .unwrap_or_default();
        assert_eq!(
            (counters.rejected, counters.stored),
            (1, 1),
            "{compiler} {tag}"
        );
        let p = host.get_mut(&id).expect("loaded");
        assert_eq!(
            p.auth_display_name().expect("runs"),
            tag.to_string(),
            "{compiler}"
        );
        // The entry was overwritten with a valid one: a new engine hits it.
        let fresh = WasmEngine::new(compiler).expect("engine");
        assert_eq!(
            outcome_of(&fresh, &wasm, &cache),
            CacheOutcome::DiskHit,
            "{compiler} {tag}"
        );
        assert!(!all_names(&cache_dir).iter().any(|n| n.starts_with(".tmp")));
    }
}

#[test]
fn truncated_file_is_rejected_and_recompiled() {
    damaged_entry_is_rejected(
        'T',
        |r| matches!(r, Rejection::LengthMismatch { .. }),
        |entry, _| {
            let bytes = fs::read(entry).expect("read");
            fs::write(entry, &bytes[..bytes.len() / 2]).expect("truncate");
        },
    );
}

#[test]
fn flipped_payload_byte_is_rejected_and_recompiled() {
    damaged_entry_is_rejected(
        'P',
        |r| *r == Rejection::HashMismatch,
        |entry, _| {
            let mut bytes = fs::read(entry).expect("read");
            let i = HEADER_LEN + (bytes.len() - HEADER_LEN) / 3;
            bytes[i] ^= 0x10;
            fs::write(entry, &bytes).expect("write");
        },
    );
}

#[test]
fn flipped_header_byte_is_rejected_and_recompiled() {
    // Byte 60 lies in the payload hash field of the header.
    damaged_entry_is_rejected(
        'H',
        |r| *r == Rejection::HashMismatch,
        |entry, _| {
            let mut bytes = fs::read(entry).expect("read");
            bytes[60] ^= 0x01;
            fs::write(entry, &bytes).expect("write");
        },
    );
    // Byte 2 lies in the magic.
    damaged_entry_is_rejected(
        'M',
        |r| *r == Rejection::BadMagic,
        |entry, _| {
            let mut bytes = fs::read(entry).expect("read");
            bytes[2] ^= 0x01;
            fs::write(entry, &bytes).expect("write");
        },
    );
}

#[test]
fn file_of_another_key_renamed_into_place_is_rejected() {
    damaged_entry_is_rejected(
        'K',
        |r| *r == Rejection::WrongKey,
        |entry, other| fs::rename(other, entry).expect("rename"),
    );
}

#[test]
fn zero_length_file_is_rejected_and_recompiled() {
    damaged_entry_is_rejected(
        'Z',
        |r| *r == Rejection::Truncated { len: 0 },
        |entry, _| fs::write(entry, b"").expect("write"),
    );
}

#[test]
fn eviction_keeps_the_total_under_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = WasmEngine::new(Compiler::Singlepass).expect("engine");
    let probe = ArtifactCache::new(dir.path().join("probe"), 512 << 20);
    let one = wat::parse_str(auth_wat('a')).expect("wat");
    outcome_of(&engine, &one, &probe);
    let entry_size = entry_files(probe.dir())
        .first()
        .and_then(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .expect("one entry");
    // Room for about two and a half entries.
    let limit = entry_size * 5 / 2;
    let cache = ArtifactCache::new(dir.path().join("bounded"), limit);
    for (i, tag) in "bcdefg".chars().enumerate() {
        let wasm = wat::parse_str(auth_wat(tag)).expect("wat");
        let fresh = WasmEngine::new(Compiler::Singlepass).expect("engine");
        assert_eq!(
            outcome_of(&fresh, &wasm, &cache),
            CacheOutcome::Miss { stored: true }
        );
        let stats = cache.stats().expect("stats");
        assert!(
            stats.total_bytes <= limit,
            "after {i}: {stats:?} over {limit}"
        );
        assert!(stats.entries <= 2, "after {i}: {stats:?}");
    }
    assert!(cache.counters().evicted >= 4, "{:?}", cache.counters());
    // The newest entry survived, the oldest did not.
    let newest = wat::parse_str(auth_wat('g')).expect("wat");
    let oldest = wat::parse_str(auth_wat('b')).expect("wat");
    let fresh = WasmEngine::new(Compiler::Singlepass).expect("engine");
    assert_eq!(outcome_of(&fresh, &newest, &cache), CacheOutcome::DiskHit);
    assert!(matches!(
        outcome_of(&fresh, &oldest, &cache),
        CacheOutcome::Miss { .. }
    ));
}

#[test]
fn engine_level_cache_serves_plain_compile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = std::sync::Arc::new(ArtifactCache::new(dir.path(), 512 << 20));
    let wasm = wat::parse_str(auth_wat('e')).expect("wat");
    let a = WasmEngine::new(Compiler::Singlepass)
        .expect("engine")
        .with_cache(Some(cache.clone()));
    a.compile("t", &wasm).expect("compiles");
    let b = WasmEngine::new(Compiler::Singlepass).expect("engine");
    b.set_cache(Some(cache.clone()));
    b.compile("t", &wasm).expect("loads");
    let c = cache.counters();
    assert_eq!((c.misses, c.stored, c.hits), (1, 1, 1));
    // Without a cache nothing is read or written.
    let none = WasmEngine::new(Compiler::Singlepass).expect("engine");
    let (_, outcome) = none.compile_cached("t", &wasm, None).expect("compiles");
    assert_eq!(outcome, CacheOutcome::Uncached);
    assert_eq!(cache.counters(), c);
}

// ---------------------------------------------------------------------------------------
// Through the binary (separate processes)
// ---------------------------------------------------------------------------------------

/// The binary with a clean environment for the variables it reads, debug logging of the
/// cache, and the plugins directory of `env`.
fn bin(env: &TestEnv) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
    for var in [
        "TARK_PLUGINS_DIR",
        "TARK_WASMER_COMPILER",
        "TARK_WASMER_CA_FILE",
        "TARK_WASMER_CACHE_DIR",
        "TARK_WASMER_CACHE_MAX_SIZE",
        "NO_COLOR",
        "CLICOLOR_FORCE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "tark_wasmer::cache=debug");
    cmd.current_dir(env.tmp.path());
    cmd.arg("--plugins-dir").arg(&env.plugins_dir);
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: Output) -> (String, String) {
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

fn provider_env() -> TestEnv {
    let env = TestEnv::new();
    env.install_example(PROVIDER);
    env
}

/// `call legacy-provider info` with `--cache-dir <cache>` and `compiler`.
fn call_info(env: &TestEnv, cache: &Path, compiler: Compiler) -> Command {
    let mut cmd = bin(env);
    cmd.arg("--compiler")
        .arg(compiler.as_str())
        .arg("--cache-dir")
        .arg(cache)
        .args(["call", PROVIDER, "info"]);
    cmd
}

#[test]
fn cli_second_process_hits_and_damaged_entry_is_recompiled() {
    let env = provider_env();
    for compiler in compilers() {
        let cache = env.tmp.path().join(format!("cache-{compiler}"));
        let (first, log) = ok(call_info(&env, &cache, compiler).output().expect("run"));
        assert!(first.contains("\"Legacy Provider\""), "{first}");
        assert!(
            log.contains("artifact cache miss: legacy-provider"),
            "{log}"
        );
        assert!(log.contains("artifact cache: stored"), "{log}");
        let (second, log) = ok(call_info(&env, &cache, compiler).output().expect("run"));
        assert_eq!(second, first);
        assert!(log.contains("artifact cache hit: legacy-provider"), "{log}");
        assert!(!log.contains("stored"), "{log}");
        // Damage the payload: the next process rejects it, recompiles and still answers.
        let entries = entry_files(&cache);
        assert_eq!(entries.len(), 1);
        let mut bytes = fs::read(&entries[0]).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&entries[0], &bytes).expect("write");
        let (third, log) = ok(call_info(&env, &cache, compiler).output().expect("run"));
        assert_eq!(third, first);
        assert!(
            log.contains("rejected") && log.contains("SHA-256 mismatch"),
            "{log}"
        );
        let (_, log) = ok(call_info(&env, &cache, compiler).output().expect("run"));
        assert!(log.contains("artifact cache hit: legacy-provider"), "{log}");
    }
}

fn spawn_piped(mut cmd: Command) -> std::process::Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn two_processes_filling_one_cache_at_once_both_succeed() {
    let env = provider_env();
    let wasm = provider_wasm();
    for compiler in compilers() {
        for round in 0..3 {
            let cache = env.tmp.path().join(format!("shared-{compiler}-{round}"));
            let a = spawn_piped(call_info(&env, &cache, compiler));
            let b = spawn_piped(call_info(&env, &cache, compiler));
            let (out_a, _) = ok(a.wait_with_output().expect("wait a"));
            let (out_b, _) = ok(b.wait_with_output().expect("wait b"));
            assert_eq!(out_a, out_b);
            assert!(out_a.contains("\"Legacy Provider\""), "{out_a}");
            // Exactly one entry and nothing half-written (besides the entry, only the
            // stamp records of src/cache.rs's trust rules 2 and 3).
            let all = all_names(&cache);
            assert!(!all.iter().any(|n| n.starts_with(".tmp")), "{all:?}");
            let names: Vec<&String> = all
                .iter()
                .filter(|n| !n.ends_with(".wasmid") && !n.ends_with(".art.ok"))
                .collect();
            assert_eq!(names.len(), 1, "{compiler} round {round}: {all:?}");
            assert!(names[0].ends_with(".art"), "{all:?}");
            let verify = ArtifactCache::new(&cache, 512 << 20);
            let fresh = WasmEngine::new(compiler).expect("engine");
            assert_eq!(outcome_of(&fresh, &wasm, &verify), CacheOutcome::DiskHit);
        }
    }
}

#[test]
fn cli_cache_stats_and_clear() {
    let env = provider_env();
    let cache = env.tmp.path().join("stats-cache");
    let stats = |extra: &[&str]| -> Value {
        let mut cmd = bin(&env);
        cmd.arg("--cache-dir")
            .arg(&cache)
            .args(extra)
            .args(["cache", "stats", "--json"]);
        let (out, _) = ok(cmd.output().expect("run"));
        serde_json::from_str(&out).expect("json")
    };
    let empty = stats(&[]);
    assert_eq!(empty["entries"], 0);
    assert_eq!(empty["total_bytes"], 0);
    assert_eq!(empty["limit_bytes"], 512u64 << 20);
    assert_eq!(empty["enabled"], true);
    assert_eq!(empty["dir"], cache.display().to_string());
    ok(call_info(&env, &cache, Compiler::Singlepass)
        .output()
        .expect("run"));
    ok(call_info(&env, &cache, Compiler::Cranelift)
        .output()
        .expect("run"));
    let files = entry_files(&cache);
    let size: u64 = files
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let full = stats(&["--cache-max-size", "64M"]);
    assert_eq!(full["entries"], 2);
    assert_eq!(full["total_bytes"], size);
    assert_eq!(full["limit_bytes"], 64u64 << 20);
    assert_eq!(stats(&["--no-cache"])["enabled"], false);
    // Text form.
    let mut cmd = bin(&env);
    cmd.env("NO_COLOR", "1")
        .arg("--cache-dir")
        .arg(&cache)
        .args(["cache", "stats"]);
    let (out, _) = ok(cmd.output().expect("run"));
    assert!(
        out.contains(&format!("Directory: {}", cache.display())),
        "{out}"
    );
    assert!(out.contains("Entries:   2"), "{out}");
    assert!(out.contains(&format!("({size} bytes)")), "{out}");
    assert!(out.contains("Limit:     512.0 MiB"), "{out}");
    // The environment variable names the same directory.
    let mut cmd = bin(&env);
    cmd.env("TARK_WASMER_CACHE_DIR", &cache)
        .args(["cache", "stats", "--json"]);
    let (out, _) = ok(cmd.output().expect("run"));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["entries"], 2);
    // Clear leaves other files alone.
    fs::write(cache.join("README"), "not ours").expect("write");
    let mut cmd = bin(&env);
    cmd.arg("--cache-dir").arg(&cache).args(["cache", "clear"]);
    let (out, _) = ok(cmd.output().expect("run"));
    assert!(out.starts_with("Removed 2 cached artifacts ("), "{out}");
    assert_eq!(stats(&[])["entries"], 0);
    assert_eq!(all_names(&cache), vec!["README".to_string()]);
    // An invalid size is a usage error.
    let mut cmd = bin(&env);
    cmd.args(["--cache-max-size", "lots", "cache", "stats"]);
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
}

#[test]
fn cli_no_cache_writes_nothing_and_env_dir_is_used() {
    let env = provider_env();
    let cache = env.tmp.path().join("never");
    for compiler in compilers() {
        // Global options go before `call` (after the function, everything is an argument
        // of the call).
        let mut cmd = bin(&env);
        cmd.arg("--no-cache")
            .arg("--compiler")
            .arg(compiler.as_str())
            .arg("--cache-dir")
            .arg(&cache)
            .args(["call", PROVIDER, "info"]);
        let (out, log) = ok(cmd.output().expect("run"));
        assert!(out.contains("\"Legacy Provider\""), "{out}");
        assert!(!log.contains("artifact cache"), "{log}");
    }
    assert!(!cache.exists(), "--no-cache created {}", cache.display());
    // Without --cache-dir, TARK_WASMER_CACHE_DIR decides where entries go.
    let from_env = env.tmp.path().join("from-env");
    let mut cmd = bin(&env);
    cmd.env("TARK_WASMER_CACHE_DIR", &from_env)
        .args(["call", PROVIDER, "info"]);
    ok(cmd.output().expect("run"));
    assert_eq!(entry_files(&from_env).len(), 1);
    // A limit smaller than the artifact: the plugin runs, nothing is stored.
    let tiny = env.tmp.path().join("tiny");
    let mut cmd = call_info(&env, &tiny, Compiler::Singlepass);
    cmd.env("TARK_WASMER_CACHE_MAX_SIZE", "1K");
    let (out, _) = ok(cmd.output().expect("run"));
    assert!(out.contains("\"Legacy Provider\""), "{out}");
    assert!(entry_files(&tiny).is_empty());
}

#[test]
fn first_call_after_plugin_add_and_update_does_not_compile() {
    ensure_plugins_built();
    let env = TestEnv::new();
    // A source directory of our own, so `update` can find a changed module there.
    let src = env.tmp.path().join("provider-src");
    fs::create_dir_all(&src).expect("mkdir");
    for f in ["plugin.toml", "plugin.wasm"] {
        fs::copy(example_plugin_dir(PROVIDER).join(f), src.join(f)).expect("copy");
    }
    let original = provider_wasm();
    for compiler in compilers() {
        fs::write(src.join("plugin.wasm"), &original).expect("write");
        let cache = env.tmp.path().join(format!("add-cache-{compiler}"));
        let with = |args: &[&str]| {
            let mut cmd = bin(&env);
            cmd.arg("--compiler")
                .arg(compiler.as_str())
                .arg("--cache-dir")
                .arg(&cache)
                .args(args)
                .stdin(Stdio::null());
            cmd
        };
        let (_, log) = ok(
            with(&["plugin", "add", src.to_str().expect("utf-8"), "--yes"])
                .output()
                .expect("run"),
        );
        // `add` compiled and stored the artifact for this compiler.
        assert!(log.contains("artifact cache: stored"), "{log}");
        assert_eq!(entry_files(&cache).len(), 1);
        let (first, log) = ok(with(&["call", PROVIDER, "info"]).output().expect("run"));
        assert!(first.contains("\"Legacy Provider\""), "{first}");
        assert!(log.contains("artifact cache hit: legacy-provider"), "{log}");
        assert!(!log.contains("miss") && !log.contains("stored"), "{log}");
        // A new module at the source (an extra custom section): `update` compiles it,
        // and the call after it again compiles nothing.
        let mut changed = original.clone();
        changed.extend_from_slice(&[0x00, 0x05, 0x04, b'n', b'e', b'x', b't']);
        fs::write(src.join("plugin.wasm"), &changed).expect("write");
        let (_, log) = ok(with(&["plugin", "update", PROVIDER]).output().expect("run"));
        assert!(log.contains("artifact cache: stored"), "{log}");
        assert_eq!(entry_files(&cache).len(), 2);
        let (second, log) = ok(with(&["call", PROVIDER, "info"]).output().expect("run"));
        assert_eq!(second, first);
        assert!(log.contains("artifact cache hit: legacy-provider"), "{log}");
        assert!(!log.contains("miss") && !log.contains("stored"), "{log}");
        ok(with(&["plugin", "remove", PROVIDER]).output().expect("run"));
    }
}

/// Write `bytes` to `path` with a new modification time (the same size as before in the
/// tests below), as an editor or a rebuild would.
fn rewrite(path: &Path, bytes: &[u8]) {
    let before = fs::metadata(path).ok().and_then(|m| m.modified().ok());
    fs::write(path, bytes).expect("write");
    // Make sure the stamp moves even on coarse-timestamp file systems.
    if let Some(t) = before {
        let f = fs::File::options().write(true).open(path).expect("open");
        f.set_modified(t + std::time::Duration::from_secs(2))
            .expect("set mtime");
    }
}

#[test]
fn unchanged_wasm_is_not_rehashed_and_a_same_size_change_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ArtifactCache::new(dir.path().join("artifacts"), 512 << 20);
    let wasm_path = dir.path().join("plugin.wasm");
    let a = wat::parse_str(auth_wat('a')).expect("wat");
    let b = wat::parse_str(auth_wat('b')).expect("wat");
    assert_eq!(a.len(), b.len(), "same size, different bytes");
    fs::write(&wasm_path, &a).expect("write");
    let compiler = Compiler::default();
    let load = |what| {
        // A fresh engine each time: as a new process, no in-process module.
        WasmEngine::new(compiler)
            .expect("engine")
            .compile_file_cached(what, &wasm_path, Some(&cache))
            .expect("compiles")
    };
    let (first, outcome) = load("a");
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    // The file's hash is now on record for its current stamp.
    let stamp = |p: &Path| {
        tark_wasmer::cache::FileStamp::of(&fs::metadata(p).expect("stat")).expect("unix stamp")
    };
    assert_eq!(
        cache.known_wasm_hash(&wasm_path, &stamp(&wasm_path)),
        Some(first.hash)
    );
    let (again, outcome) = load("a");
    assert_eq!(outcome, CacheOutcome::DiskHit);
    assert_eq!(again.hash, first.hash);
    // Same size, new bytes and mtime: the recorded hash no longer applies, so the new
    // module is hashed, missed and compiled.
    rewrite(&wasm_path, &b);
    assert_eq!(cache.known_wasm_hash(&wasm_path, &stamp(&wasm_path)), None);
    let (changed, outcome) = load("b");
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_ne!(changed.hash, first.hash);
    let want: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        &b,
    ))
    .into();
    assert_eq!(changed.hash, want);
    assert_eq!(entry_files(cache.dir()).len(), 2);
}

#[test]
fn tampered_artifact_is_refused_after_a_verified_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = ArtifactCache::new(dir.path().join("artifacts"), 512 << 20);
    let wasm = wat::parse_str(auth_wat('t')).expect("wat");
    let compiler = Compiler::default();
    let outcome = || outcome_of(&WasmEngine::new(compiler).expect("engine"), &wasm, &cache);
    assert_eq!(outcome(), CacheOutcome::Miss { stored: true });
    // Two verified loads: the second is vouched for by the first's record.
    assert_eq!(outcome(), CacheOutcome::DiskHit);
    assert_eq!(outcome(), CacheOutcome::DiskHit);
    let entries = entry_files(cache.dir());
    assert_eq!(entries.len(), 1);
    let records: Vec<String> = all_names(cache.dir())
        .into_iter()
        .filter(|n| n.ends_with(".art.ok"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    // Flip a payload byte in place (same size): the stamp changes, so the digest is
    // checked again and the artifact refused.
    let mut bytes = fs::read(&entries[0]).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    rewrite(&entries[0], &bytes);
    match outcome() {
        CacheOutcome::Rejected {
            reason: Rejection::HashMismatch,
            stored: true,
        } => {}
        other => panic!("tampered artifact loaded: {other:?}"),
    }
    // The recompiled entry replaced it and loads (verified again) in the next process.
    assert_eq!(outcome(), CacheOutcome::DiskHit);
}
