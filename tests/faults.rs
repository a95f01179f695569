//! Faults injected into the real thing (SECURITY.md points here): storage, artifact-cache
//! and registry writes on a full file system and on a read-only one (a small tmpfs
//! mounted for the test: the tests run as root here and in CI, where directory
//! permissions do not stop writes, so "read-only" is a read-only mount); a plugin update
//! or install killed (SIGKILL) at every step; HTTP servers on 127.0.0.1 that stall, close
//! mid-body, send endless headers or a gzip bomb; WebSocket peers that flood or never
//! answer the close. Each fault must end in a clear error with the old data intact.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use tark_wasmer::cache::ArtifactCache;
use tark_wasmer::engine::{Compiler, WasmEngine};
use tark_wasmer::lowlevel::{
    next_owner_id, HostServices, HttpError, HttpMethod, PluginContext, WsEvent,
};
use tark_wasmer::registry::{InstallSource, PluginRegistry, PAUSE_ENV};
use tark_wasmer::{CacheOutcome, HostConfig, Limits, PluginCapabilities};

mod common;

// ---------------------------------------------------------------------------------------
// A small tmpfs, unmounted on drop

struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` bytes. Needs root (tests and CI run as root); a failure
    /// is a test failure, not a skip.
    fn mount(size: usize) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, mode: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fill the file system up to its last bytes.
    fn fill(&self) {
        let mut f = fs::File::create(self.path().join("filler")).expect("filler");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn context_at(
    data: &Path,
    caps: &PluginCapabilities,
    limits: Limits,
    ca: Vec<Vec<u8>>,
) -> Arc<PluginContext> {
    let mut config = HostConfig::default();
    config.policy.workspace_root = data.to_path_buf();
    config.extra_ca_pem = ca;
    let services = HostServices::new(config).expect("services");
    PluginContext::new(services, "faults", caps, data, limits).expect("context")
}

// ---------------------------------------------------------------------------------------
// Storage

#[test]
fn storage_on_a_full_filesystem_fails_clearly_and_keeps_old_data() {
    let fs_ = Tmpfs::mount(256 << 10);
    let data = fs_.path().join("data");
    let limits = Limits {
        storage_total_max: 64 << 20,
        storage_value_max: 64 << 20,
        ..Limits::default()
    };
    let ctx = context_at(
        &data,
        &PluginCapabilities::default(),
        limits.clone(),
        Vec::new(),
    );
    ctx.storage_set("token", "old-value")
        .expect("first write fits");
    let before = fs::read(data.join("storage.json")).expect("storage.json");
    fs_.fill();
    let err = ctx
        .storage_set("big", &"x".repeat(64 << 10))
        .expect_err("a full disk fails the write");
    let text = err.to_string();
    assert!(
        text.contains("No space left on device") && text.contains("storage I/O at"),
        "{text}"
    );
    // Memory and disk both still hold the old state; no temporary file is left.
    assert_eq!(
        ctx.storage_get("token").expect("get").as_deref(),
        Some("old-value")
    );
    assert_eq!(ctx.storage_get("big").expect("get"), None);
    assert_eq!(
        fs::read(data.join("storage.json")).expect("storage.json"),
        before
    );
    assert_eq!(names(&data), vec![".storage.lock", "storage.json"]);
    // A new process (a fresh store) reads the old data.
    drop(ctx);
    let again = context_at(&data, &PluginCapabilities::default(), limits, Vec::new());
    assert_eq!(
        again.storage_get("token").expect("get").as_deref(),
        Some("old-value")
    );
}

#[test]
fn storage_on_a_read_only_filesystem_fails_clearly_and_keeps_old_data() {
    let fs_ = Tmpfs::mount(1 << 20);
    let data = fs_.path().join("data");
    let writer = context_at(
        &data,
        &PluginCapabilities::default(),
        Limits::default(),
        Vec::new(),
    );
    writer.storage_set("token", "old-value").expect("write");
    // The writer keeps its committed file open for writing, which a remount refuses
    // (busy): the store under test is a fresh one that has only read it.
    drop(writer);
    let ctx = context_at(
        &data,
        &PluginCapabilities::default(),
        Limits::default(),
        Vec::new(),
    );
    assert_eq!(
        ctx.storage_get("token").expect("get").as_deref(),
        Some("old-value")
    );
    fs_.remount("ro");
    for attempt in [ctx.storage_set("token", "new"), ctx.storage_delete("token")] {
        let text = attempt.expect_err("read-only").to_string();
        assert!(text.contains("Read-only file system"), "{text}");
    }
    assert_eq!(
        ctx.storage_get("token").expect("get").as_deref(),
        Some("old-value")
    );
    assert_eq!(
        ctx.storage_list_keys().expect("keys"),
        vec!["token".to_string()]
    );
    fs_.remount("rw");
    ctx.storage_set("token", "new").expect("writable again");
    assert_eq!(
        ctx.storage_get("token").expect("get").as_deref(),
        Some("new")
    );
}

// ---------------------------------------------------------------------------------------
// Artifact cache

#[test]
fn artifact_cache_on_a_full_or_read_only_filesystem_only_costs_a_compile() {
    let wasm =
        wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 5))"#).expect("wat");
    for compiler in Compiler::available() {
        // Full: the entry cannot be written; the module still compiles and runs.
        let full = Tmpfs::mount(64 << 10);
        let dir = full.path().join("artifacts");
        fs::create_dir(&dir).expect("artifacts");
        full.fill();
        let cache = ArtifactCache::new(&dir, 64 << 20);
        let engine = WasmEngine::new(compiler).expect("engine");
        let (module, outcome) = engine
            .compile_cached("t", &wasm, Some(&cache))
            .expect("compiles without the cache");
        assert_eq!(outcome, CacheOutcome::Miss { stored: false }, "{compiler}");
        assert_eq!(call_f(&engine, &module.module), 5);
        assert!(names(&dir).is_empty(), "{compiler}: left {:?}", names(&dir));
        assert_eq!(cache.counters().store_failures, 1);

        // Read-only, with a good entry written before: it is still loaded.
        let ro = Tmpfs::mount(16 << 20);
        let dir = ro.path().join("artifacts");
        let cache = ArtifactCache::new(&dir, 64 << 20);
        let first = WasmEngine::new(compiler).expect("engine");
        let (_, outcome) = first
            .compile_cached("t", &wasm, Some(&cache))
            .expect("compiles");
        assert_eq!(outcome, CacheOutcome::Miss { stored: true });
        ro.remount("ro");
        let second = WasmEngine::new(compiler).expect("engine");
        let (module, outcome) = second
            .compile_cached("t", &wasm, Some(&cache))
            .expect("loads");
        assert_eq!(outcome, CacheOutcome::DiskHit, "{compiler}");
        assert_eq!(call_f(&second, &module.module), 5);
        // A module not in the read-only cache compiles; storing fails quietly.
        let other = wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 6))"#)
            .expect("wat");
        let (module, outcome) = second
            .compile_cached("o", &other, Some(&cache))
            .expect("compiles");
        assert_eq!(outcome, CacheOutcome::Miss { stored: false }, "{compiler}");
        assert_eq!(call_f(&second, &module.module), 6);
    }
}

fn call_f(engine: &WasmEngine, module: &wasmer::Module) -> i32 {
    let mut store = engine.new_store();
    let instance =
        wasmer::Instance::new(&mut store, module, &wasmer::imports! {}).expect("instantiates");
    let f = instance
        .exports
        .get_typed_function::<(), i32>(&store, "f")
        .expect("export");
    f.call(&mut store).expect("call")
}

// ---------------------------------------------------------------------------------------
// Registry: full and read-only plugins directory, killed installs and updates

fn plugin_src(dir: &Path, id: &str, version: &str) {
    fs::create_dir_all(dir).expect("src");
    fs::write(
        dir.join("plugin.toml"),
        format!("[plugin]\nname = \"{id}\"\nversion = \"{version}\"\ntype = \"channel\"\nwasm = \"plugin.wasm\"\n\n[capabilities]\nstorage = true\n"),
    )
    .expect("manifest");
    fs::write(
        dir.join("plugin.wasm"),
        common::fixtures::stub_wasm("channel"),
    )
    .expect("wasm");
}

fn tw(plugins: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tark-wasmer"))
        .env_remove("TARK_PLUGINS_DIR")
        .env_remove(PAUSE_ENV)
        .env("TARK_WASMER_CACHE_DIR", cache)
        .arg("--plugins-dir")
        .arg(plugins)
        .args(args)
        .output()
        .expect("run tark-wasmer")
}

/// Scan (which repairs what a killed process left) and check `id` is installed at one of
/// `versions`, loads, and kept its data.
fn assert_working(plugins: &Path, id: &str, versions: &[&str], step: &str) {
    let mut reg = PluginRegistry::new(plugins);
    reg.scan().expect("scan");
    let p = reg
        .get(id)
        .unwrap_or_else(|| panic!("{step}: plugin '{id}' is gone: {:?}", names(plugins)));
    let version = p.manifest.version().to_string();
    assert!(
        versions.contains(&version.as_str()),
        "{step}: version {version}"
    );
    assert_eq!(
        fs::read_to_string(p.dir.join("data/storage.json")).expect("data kept"),
        "{\n  \"k\": \"v\"\n}",
        "{step}"
    );
    assert!(p.install.is_some(), "{step}: .install.json lost");
    let leftovers: Vec<String> = names(plugins)
        .into_iter()
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{step}: left {leftovers:?}");
    let mut host = tark_wasmer::PluginHost::with_options(tark_wasmer::HostOptions {
        plugins_dir: Some(plugins.to_path_buf()),
        compiler: Some(Compiler::Singlepass),
        cache: tark_wasmer::cache::CacheConfig {
            disabled: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("host");
    let failures = host.load_all();
    assert!(failures.is_empty(), "{step}: {failures:?}");
}

/// Run the CLI with the pause hook at `step`, wait until it reports the pause, SIGKILL it.
fn run_and_kill_at(plugins: &Path, cache: &Path, args: &[&str], step: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"))
        .env_remove("TARK_PLUGINS_DIR")
        .env(PAUSE_ENV, step)
        .env("TARK_WASMER_CACHE_DIR", cache)
        .arg("--plugins-dir")
        .arg(plugins)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tark-wasmer");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("paused at") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    let line = line.unwrap_or_else(|_| panic!("{step}: the CLI never paused ({status})"));
    assert!(line.ends_with(&format!("paused at {step}")), "{line}");
}

#[test]
fn update_killed_at_every_step_leaves_a_working_plugin() {
    let steps = [
        "after-copy",
        "moved-aside",
        "preserve",
        "final-rename",
        "after-swap",
    ];
    for step in steps {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plugins = tmp.path().join("plugins");
        let cache = tmp.path().join("cache");
        let src = tmp.path().join("src");
        plugin_src(&src, "victim", "1.0.0");
        let mut reg = PluginRegistry::new(&plugins);
        reg.scan().expect("scan");
        let installed = reg
            .install_from_dir(&src, InstallSource::local(&src).expect("source"), false)
            .expect("install v1");
        fs::create_dir_all(installed.dir.join("data")).expect("data");
        fs::write(
            installed.dir.join("data/storage.json"),
            "{\n  \"k\": \"v\"\n}",
        )
        .expect("data");
        plugin_src(&src, "victim", "2.0.0");

        run_and_kill_at(&plugins, &cache, &["plugin", "update", "victim"], step);
        // The old plugin (or, once the swap is committed, the complete new one) works.
        let expect: &[&str] = if step == "after-swap" {
            &["2.0.0"]
        } else {
            &["1.0.0"]
        };
        assert_working(&plugins, "victim", expect, step);
        // And the next update goes through.
        let out = tw(&plugins, &cache, &["plugin", "update", "victim"]);
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_working(&plugins, "victim", &["2.0.0"], step);
    }
}

#[test]
fn install_killed_at_every_step_leaves_the_plugins_dir_usable() {
    for step in ["after-copy", "final-rename", "after-swap"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plugins = tmp.path().join("plugins");
        let cache = tmp.path().join("cache");
        // A plugin already there must keep working whatever happens to the new one.
        let old_src = tmp.path().join("old");
        plugin_src(&old_src, "bystander", "1.0.0");
        let mut reg = PluginRegistry::new(&plugins);
        reg.scan().expect("scan");
        let p = reg
            .install_from_dir(
                &old_src,
                InstallSource::local(&old_src).expect("source"),
                false,
            )
            .expect("install");
        fs::create_dir_all(p.dir.join("data")).expect("data");
        fs::write(p.dir.join("data/storage.json"), "{\n  \"k\": \"v\"\n}").expect("data");

        let src = tmp.path().join("new");
        plugin_src(&src, "newcomer", "1.0.0");
        let src_text = src.display().to_string();
        run_and_kill_at(
            &plugins,
            &cache,
            &["plugin", "add", "--yes", &src_text],
            step,
        );
        assert_working(&plugins, "bystander", &["1.0.0"], step);
        let mut reg = PluginRegistry::new(&plugins);
        reg.scan().expect("scan");
        // Either not installed at all, or (killed after the commit) installed whole.
        if step == "after-swap" {
            assert!(reg.get("newcomer").is_some(), "{step}");
        } else {
            assert!(reg.get("newcomer").is_none(), "{step}");
            let out = tw(&plugins, &cache, &["plugin", "add", "--yes", &src_text]);
            assert!(
                out.status.success(),
                "{step}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn install_and_update_on_a_full_or_read_only_plugins_dir_fail_clearly() {
    let fs_ = Tmpfs::mount(2 << 20);
    let plugins = fs_.path().join("plugins");
    let cache = fs_.path().join("cache");
    let src = fs_.path().join("src");
    plugin_src(&src, "victim", "1.0.0");
    let mut reg = PluginRegistry::new(&plugins);
    reg.scan().expect("scan");
    let p = reg
        .install_from_dir(&src, InstallSource::local(&src).expect("source"), false)
        .expect("install");
    fs::create_dir_all(p.dir.join("data")).expect("data");
    fs::write(p.dir.join("data/storage.json"), "{\n  \"k\": \"v\"\n}").expect("data");
    // The new version is bigger than the space left.
    plugin_src(&src, "victim", "2.0.0");
    fs::write(src.join("big.bin"), vec![7u8; 1 << 20]).expect("big");
    let other = fs_.path().join("other");
    plugin_src(&other, "other", "1.0.0");
    fs_.fill();
    let out = tw(&plugins, &cache, &["plugin", "update", "victim"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_working(&plugins, "victim", &["1.0.0"], "full: update");
    let out = tw(
        &plugins,
        &cache,
        &["plugin", "add", "--yes", &other.display().to_string()],
    );
    assert!(!out.status.success());
    assert_working(&plugins, "victim", &["1.0.0"], "full: add");

    fs::remove_file(fs_.path().join("filler")).expect("free space");
    fs_.remount("ro");
    for args in [
        vec!["plugin", "update", "victim"],
        vec!["plugin", "disable", "victim"],
        vec!["plugin", "remove", "victim"],
    ] {
        let out = tw(&plugins, &cache, &args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Read-only file system"), "{args:?}: {err}");
    }
    // Reading still works on the read-only directory (list, load).
    let mut reg = PluginRegistry::new(&plugins);
    reg.scan().expect("scan on a read-only dir");
    assert_eq!(
        reg.get("victim")
            .map(|p| p.manifest.version().to_string())
            .as_deref(),
        Some("1.0.0")
    );
}

// ---------------------------------------------------------------------------------------
// HTTP servers that misbehave

/// A one-shot TCP server on 127.0.0.1 running `serve` on each connection.
fn tcp_server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(stream));
        }
    });
    format!("http://127.0.0.1:{port}/")
}

/// Read the request head (so the client's write completes).
fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return,
        }
    }
}

fn http_ctx(timeout: Duration, response_max: usize) -> (tempfile::TempDir, Arc<PluginContext>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let caps = PluginCapabilities {
        http: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let limits = Limits {
        http_timeout: timeout,
        http_connect_timeout: timeout,
        http_response_max: response_max,
        ..Limits::default()
    };
    let ctx = context_at(&tmp.path().join("data"), &caps, limits, Vec::new());
    (tmp, ctx)
}

#[test]
fn http_server_that_stalls_hits_the_configured_timeout() {
    // Stalls before answering, and after the head in the middle of the body.
    let silent = tcp_server(|mut s| {
        read_head(&mut s);
        thread::sleep(Duration::from_secs(30));
    });
    let mid_body = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
        thread::sleep(Duration::from_secs(30));
    });
    let drip = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        // One header byte every 100 ms: each read succeeds, the deadline must still fire.
        for _ in 0..300 {
            if s.write_all(b"X").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (_tmp, ctx) = http_ctx(Duration::from_millis(1500), 1 << 20);
    for url in [silent, mid_body, drip] {
        let started = Instant::now();
        let err = ctx
            .http_request(HttpMethod::Get, &url, &[], None)
            .expect_err("a stalled server");
        let took = started.elapsed();
        assert!(matches!(err, HttpError::Timeout(_)), "{url}: {err:?}");
        assert!(
            took >= Duration::from_millis(1400),
            "{url}: fired early ({took:?})"
        );
        assert!(took < Duration::from_secs(10), "{url}: took {took:?}");
    }
}

#[test]
fn http_server_closing_mid_body_is_an_error() {
    let short = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this much");
    });
    let chunked = tcp_server(|mut s| {
        read_head(&mut s);
        let _ =
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nhalf a chunk");
    });
    let head = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
    });
    let (_tmp, ctx) = http_ctx(Duration::from_secs(10), 1 << 20);
    for url in [short, chunked, head] {
        let err = ctx
            .http_request(HttpMethod::Get, &url, &[], None)
            .expect_err("a truncated response is not a success");
        assert!(matches!(err, HttpError::Transport(_)), "{url}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains("missing") || text.contains("unexpected end"),
            "{url}: {text}"
        );
    }
}

#[test]
fn http_endless_headers_are_bounded() {
    let endless_lines = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        for i in 0u64.. {
            if s.write_all(format!("X-Header-{i}: v\r\n").as_bytes())
                .is_err()
            {
                return;
            }
        }
    });
    let endless_line = tcp_server(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Long: ");
        let block = vec![b'a'; 8192];
        while s.write_all(&block).is_ok() {}
    });
    let (_tmp, ctx) = http_ctx(Duration::from_secs(10), 1 << 20);
    for (url, needle) in [
        (endless_lines, "too many headers"),
        (endless_line, "end of response head"),
    ] {
        let started = Instant::now();
        let err = ctx
            .http_request(HttpMethod::Get, &url, &[], None)
            .expect_err("endless headers");
        assert!(err.to_string().contains(needle), "{url}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn http_gzip_bomb_is_never_inflated() {
    // 256 MB of zeros, gzip-compressed to about 250 KB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).expect("gzip");
    }
    let bomb = Arc::new(gz.finish().expect("gzip"));
    let compressed = bomb.len();
    assert!(compressed < 1 << 20, "{compressed}");
    let served = Arc::clone(&bomb);
    let url = tcp_server(move |mut s| {
        read_head(&mut s);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            served.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&served);
    });
    let limit = 64 << 10;
    let (_tmp, ctx) = http_ctx(Duration::from_secs(10), limit);
    // Even when the plugin asks for gzip, the host never inflates: the compressed bytes
    // count against the limit, which refuses them.
    for headers in [
        vec![],
        vec![("Accept-Encoding".to_string(), "gzip".to_string())],
    ] {
        let err = ctx
            .http_request(HttpMethod::Get, &url, &headers, None)
            .expect_err("over the limit");
        match err {
            HttpError::TooLarge { size, limit: l } => {
                assert_eq!(l, limit);
                assert!(size <= compressed * 4, "inflated? {size}");
            }
            other => panic!("{other:?}"),
        }
    }
    // With room for the compressed body, it arrives compressed (and small).
    let (_tmp, ctx) = http_ctx(Duration::from_secs(10), 8 << 20);
    let resp = ctx
        .http_request(HttpMethod::Get, &url, &[], None)
        .expect("fits compressed");
    assert!(resp.body.len() < 4 * compressed, "{}", resp.body.len());
}

// ---------------------------------------------------------------------------------------
// WebSocket peers that misbehave

struct WssPeer {
    url: String,
    ca: Vec<u8>,
    /// When the peer saw the client's socket close (ms since start; 0 = not yet).
    closed_after_ms: Arc<AtomicU64>,
    started: Instant,
}

/// A wss server on 127.0.0.1 that, after the handshake, runs `behave`.
fn wss_peer(
    behave: fn(
        &mut tungstenite::WebSocket<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>,
    ),
) -> WssPeer {
    let (ca_pem, tls) = common::servers::generate_tls();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closed_after_ms = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let closed = Arc::clone(&closed_after_ms);
    thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        let Ok(conn) = rustls::ServerConnection::new(tls) else {
            return;
        };
        let Ok(mut ws) = tungstenite::accept(rustls::StreamOwned::new(conn, tcp)) else {
            return;
        };
        behave(&mut ws);
        // Then read and ignore everything (a close frame included, never answered) until
        // the client drops the connection.
        let stream = ws.get_mut();
        let _ = stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
            if started.elapsed() > Duration::from_secs(60) {
                return;
            }
        }
        closed.store(
            started.elapsed().as_millis().max(1) as u64,
            Ordering::SeqCst,
        );
    });
    WssPeer {
        url: format!("wss://127.0.0.1:{port}/"),
        ca: ca_pem.into_bytes(),
        closed_after_ms,
        started,
    }
}

fn ws_ctx(peer: &WssPeer, queue_max: usize) -> (tempfile::TempDir, Arc<PluginContext>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let caps = PluginCapabilities {
        http: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let limits = Limits {
        ws_queue_max: queue_max,
        ..Limits::default()
    };
    let ctx = context_at(
        &tmp.path().join("data"),
        &caps,
        limits,
        vec![peer.ca.clone()],
    );
    (tmp, ctx)
}

#[test]
fn websocket_peer_flooding_is_bounded() {
    let peer = wss_peer(|ws| {
        for i in 0..200_000u32 {
            if ws
                .send(tungstenite::Message::text(format!("flood {i}")))
                .is_err()
            {
                return;
            }
        }
    });
    let (_tmp, ctx) = ws_ctx(&peer, 16);
    let owner = next_owner_id();
    let handle = ctx.ws_connect(owner, &peer.url, &[]).expect("connect");
    // Let the flood overflow the queue before reading anything.
    thread::sleep(Duration::from_millis(500));
    let mut messages = 0usize;
    let closed = loop {
        match ctx
            .ws_recv(owner, handle, Duration::from_secs(5), 1 << 16)
            .expect("recv")
        {
            WsEvent::Message(_) => messages += 1,
            WsEvent::Closed(reason) => break reason,
            other => panic!("after {messages} messages: {other:?}"),
        }
        assert!(messages <= 16, "more than the queue holds");
    };
    assert_eq!(closed, "queue_overflow");
    assert!(messages >= 1, "{messages}");
    // The host hung up on the flooding peer.
    assert!(
        common::servers::wait_until(Duration::from_secs(10), || peer
            .closed_after_ms
            .load(Ordering::SeqCst)
            > 0),
        "the connection stayed open"
    );
    ctx.ws_close(owner, handle);
}

#[test]
fn websocket_peer_that_never_answers_the_close_is_dropped() {
    let peer = wss_peer(|_| {});
    let (_tmp, ctx) = ws_ctx(&peer, 16);
    let owner = next_owner_id();
    let handle = ctx.ws_connect(owner, &peer.url, &[]).expect("connect");
    ctx.ws_send(owner, handle, "hello").expect("send");
    let before = Instant::now();
    ctx.ws_close(owner, handle);
    assert!(
        before.elapsed() < Duration::from_secs(3),
        "close blocked {:?}",
        before.elapsed()
    );
    let close_started = peer.started.elapsed().as_millis() as u64;
    // The peer never answers: the host gives up after its close wait and drops the socket.
    assert!(
        common::servers::wait_until(Duration::from_secs(15), || peer
            .closed_after_ms
            .load(Ordering::SeqCst)
            > 0),
        "the socket was never closed"
    );
    let waited = peer
        .closed_after_ms
        .load(Ordering::SeqCst)
        .saturating_sub(close_started);
    assert!(waited < 10_000, "dropped after {waited} ms");
    // The handle is gone.
    assert!(ctx.ws_send(owner, handle, "late").is_err());
}
