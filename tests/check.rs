//! `plugin check`: real plugin directories (WAT modules and the example plugins built by
//! scripts/build-plugins.sh) checked by the real binary; text, JSON and exit codes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn tw(plugins: &Path, args: &[&str]) -> Run {
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
    // Compiled artifacts go next to the plugins directory, never into the user's cache.
    cmd.env("TARK_WASMER_CACHE_DIR", plugins.with_extension("cache"))
        .arg("--plugins-dir")
        .arg(plugins)
        .args(args);
    let out = cmd.output().expect("run tark-wasmer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8"),
        stderr: String::from_utf8(out.stderr).expect("utf-8"),
    }
}

/// `plugin check <dir> --json`: the report and the exit code.
fn check_json(dir: &Path) -> (Value, Option<i32>, String) {
    let r = tw(
        &dir.join("no-plugins"),
        &["plugin", "check", dir.to_str().unwrap(), "--json"],
    );
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr));
    (v, r.code, r.stderr)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn write_plugin(dir: &Path, manifest: &str, wat: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("plugin.toml"), manifest).unwrap();
    fs::write(
        dir.join("plugin.wasm"),
        wat::parse_str(wat).expect("valid WAT"),
    )
    .unwrap();
}

fn manifest(ty: &str, caps: &str) -> String {
    format!("[plugin]\nname = \"checked\"\nversion = \"1.0.0\"\ntype = \"{ty}\"\n\n[capabilities]\n{caps}\n")
}

/// A complete legacy provider: every export of spec §2.4 with tark's types, importing
/// `tark:http.get` and using bulk memory.
const LEGACY_PROVIDER: &str = r#"(module
  (import "tark:http" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "dealloc") (param i32 i32))
  (func (export "provider_info") (param i32) (result i32)
    (memory.fill (local.get 0) (i32.const 32) (i32.const 2))
    (i32.const 2))
  (func (export "provider_models") (param i32) (result i32) (i32.const 0))
  (func (export "provider_chat") (param i32 i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "provider_auth_status") (result i32) (i32.const 0))
  (func (export "provider_auth_init") (param i32 i32) (result i32)
    (call $get (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))))"#;

#[test]
fn a_complete_legacy_provider_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    write_plugin(
        &dir,
        &manifest("provider", "http = [\"api.example.com\"]"),
        LEGACY_PROVIDER,
    );
    let (v, code, stderr) = check_json(&dir);
    assert_eq!(code, Some(0), "{v:#}\n{stderr}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["id"], "checked");
    assert_eq!(v["type"], "provider");
    assert_eq!(v["abi"], "legacy");
    assert_eq!(v["world"], Value::Null);
    let size = fs::metadata(dir.join("plugin.wasm")).unwrap().len();
    assert_eq!(v["size"], size);
    assert_eq!(strings(&v["features"]), ["bulk-memory"]);
    assert_eq!(strings(&v["imports"]), ["http"]);
    assert_eq!(strings(&v["errors"]), Vec::<String>::new());
    assert_eq!(strings(&v["warnings"]), Vec::<String>::new());
    let compilers = v["compilers"].as_array().unwrap();
    let names: Vec<&str> = compilers
        .iter()
        .map(|c| c["compiler"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["singlepass", "cranelift"]);
    for c in compilers {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["compile_ms"].as_f64().unwrap() >= 0.0);
    }
    for name in [
        "memory",
        "alloc",
        "dealloc",
        "provider_info",
        "provider_chat",
    ] {
        assert!(
            strings(&v["exports_ok"]).contains(&name.to_string()),
            "{name}"
        );
    }
    // Optional probed exports are only notes.
    assert!(strings(&v["notes"])
        .iter()
        .any(|n| n.contains("provider_auth_credentials")));

    // The text form.
    let r = tw(
        &tmp.path().join("none"),
        &["plugin", "check", dir.to_str().unwrap()],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("=== Plugin Check: checked ===\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("ABI:       legacy\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Features:  bulk-memory\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Compile:   singlepass ok ("),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Compile:   cranelift  ok ("),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!("({size} bytes)")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("✅ No errors (0 warning(s))"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains('\x1b'));
}

#[test]
fn missing_and_mistyped_legacy_exports_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    // provider_models missing, provider_info with the wrong type, no provider_chat.
    write_plugin(
        &dir,
        &manifest("provider", ""),
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "provider_info") (result i32) (i32.const 0)))"#,
    );
    let (v, code, stderr) = check_json(&dir);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with("Error: plugin check found 2 error(s) in "),
        "{stderr}"
    );
    let errors = strings(&v["errors"]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0]
        .starts_with("Export 'provider_info' has signature () -> i32, expected (i32) -> i32"));
    assert!(errors[0].contains("Plugin does not export 'provider_info' function"));
    assert!(errors[1].starts_with("Missing export 'provider_models' (i32) -> i32"));
    let warnings = strings(&v["warnings"]);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("Missing export 'provider_chat'")),
        "{warnings:?}"
    );
    assert!(strings(&v["notes"])
        .iter()
        .any(|n| n.contains("No 'dealloc' export")));

    // A legacy auth plugin needs all six functions and the memory.
    let auth = tmp.path().join("a");
    write_plugin(
        &auth,
        &manifest("auth", ""),
        r#"(module (func (export "status") (result i32) (i32.const 1)))"#,
    );
    let (v, code, _) = check_json(&auth);
    assert_eq!(code, Some(1));
    let errors = strings(&v["errors"]);
    assert!(errors
        .iter()
        .any(|e| e.starts_with("Missing export 'memory'")));
    for name in [
        "alloc",
        "get_token",
        "get_endpoint",
        "init_with_credentials",
        "logout",
        "display_name",
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("Missing export '{name}'"))),
            "{name}: {errors:?}"
        );
    }
    assert!(!errors.iter().any(|e| e.contains("'status'")));
}

#[test]
fn imports_are_compared_with_the_capabilities() {
    let tmp = tempfile::tempdir().unwrap();
    // Uses http without declaring it; declares shell and env it never reads.
    let dir = tmp.path().join("p");
    write_plugin(
        &dir,
        &manifest("provider", "shell = true\nenv = [\"HOME\"]"),
        LEGACY_PROVIDER,
    );
    let (v, code, _) = check_json(&dir);
    assert_eq!(code, Some(1));
    let errors = strings(&v["errors"]);
    assert_eq!(
        errors,
        ["Imports tark:http but declares no [capabilities] http hosts: every request would be refused. Add http = [\"api.example.com\"] to plugin.toml"]
    );
    let warnings = strings(&v["warnings"]);
    assert!(
        warnings.iter().any(|w| w.contains("requests shell access")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w == "Declares [capabilities] env but never imports tark:env"),
        "{warnings:?}"
    );

    // Declares http but never imports it: a warning only.
    let quiet = tmp.path().join("q");
    write_plugin(
        &quiet,
        &manifest("auth", "http = [\"a.example.com\"]"),
        r#"(module
          (memory (export "memory") 1)
          (func (export "alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "status") (result i32) (i32.const 1))
          (func (export "get_token") (param i32) (result i32) (i32.const 0))
          (func (export "get_endpoint") (param i32) (result i32) (i32.const 0))
          (func (export "init_with_credentials") (param i32 i32) (result i32) (i32.const 0))
          (func (export "logout") (result i32) (i32.const 0))
          (func (export "display_name") (param i32) (result i32) (i32.const 0)))"#,
    );
    let (v, code, _) = check_json(&quiet);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(
        strings(&v["warnings"]),
        ["Declares [capabilities] http = [a.example.com] but never imports tark:http or tark:ws: the capability is unused"]
    );

    // An import the host does not provide cannot be linked.
    let unknown = tmp.path().join("u");
    write_plugin(
        &unknown,
        &manifest("tool", ""),
        r#"(module (import "tark:shell" "run" (func (param i32 i32) (result i32))))"#,
    );
    let (v, code, _) = check_json(&unknown);
    assert_eq!(code, Some(1));
    assert!(
        strings(&v["errors"])[0].starts_with("Cannot be linked: unknown import tark:shell::run"),
        "{v:#}"
    );
}

/// A canonical hook plugin (exports named as wit-bindgen names them) without `on-event`.
const CANONICAL_HOOK_WITHOUT_ON_EVENT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "tark:plugin/hook-plugin#name") (result i32) (i32.const 0))
  (func (export "cabi_post_tark:plugin/hook-plugin#name") (param i32))
  (func (export "tark:plugin/hook-plugin#subscriptions") (result i32) (i32.const 0))
  (func (export "cabi_post_tark:plugin/hook-plugin#subscriptions") (param i32)))"#;

#[test]
fn canonical_exports_are_checked_against_the_world() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h");
    write_plugin(&dir, &manifest("hook", ""), CANONICAL_HOOK_WITHOUT_ON_EVENT);
    let (v, code, _) = check_json(&dir);
    assert_eq!(code, Some(1));
    assert_eq!(v["abi"], "canonical");
    assert_eq!(v["expected_world"], "hook-world");
    let errors = strings(&v["errors"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("Missing export 'tark:plugin/hook-plugin#on-event'"),
        "{errors:?}"
    );
    assert!(strings(&v["exports_ok"]).contains(&"tark:plugin/hook-plugin#name".to_string()));
}

/// The example plugins of tests/plugins (built by scripts/build-plugins.sh).
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plugins")
        .join(name)
}

fn copy_plugin(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for f in ["plugin.toml", "plugin.wasm"] {
        fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn example_plugins_pass_and_a_wrong_type_is_caught() {
    for (name, abi, world) in [
        ("tool-kit", "canonical", Value::from("tool-world")),
        (
            "openai-provider",
            "canonical",
            Value::from("provider-world"),
        ),
        ("chat-channel", "canonical", Value::from("channel-world")),
        ("device-auth", "canonical", Value::from("auth-world")),
        ("hook-guard", "canonical", Value::from("hook-world")),
        ("legacy-provider", "legacy", Value::Null),
        ("legacy-channel", "legacy", Value::Null),
        ("legacy-auth", "legacy", Value::Null),
    ] {
        let (v, code, stderr) = check_json(&example(name));
        assert_eq!(code, Some(0), "{name}: {v:#}\n{stderr}");
        assert_eq!(v["abi"], abi, "{name}");
        assert_eq!(v["world"], world, "{name}");
        assert_eq!(strings(&v["errors"]), Vec::<String>::new(), "{name}");
    }

    // tool-kit declared as a provider: built for the wrong world.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tk");
    copy_plugin(&example("tool-kit"), &dir);
    let text = fs::read_to_string(dir.join("plugin.toml"))
        .unwrap()
        .replace("type = \"tool\"", "type = \"provider\"");
    fs::write(dir.join("plugin.toml"), text).unwrap();
    let (v, code, _) = check_json(&dir);
    assert_eq!(code, Some(1));
    assert!(strings(&v["errors"]).contains(
        &"Built for world tool-world, but [plugin] type 'provider' needs provider-world: fix the type in plugin.toml or rebuild against provider-world".to_string()
    ), "{v:#}");
}

#[test]
fn broken_inputs_are_reported_not_crashed_on() {
    let tmp = tempfile::tempdir().unwrap();
    // Invalid manifest.
    let bad = tmp.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(
        bad.join("plugin.toml"),
        "[plugin]\nname = \"x\"\nversion = \"1.0\"\ntype = \"tool\"\n",
    )
    .unwrap();
    let (v, code, _) = check_json(&bad);
    assert_eq!(code, Some(1));
    assert!(strings(&v["errors"])[0].contains("[plugin] version \"1.0\" is not valid semver"));

    // Needs a newer host.
    fs::write(
        bad.join("plugin.toml"),
        "[plugin]\nname = \"x\"\nversion = \"1.0.0\"\ntype = \"tool\"\napi_version = \"0.3\"\n",
    )
    .unwrap();
    let (v, _, _) = check_json(&bad);
    assert!(strings(&v["errors"])[0].contains("api_version = \"0.3\" needs a newer host"));

    // Missing module.
    fs::write(
        bad.join("plugin.toml"),
        "[plugin]\nname = \"x\"\nversion = \"1.0.0\"\ntype = \"tool\"\n",
    )
    .unwrap();
    let (v, _, _) = check_json(&bad);
    assert!(strings(&v["errors"])[0].starts_with("WASM module not found: "));

    // Garbage module.
    fs::write(bad.join("plugin.wasm"), b"\0asm\x01\0\0\0\x05\x01").unwrap();
    let (v, code, _) = check_json(&bad);
    assert_eq!(code, Some(1));
    assert!(
        strings(&v["errors"])[0].starts_with("Invalid wasm module: "),
        "{v:#}"
    );

    // A component.
    fs::write(bad.join("plugin.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
    let (v, _, _) = check_json(&bad);
    assert!(strings(&v["errors"])[0].contains("is a WebAssembly component"));

    // Neither a directory nor an installed plugin.
    let r = tw(
        &tmp.path().join("plugins"),
        &["plugin", "check", "nothing-here"],
    );
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr
            .starts_with("Error: No plugin directory or installed plugin named 'nothing-here'"),
        "{}",
        r.stderr
    );
}

#[test]
fn installed_plugins_are_checked_by_id_and_info_shows_abi_and_world() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let r = tw(
        &plugins,
        &["plugin", "add", example("tool-kit").to_str().unwrap()],
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let r = tw(&plugins, &["plugin", "check", "tool-kit"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("World:     tool-world (type needs tool-world)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(&format!(
            "Directory: {}",
            plugins.join("tool-kit").display()
        )),
        "{}",
        r.stdout
    );

    let r = tw(&plugins, &["plugin", "info", "tool-kit"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.contains("\nModule:\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  ABI:     canonical\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  World:   tool-world\n"), "{}", r.stdout);
    assert!(
        // `plugin add` compiled it into the cache: the first call does not compile.
        r.stdout.contains("  Cache:   cached for cranelift ("),
        "{}",
        r.stdout
    );
    // A call compiles through the artifact cache; info then finds the entry.
    let r = tw(&plugins, &["call", "tool-kit", "get-tools"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let r = tw(&plugins, &["plugin", "info", "tool-kit", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["module"]["cache"], "cached", "{v:#}");
    let entry = PathBuf::from(v["module"]["cache_entry"].as_str().unwrap());
    assert!(
        entry.starts_with(plugins.with_extension("cache")),
        "{}",
        entry.display()
    );
    assert!(entry.is_file());
    let r = tw(
        &plugins,
        &["--no-cache", "plugin", "info", "tool-kit", "--json"],
    );
    let off: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(off["module"]["cache"], "disabled");
    assert_eq!(v["module"]["abi"], "canonical");
    assert_eq!(v["module"]["world"], "tool-world");
    assert_eq!(
        v["module"]["size"],
        fs::metadata(example("tool-kit").join("plugin.wasm"))
            .unwrap()
            .len()
    );
}
