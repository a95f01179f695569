//! The attacks a reviewer would try against the host, each of which must be blocked with a
//! clear error (SECURITY.md lists the promises and points here): git argument and
//! transport injection at `plugin add`, paths out of the plugin through the manifest and
//! `fs_read` (a symlink swapped between check and open, `/proc/self/*`), storage files
//! that are symlinks, artifact-cache entries planted by another process of the same
//! user, and compile-time bombs. Real processes, real files, real git.

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tark_wasmer::cache::ArtifactCache;
use tark_wasmer::engine::bounds::{check_module_bounds, BoundsError};
use tark_wasmer::engine::{Compiler, EngineError, WasmEngine};
use tark_wasmer::lowlevel::{HostServices, PluginContext};
use tark_wasmer::{CacheOutcome, HostConfig, Limits, PluginCapabilities};

mod common;

// ---------------------------------------------------------------------------------------
// Helpers

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn refused(&self, needle: &str) {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} in stderr:\n{}",
            self.stderr
        );
    }
}

/// `tark-wasmer --plugins-dir <root>/plugins <args>` with a private TMPDIR and cache.
fn tw(root: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
    for var in ["TARK_PLUGINS_DIR", "TARK_WASMER_COMPILER", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    fs::create_dir_all(root.join("tmp")).expect("tmp");
    cmd.env("TMPDIR", root.join("tmp"))
        .env("TARK_WASMER_CACHE_DIR", root.join("cache"))
        .arg("--plugins-dir")
        .arg(root.join("plugins"))
        .args(args);
    let out = cmd.output().expect("run tark-wasmer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn installed(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("plugins"))
        .map(|r| {
            r.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A plugin source directory: `plugin.toml` with `wasm = <wasm>` and a small module.
fn plugin_src(dir: &Path, id: &str, wasm: &str) {
    fs::create_dir_all(dir).expect("src dir");
    fs::write(
        dir.join("plugin.toml"),
        format!("[plugin]\nname = \"{id}\"\nversion = \"0.1.0\"\ntype = \"channel\"\nwasm = \"{wasm}\"\n"),
    )
    .expect("manifest");
}

fn small_wasm() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("wat")
}

fn context(root: &Path, caps: &PluginCapabilities) -> Arc<PluginContext> {
    let mut config = HostConfig::default();
    config.policy.workspace_root = root.to_path_buf();
    config.policy.home_dir = Some(root.join("home"));
    let services = HostServices::new(config).expect("services");
    let data = root.join("data");
    PluginContext::new(services, "redteam", caps, &data, Limits::default()).expect("context")
}

// ---------------------------------------------------------------------------------------
// git

#[test]
fn git_install_refuses_argument_and_transport_injection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let marker = root.join("pwned");
    let m = marker.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // Options smuggled in as the source, before and after `--`.
        (
            vec!["--".into(), format!("--upload-pack=touch {m}")],
            "starts with '-'",
        ),
        (
            vec!["--".into(), format!("-c core.sshCommand=touch {m}")],
            "starts with '-'",
        ),
        // ... as the ref, both forms.
        (
            vec![format!(
                "https://example.invalid/r.git#--upload-pack=touch {m}"
            )],
            "starts with '-'",
        ),
        (
            vec![
                "https://example.invalid/r.git".into(),
                format!("--branch=--upload-pack=touch {m}"),
            ],
            "starts with '-'",
        ),
        // Remote helpers that run programs or reach file descriptors.
        (
            vec![format!("ext::sh -c touch% {m}")],
            "'<helper>::' transports",
        ),
        (vec!["fd::7".into()], "'<helper>::' transports"),
        (
            vec!["hg::https://example.invalid/r".into()],
            "'<helper>::' transports",
        ),
        // ssh hosts and users read as ssh options.
        (
            vec![format!("ssh://-oProxyCommand=touch%20{m}/r.git")],
            "host or user starts with '-'",
        ),
        (
            vec!["git@-oProxyCommand=id:r.git".into()],
            "host or user starts with '-'",
        ),
        (
            vec![format!("ssh://-user@example.invalid/r.git")],
            "host or user starts with '-'",
        ),
        // Schemes git does not need for a plugin.
        (
            vec!["gopher://example.invalid/r.git".into()],
            "unsupported transport 'gopher'",
        ),
    ];
    for (args, needle) in cases {
        let mut full = vec!["plugin", "add", "--yes"];
        full.extend(args.iter().map(String::as_str));
        let run = tw(root, &full);
        run.refused(needle);
        assert!(!marker.exists(), "{args:?} ran a command");
    }
    assert!(installed(root).is_empty(), "{:?}", installed(root));
    // Nothing of a clone is left in TMPDIR either.
    assert_eq!(fs::read_dir(root.join("tmp")).expect("tmp").count(), 0);
}

#[test]
fn git_install_from_an_explicit_file_url_still_works() {
    // The positive control of the transport rule: the transport the URL names is allowed.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let repo = root.join("repo");
    plugin_src(&repo, "gitty", "plugin.wasm");
    fs::write(
        repo.join("plugin.wasm"),
        common::fixtures::stub_wasm("channel"),
    )
    .expect("wasm");
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .current_dir(&repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .expect("git");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "v1"]);
    let url = format!("file://{}", repo.display());
    let run = tw(root, &["plugin", "add", "--yes", &url]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(installed(root), vec!["gitty".to_string()]);
}

// ---------------------------------------------------------------------------------------
// Paths: manifest `wasm`, plugin ids, `fs_read`

#[test]
fn manifest_wasm_and_ids_cannot_leave_the_plugin_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let outside = root.join("outside.wasm");
    fs::write(&outside, small_wasm()).expect("outside wasm");

    let dotdot = root.join("src-dotdot");
    plugin_src(&dotdot, "dotdot", "../outside.wasm");
    tw(
        root,
        &["plugin", "add", "--yes", dotdot.to_str().unwrap_or("")],
    )
    .refused("wasm");

    let abs = root.join("src-abs");
    plugin_src(&abs, "absolute", &outside.display().to_string());
    tw(
        root,
        &["plugin", "add", "--yes", abs.to_str().unwrap_or("")],
    )
    .refused("wasm");

    let linked = root.join("src-link");
    plugin_src(&linked, "linked", "plugin.wasm");
    symlink(&outside, linked.join("plugin.wasm")).expect("symlink");
    tw(
        root,
        &["plugin", "add", "--yes", linked.to_str().unwrap_or("")],
    )
    .refused("outside");

    let linked_dir = root.join("src-linkdir");
    plugin_src(&linked_dir, "linkdir", "bin/outside.wasm");
    symlink(root, linked_dir.join("bin")).expect("symlink");
    tw(
        root,
        &["plugin", "add", "--yes", linked_dir.to_str().unwrap_or("")],
    )
    .refused("outside");

    for bad_id in ["../escape", "a/b", "/abs", ".hidden", "..", "x\u{0}y"] {
        let src = root.join("src-id");
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&src).expect("src");
        fs::write(
            src.join("plugin.toml"),
            format!(
                "[plugin]\nname = {}\nversion = \"0.1.0\"\ntype = \"channel\"\nwasm = \"plugin.wasm\"\n",
                toml_string(bad_id)
            ),
        )
        .expect("manifest");
        fs::write(src.join("plugin.wasm"), small_wasm()).expect("wasm");
        let run = tw(
            root,
            &["plugin", "add", "--yes", src.to_str().unwrap_or("")],
        );
        assert_eq!(run.code, Some(1), "{bad_id:?} accepted:\n{}", run.stdout);
        assert!(
            run.stderr.to_lowercase().contains("name"),
            "{bad_id:?}: {}",
            run.stderr
        );
        // Nothing was written outside (or inside) the plugins directory.
        assert!(!root.join("escape").exists());
        assert!(
            installed(root).iter().all(|n| n.starts_with(".tmp-")) || installed(root).is_empty()
        );
    }
    assert!(installed(root).is_empty(), "{:?}", installed(root));
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

#[test]
fn fs_read_never_reaches_proc_self() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(tmp.path()).expect("canonical");
    fs::create_dir_all(root.join("docs")).expect("docs");
    fs::write(root.join("docs/ok.txt"), "fine").expect("ok");
    symlink("/proc/self/environ", root.join("docs/environ")).expect("symlink");
    symlink("/proc/self/mem", root.join("docs/mem")).expect("symlink");
    symlink("/proc/self", root.join("docs/self")).expect("symlink");
    // Even allowlists that name `/`, `/proc` or `/proc/self` outright.
    for allow in ["docs", "/", "/proc", "/proc/self", "/proc/self/environ"] {
        let caps = PluginCapabilities {
            fs_read: vec![allow.into(), root.join("docs").display().to_string()],
            ..Default::default()
        };
        let ctx = context(&root, &caps);
        assert_eq!(ctx.fs_read("docs/ok.txt").expect("allowed file"), "fine");
        for path in [
            "/proc/self/environ",
            "/proc/self/mem",
            "/proc/self/cmdline",
            "/proc/thread-self/environ",
            &format!("/proc/{}/environ", std::process::id()),
            "docs/environ",
            "docs/mem",
            "docs/self/environ",
        ] {
            let err = ctx.fs_read(path).expect_err(path);
            assert!(
                err.to_string().starts_with("path not allowed"),
                "{allow}: {path}: {err}"
            );
        }
    }
}

#[test]
fn fs_read_symlink_swapped_between_check_and_open_never_leaks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(tmp.path()).expect("canonical");
    let allowed = root.join("allowed");
    fs::create_dir_all(allowed.join("real")).expect("real");
    fs::write(allowed.join("real/f.txt"), "public").expect("public");
    fs::create_dir_all(root.join("secret")).expect("secret");
    fs::write(root.join("secret/f.txt"), "SECRET").expect("secret");
    symlink(root.join("secret"), allowed.join("link")).expect("symlink");
    let caps = PluginCapabilities {
        fs_read: vec!["allowed".into()],
        ..Default::default()
    };
    let ctx = context(&root, &caps);
    // A second thread swaps `allowed/sub` between a real directory and a symlink to
    // `secret/` (each swap one atomic rename) as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        let allowed = allowed.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for name in ["real", "link"] {
                    let _ = fs::rename(allowed.join(name), allowed.join("sub"));
                    let _ = fs::rename(allowed.join("sub"), allowed.join(name));
                    swaps += 1;
                }
            }
            swaps
        })
    };
    let (mut public, mut denied, mut other) = (0u32, 0u32, 0u32);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        match ctx.fs_read("allowed/sub/f.txt") {
            Ok(text) => {
                assert_eq!(text, "public", "the secret leaked through the swap");
                public += 1;
            }
            Err(e) if e.to_string().starts_with("path not allowed") => denied += 1,
            Err(_) => other += 1, // missing while renamed away
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper");
    assert!(swaps > 100, "the race did not run ({swaps} swaps)");
    assert!(
        public + denied + other > 100,
        "too few reads ({public}/{denied}/{other})"
    );
    // Both sides were hit: the check itself works while the race runs.
    assert!(public > 0 && denied > 0, "{public} public, {denied} denied");
}

// ---------------------------------------------------------------------------------------
// Storage files that are symlinks

#[test]
fn storage_files_that_are_symlinks_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let outside = root.join("other-app");
    fs::create_dir_all(&outside).expect("outside");
    let tokens = outside.join("tokens.json");
    fs::write(&tokens, r#"{"api_key": "stolen"}"#).expect("tokens");
    let data = root.join("data");
    fs::create_dir_all(&data).expect("data");
    symlink(&tokens, data.join("storage.json")).expect("symlink");
    let ctx = context(root, &PluginCapabilities::default());
    let err = ctx.storage_get("api_key").expect_err("read through a link");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = ctx.storage_set("k", "v").expect_err("write through a link");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        fs::read_to_string(&tokens).expect("tokens"),
        r#"{"api_key": "stolen"}"#
    );
    drop(ctx);

    // The lock file: a link to a file that does not exist yet is never created through.
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let data = root.join("data");
    fs::create_dir_all(&data).expect("data");
    let target = root.join("created-by-host");
    symlink(&target, data.join(".storage.lock")).expect("symlink");
    let ctx = context(root, &PluginCapabilities::default());
    let err = ctx.storage_set("k", "v").expect_err("lock through a link");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!target.exists(), "the host created a file through the link");
    assert!(!data.join("storage.json").exists());
}

// ---------------------------------------------------------------------------------------
// Artifact cache entries planted by another process of the same user

/// Plant `bytes` (or a mutation of the real entry) and check the cache refuses it,
/// recompiles, and the module still works.
#[test]
fn planted_cache_entries_are_refused() {
    let wasm =
        wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 42))"#).expect("wat");
    for compiler in Compiler::available() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("artifacts");
        let cache = ArtifactCache::new(&dir, 64 << 20);
        let engine = WasmEngine::new(compiler).expect("engine");
        let (compiled, outcome) = engine
            .compile_cached("t", &wasm, Some(&cache))
            .expect("compiles");
        assert_eq!(outcome, CacheOutcome::Miss { stored: true });
        let entry = cache.entry_path(&engine.cache_key(&compiled.hash));
        let good = fs::read(&entry).expect("entry");
        // Another module's valid entry, to plant under this key.
        let other = wat::parse_str(r#"(module (func (export "f") (result i32) i32.const 7))"#)
            .expect("wat");
        let (other_compiled, _) = engine
            .compile_cached("o", &other, Some(&cache))
            .expect("compiles");
        let other_entry = fs::read(cache.entry_path(&engine.cache_key(&other_compiled.hash)))
            .expect("other entry");

        let mut flipped_payload = good.clone();
        if let Some(b) = flipped_payload.last_mut() {
            *b ^= 0xff;
        }
        let mut truncated = good.clone();
        truncated.truncate(good.len() / 2);
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        let plants: Vec<(&str, Vec<u8>)> = vec![
            ("payload changed, header kept", flipped_payload),
            ("truncated", truncated),
            ("bad magic", bad_magic),
            ("another key's entry", other_entry),
            ("native code without a header", vec![0xc3; 4096]),
        ];
        for (what, bytes) in plants {
            fs::write(&entry, &bytes).expect("plant");
            let fresh = WasmEngine::new(compiler).expect("engine");
            let (module, outcome) = fresh
                .compile_cached("t", &wasm, Some(&cache))
                .expect("recompiles");
            assert!(
                matches!(outcome, CacheOutcome::Rejected { .. }),
                "{compiler}: {what}: {outcome:?}"
            );
            assert_eq!(call_f(&fresh, &module.module), 42, "{compiler}: {what}");
        }
        // A file of another owner, or a group-writable one, is not loaded (root can
        // chown: the test runs as root here and in CI).
        fs::write(&entry, &good).expect("restore");
        std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).expect("chown");
        let fresh = WasmEngine::new(compiler).expect("engine");
        let (_, outcome) = fresh
            .compile_cached("t", &wasm, Some(&cache))
            .expect("recompiles");
        assert!(
            matches!(outcome, CacheOutcome::Rejected { .. }),
            "{compiler}: foreign owner: {outcome:?}"
        );
        let _ = fs::remove_file(&entry);
        fs::write(&entry, &good).expect("restore");
        fs::set_permissions(&entry, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .expect("chmod");
        let fresh = WasmEngine::new(compiler).expect("engine");
        let (_, outcome) = fresh
            .compile_cached("t", &wasm, Some(&cache))
            .expect("recompiles");
        assert!(
            matches!(outcome, CacheOutcome::Rejected { .. }),
            "{compiler}: group-writable: {outcome:?}"
        );
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
// Compile-time bombs

fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A module of `bodies.len()` functions of type `[] -> []`, each body given as
/// (locals declarations, code without the final `end`).
/// One function body: its locals declarations `(count, type)` and its code.
type Body = (Vec<(u32, u8)>, Vec<u8>);

fn module(bodies: &[Body]) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out);
    let mut funcs = Vec::new();
    leb(bodies.len() as u64, &mut funcs);
    funcs.extend(std::iter::repeat_n(0, bodies.len()));
    section(3, &funcs, &mut out);
    let mut code = Vec::new();
    leb(bodies.len() as u64, &mut code);
    for (locals, ops) in bodies {
        let mut body = Vec::new();
        leb(locals.len() as u64, &mut body);
        for (count, ty) in locals {
            leb(u64::from(*count), &mut body);
            body.push(*ty);
        }
        body.extend_from_slice(ops);
        body.push(0x0b);
        leb(body.len() as u64, &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut out);
    out
}

fn bombs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    const I64: u8 = 0x7e;
    // 2 000 functions of 50 000 locals each: 100 million locals in 14 KB.
    let many_locals = module(&vec![(vec![(50_000, I64)], Vec::new()); 2_000]);
    // Locals spread thin: 200 functions x 9 000 locals (each under the per-function cap).
    let spread_locals = module(&vec![(vec![(9_000, I64)], Vec::new()); 200]);
    // 20 000 nested blocks.
    let mut nested = Vec::new();
    for _ in 0..20_000 {
        nested.extend_from_slice(&[0x02, 0x40]);
    }
    nested.extend(std::iter::repeat_n(0x0b, 20_000));
    let nesting = module(&[(Vec::new(), nested)]);
    // 600 functions of 1 500 nested blocks (1.8 MB): each under the depth cap, together
    // about 15 s of cranelift's nesting work.
    let mut deep = Vec::new();
    for _ in 0..1_500 {
        deep.extend_from_slice(&[0x02, 0x40]);
    }
    deep.extend(std::iter::repeat_n(0x0b, 1_500));
    let many_deep = module(&vec![(Vec::new(), deep); 600]);
    // One br_table of 1.5 million targets (inside one block).
    let mut table = vec![0x02, 0x40, 0x41, 0x00, 0x0e];
    leb(1_500_000, &mut table);
    table.extend(std::iter::repeat_n(0x00, 1_500_000));
    table.extend_from_slice(&[0x00, 0x0b]);
    let br_table = module(&[(Vec::new(), table)]);
    // One function of 3 MB of `nop`.
    let huge = module(&[(Vec::new(), vec![0x01; 3 << 20])]);
    vec![
        ("many locals", many_locals, "locals of function #0"),
        (
            "locals spread thin",
            spread_locals,
            "locals of all functions",
        ),
        ("deep nesting", nesting, "block nesting depth"),
        (
            "many deep functions",
            many_deep,
            "sum of block nesting depths",
        ),
        ("huge br_table", br_table, "br_table targets"),
        ("huge function", huge, "body of function #0"),
    ]
}

#[test]
fn compile_bombs_are_refused_before_compiling() {
    for (what, wasm, needle) in bombs() {
        match check_module_bounds(&wasm) {
            Err(e @ BoundsError::TooComplex { .. }) => {
                assert!(e.to_string().contains(needle), "{what}: {e}")
            }
            other => panic!("{what}: not refused: {other:?}"),
        }
        for compiler in Compiler::available() {
            let engine = WasmEngine::new(compiler).expect("engine");
            let started = Instant::now();
            let err = engine.compile(what, &wasm).err();
            assert!(
                matches!(err, Some(EngineError::TooComplex { .. })),
                "{compiler}: {what}: {err:?}"
            );
            let text = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                text.starts_with(&format!(
                    "Refusing to compile WASM: {what}: module too complex"
                )),
                "{text}"
            );
            // Refused from the bytes, long before a compiler would have finished.
            assert!(started.elapsed() < Duration::from_secs(10), "{what}");
        }
    }
    // The example plugins (real Rust builds, built before the tests run) are well inside
    // every bound.
    let mut checked = 0;
    for entry in fs::read_dir(common::fixtures::repo_root().join("tests/plugins")).expect("plugins")
    {
        let wasm = entry.expect("entry").path().join("plugin.wasm");
        if let Ok(bytes) = fs::read(&wasm) {
            assert_eq!(check_module_bounds(&bytes), Ok(()), "{}", wasm.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} example plugins found");
}

#[test]
fn compile_bombs_are_refused_at_plugin_add_and_check() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let (_, wasm, _) = bombs().swap_remove(0);
    let src = root.join("bomb");
    plugin_src(&src, "bomb", "plugin.wasm");
    fs::File::create(src.join("plugin.wasm"))
        .and_then(|mut f| f.write_all(&wasm))
        .expect("wasm");
    let src_text = src.display().to_string();
    let started = Instant::now();
    tw(root, &["plugin", "add", "--yes", &src_text])
        .refused("module too complex to compile safely");
    assert!(installed(root).is_empty());
    let run = tw(root, &["plugin", "check", &src_text]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        (run.stdout.clone() + &run.stderr)
            .contains("the number of locals of function #0 is 50000, the limit is 10000"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
