//! `plugin new`: each of the five types is scaffolded into a temporary directory, built with
//! its own `build.sh` (rustup's wasm32-wasip1 when installed, else Debian's Rust with
//! build-std, as scripts/build-plugins.sh does), checked with `plugin check` (no errors, no
//! warnings), installed and called through `tark-wasmer call`.
//!
//! The builds share one CARGO_TARGET_DIR under cargo's per-test temporary directory, so the
//! standard library and wit-bindgen are built once and kept between runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

fn tw(root: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
    for var in [
        "TARK_PLUGINS_DIR",
        "TARK_WASMER_COMPILER",
        "NO_COLOR",
        "CLICOLOR_FORCE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(root)
        .env("TARK_WASMER_CACHE_DIR", root.join("artifact-cache"))
        .arg("--plugins-dir")
        .arg(root.join("plugins"))
        .args(args);
    let out = cmd.output().expect("run tark-wasmer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

#[test]
fn new_writes_a_complete_crate_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let r = tw(
        root,
        &["plugin", "new", "my-hook", "--type", "hook", "--json"],
    )
    .ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["world"], "hook-world");
    let dir = root.join("my-hook");
    assert_eq!(v["dir"], dir.to_str().unwrap());
    for f in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "build.sh",
        "README.md",
        ".gitignore",
        "wit/tark.wit",
        "wit/hook.wit",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    // The WIT is this host's contract, byte for byte.
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
    for f in ["tark.wit", "hook.wit"] {
        assert_eq!(
            fs::read(dir.join("wit").join(f)).unwrap(),
            fs::read(wit.join(f)).unwrap(),
            "{f}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
    }
    let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    assert!(lib.contains("world: \"hook-world\""), "{lib}");
    let cargo = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"my-hook\""));
    assert!(cargo.contains("wit-bindgen = { version = \"0.36\""));

    // Not over an existing, non-empty directory; nothing else written.
    let r = tw(root, &["plugin", "new", "my-hook", "--type", "tool"]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .contains("already exists and is not an empty directory"),
        "{}",
        r.stderr
    );
    assert!(fs::read_to_string(dir.join("src/lib.rs"))
        .unwrap()
        .contains("hook-world"));
    // Names that are not plugin ids and cargo package names.
    for bad in ["2fast", "my plugin", "ünï"] {
        let r = tw(root, &["plugin", "new", bad, "--type", "tool"]);
        assert_eq!(r.code, Some(1), "{bad}");
        assert!(
            r.stderr
                .starts_with(&format!("Error: Invalid plugin name '{bad}'")),
            "{}",
            r.stderr
        );
    }
    // Unknown type: clap lists the valid ones.
    let r = tw(root, &["plugin", "new", "x", "--type", "widget"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("auth, tool, provider, channel, hook"),
        "{}",
        r.stderr
    );
    let leftovers: Vec<_> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs the scaffold's build.sh: first offline, from the crates the example plugins already
/// put in cargo's cache (a CI run once failed here on a crates.io index timeout), then, if
/// something is missing there, online as a user would.
fn build(dir: &Path, target: &Path) {
    let run = |offline: bool| {
        Command::new("bash")
            .arg(dir.join("build.sh"))
            .env("CARGO_TARGET_DIR", target)
            .env("CARGO_NET_OFFLINE", if offline { "true" } else { "false" })
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("bash runs")
    };
    let mut out = run(true);
    if !out.status.success() {
        eprintln!(
            "offline build of {} failed; building online:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out = run(false);
    }
    assert!(
        out.status.success(),
        "build.sh failed for {}\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("plugin.wasm").is_file());
}

#[test]
fn every_scaffold_builds_passes_check_installs_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    let cases: [(&str, &str, &str, &str); 5] = [
        ("auth", "my-auth", "display-name", "\"my-auth\"\n"),
        ("tool", "my-tool", "get-tools", "\"name\":\"echo\""),
        ("provider", "my-provider", "info", "\"id\":\"my-provider\""),
        ("channel", "my-channel", "info", "\"id\":\"my-channel\""),
        ("hook", "my-hook", "name", "\"my-hook\"\n"),
    ];
    for (ty, name, function, expected) in cases {
        let dir = root.join("src").join(name);
        tw(
            root,
            &[
                "plugin",
                "new",
                name,
                "--type",
                ty,
                "--dir",
                dir.to_str().unwrap(),
            ],
        )
        .ok();
        build(&dir, &target);

        let r = tw(root, &["plugin", "check", dir.to_str().unwrap(), "--json"]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(r.code, Some(0), "{ty}: {v:#}\n{}", r.stderr);
        assert_eq!(v["abi"], "canonical", "{ty}");
        assert_eq!(v["world"], format!("{ty}-world"), "{ty}");
        assert_eq!(v["warnings"], Value::Array(Vec::new()), "{ty}: {v:#}");

        tw(root, &["plugin", "add", dir.to_str().unwrap(), "--yes"]).ok();
        let r = tw(root, &["call", name, function]).ok();
        assert!(r.stdout.contains(expected), "{ty}: {}", r.stdout);
    }
    // A second function of the auth scaffold: its storage round trip.
    let r = tw(root, &["call", "my-auth", "status"]).ok();
    assert_eq!(r.stdout, "\"not-authenticated\"\n");
    let r = tw(
        root,
        &["call", "my-tool", "execute", "echo", "{\"text\":\"hi\"}"],
    )
    .ok();
    assert!(r.stdout.contains("\"success\":true"), "{}", r.stdout);
    assert!(r.stdout.contains("hi"), "{}", r.stdout);
}
