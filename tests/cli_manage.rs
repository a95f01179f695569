//! The `tark-wasmer` binary's management commands (`plugin add|list|info|remove|enable|
//! disable`) and `call`, run as a real process against temporary plugins directories.
//! Plugins are real directories with a `plugin.toml` and a valid wasm module built from WAT.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A finished run of the binary.
mod common;
use common::cli::Run;

/// The binary with a clean environment for the variables it reads.
fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
    for var in [
        "TARK_PLUGINS_DIR",
        "TARK_WASMER_COMPILER",
        "TARK_WASMER_CA_FILE",
        "NO_COLOR",
        "CLICOLOR_FORCE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run tark-wasmer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// A temporary root with a plugins directory inside.
struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn plugins(&self) -> PathBuf {
        self.root().join("plugins")
    }

    /// `tark-wasmer --plugins-dir <plugins> <args>`.
    fn tw(&self, args: &[&str]) -> Run {
        let mut cmd = bin();
        // Compiled artifacts stay in the test's directory, never in the user's cache.
        cmd.env("TARK_WASMER_CACHE_DIR", self.root().join("artifact-cache"))
            .arg("--plugins-dir")
            .arg(self.plugins())
            .args(args);
        run(cmd)
    }

    fn add(&self, src: &Path) -> Run {
        self.tw(&["plugin", "add", src.to_str().expect("utf-8 path")])
    }
}

/// The smallest legacy module `plugin add` accepts for a type: memory, `alloc` and the
/// exports the function table marks required (each returning 0); read from the table,
/// so it follows it.
fn stub_wasm(ty: &str) -> Vec<u8> {
    use tark_wasmer::plugin::functions::{legacy_exports, Need};
    let ty: tark_wasmer::PluginType = ty.parse().expect("plugin type");
    let mut wat = String::from(
        r#"(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) (i32.const 0))"#,
    );
    for l in legacy_exports(ty).filter(|l| l.need == Need::Required) {
        let params = "(param i32) ".repeat(l.convention.core_signature().params().len());
        wat.push_str(&format!(
            r#" (func (export "{}") {params}(result i32) (i32.const 0))"#,
            l.name
        ));
    }
    wat.push(')');
    wasm(&wat)
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

/// A source plugin directory with `plugin.toml` (extra `[plugin]` lines and extra tables)
/// and a module at `plugin.wasm`.
fn make_source(dir: &Path, name: &str, ty: &str, plugin_extra: &str, tables: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("plugin.toml"),
        format!(
            "[plugin]\nname = \"{name}\"\nversion = \"1.2.3\"\ntype = \"{ty}\"\n{plugin_extra}\n{tables}\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("plugin.wasm"), stub_wasm(ty)).unwrap();
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn add_prints_tarks_texts_copies_the_tree_and_records_the_absolute_source() {
    let env = Env::new();
    let src = env.root().join("src/demo");
    make_source(
        &src,
        "demo",
        "provider",
        "description = \"Demo provider\"",
        "[capabilities]\nstorage = true\nhttp = [\"api.example.com\", \"example.org\"]\nenv = [\"DEMO_KEY\"]\n",
    );
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/guide.md"), "guide").unwrap();
    fs::create_dir_all(src.join("target/release")).unwrap();
    fs::write(src.join("target/release/junk.o"), "junk").unwrap();
    fs::create_dir_all(src.join(".git")).unwrap();
    fs::write(src.join(".git/HEAD"), "ref: refs/heads/main").unwrap();

    let r = env.add(&src).ok();
    assert_eq!(
        lines(&r.stdout),
        vec![
            "=== Installing Plugin ===".to_string(),
            String::new(),
            format!("Source: {} (local)", src.display()),
            String::new(),
            "Found plugin: demo v1.2.3".into(),
            "Type: provider".into(),
            "Capabilities:".into(),
            "  • Storage access".into(),
            "  • HTTP to: api.example.com, example.org".into(),
            "  • Env vars: DEMO_KEY".into(),
            String::new(),
            "Installing...".into(),
            String::new(),
            "✅ Successfully installed plugin: demo".into(),
            String::new(),
            "The plugin will be loaded on next tark start.".into(),
        ]
    );
    assert!(!r.stdout.contains('\x1b'), "no colour when piped");

    let dest = env.plugins().join("demo");
    assert_eq!(
        fs::read(dest.join("plugin.wasm")).unwrap(),
        stub_wasm("provider")
    );
    assert_eq!(
        fs::read_to_string(dest.join("plugin.toml")).unwrap(),
        fs::read_to_string(src.join("plugin.toml")).unwrap()
    );
    assert_eq!(
        fs::read_to_string(dest.join("docs/guide.md")).unwrap(),
        "guide"
    );
    assert!(!dest.join("target").exists(), "target/ is not copied");
    assert!(!dest.join(".git").exists(), ".git/ is not copied");

    let text = fs::read_to_string(dest.join(".install.json")).unwrap();
    let install: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(install["is_git"], Value::Bool(false));
    assert_eq!(install["url"], Value::from(src.to_str().unwrap()));
    assert_eq!(install["branch"], Value::Null);
    assert_eq!(install["path"], Value::Null);
    let at = install["installed_at"]
        .as_str()
        .expect("installed_at string");
    chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339 install time");
    assert!(
        text.starts_with("{\n  \"is_git\": false,\n  \"url\": "),
        "tark's key order and indent: {text}"
    );
}

#[test]
fn add_records_a_relative_source_as_absolute() {
    let env = Env::new();
    make_source(&env.root().join("rel/p"), "rel-plugin", "tool", "", "");
    let mut cmd = bin();
    cmd.current_dir(env.root())
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["plugin", "add", "rel/p"]);
    let r = run(cmd).ok();
    let abs = env.root().join("rel/p");
    assert!(
        r.stdout
            .contains(&format!("Source: {} (local)", abs.display())),
        "{}",
        r.stdout
    );
    let install: Value = serde_json::from_str(
        &fs::read_to_string(env.plugins().join("rel-plugin/.install.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(install["url"], Value::from(abs.to_str().unwrap()));
}

#[test]
fn add_expands_home_and_refuses_other_tilde_forms() {
    let env = Env::new();
    let home = env.root().join("home");
    make_source(&home, "at-home", "auth", "", "");
    make_source(&home.join("sub/p"), "in-home", "auth", "", "");
    for (arg, id, expected) in [
        ("~", "at-home", home.clone()),
        ("~/sub/p", "in-home", home.join("sub/p")),
    ] {
        let mut cmd = bin();
        cmd.env("HOME", &home)
            .arg("--plugins-dir")
            .arg(env.plugins())
            .args(["plugin", "add", arg]);
        let r = run(cmd).ok();
        assert!(
            r.stdout
                .contains(&format!("Source: {} (local)", expected.display())),
            "{arg}: {}",
            r.stdout
        );
        let install: Value = serde_json::from_str(
            &fs::read_to_string(env.plugins().join(id).join(".install.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(install["url"], Value::from(expected.to_str().unwrap()));
    }
    let r = env.tw(&["plugin", "add", "~someone/p"]).fails();
    assert!(
        r.stderr.starts_with("Error: Unsupported path '~someone/p'"),
        "{}",
        r.stderr
    );
}

#[test]
fn add_twice_is_refused() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(&src, "twice", "auth", "", "");
    env.add(&src).ok();
    fs::write(env.plugins().join("twice/data-marker"), "keep").unwrap();
    let r = env.add(&src).fails();
    assert!(
        r.stderr.starts_with(
            "Error: Plugin 'twice' is already installed\nUse `tark-wasmer plugin update twice`"
        ),
        "{}",
        r.stderr
    );
    assert!(env.plugins().join("twice/data-marker").exists());
}

#[test]
fn add_without_the_module_names_the_full_path() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(&src, "nowasm", "auth", "wasm = \"dist/plugin.wasm\"", "");
    let r = env.add(&src).fails();
    let expected = format!(
        "Error: WASM module not found: {}\nDid you forget to build the plugin?",
        src.join("dist/plugin.wasm").display()
    );
    assert!(r.stderr.starts_with(&expected), "{}", r.stderr);
    assert!(!env.plugins().join("nowasm").exists());
}

#[test]
fn add_with_a_bad_manifest_names_the_file_and_field() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(&src, "bad", "auth", "", "");
    fs::write(
        src.join("plugin.toml"),
        "[plugin]\nname = \"bad\"\nversion = \"1.0\"\ntype = \"auth\"\n",
    )
    .unwrap();
    let r = env.add(&src).fails();
    let manifest = src.join("plugin.toml");
    assert!(
        r.stderr.contains(&manifest.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("[plugin] version"), "{}", r.stderr);
    assert!(!env.plugins().join("bad").exists());

    fs::remove_file(&manifest).unwrap();
    let r = env.add(&src).fails();
    assert!(
        r.stderr.starts_with(&format!(
            "Error: No plugin.toml found in {}\nMake sure the path contains a valid plugin.",
            src.display()
        )),
        "{}",
        r.stderr
    );
}

#[test]
fn add_of_a_missing_path_or_url_says_so() {
    let env = Env::new();
    let missing = env.root().join("nowhere");
    let r = env.add(&missing).fails();
    assert!(
        r.stderr.starts_with(&format!(
            "Error: Path does not exist: {}",
            missing.display()
        )),
        "{}",
        r.stderr
    );
    // Not a path: a git URL (tests/git_install.rs covers git installs).
    let url = format!("file://{}", env.root().join("no-repo").display());
    let r = env.tw(&["plugin", "add", &url]).fails();
    assert!(
        r.stderr.starts_with("Error: git clone failed"),
        "{}",
        r.stderr
    );
    // Piped, a failed add prints nothing on stdout (its narration is held until success).
    assert_eq!(r.stdout, "", "{}", r.stdout);
}

/// Install `alpha`, `beta` (long description) and `gamma-plugin` (disabled), in an order
/// that is not sorted.
fn three_plugins(env: &Env) {
    for (name, ty, desc) in [
        ("gamma-plugin", "channel", "Gamma"),
        (
            "beta",
            "provider",
            "A description that is much longer than forty characters, cut",
        ),
        ("alpha", "auth", ""),
    ] {
        let src = env.root().join("src").join(name);
        make_source(&src, name, ty, &format!("description = \"{desc}\""), "");
        env.add(&src).ok();
    }
    env.tw(&["plugin", "disable", "gamma-plugin"]).ok();
}

#[test]
fn list_is_sorted_and_plain_when_piped() {
    let env = Env::new();
    three_plugins(&env);
    let r = env.tw(&["plugin", "list"]).ok();
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
    // One tab-separated line per plugin, sorted by id, nothing cut (tables and their
    // terminal width are in tests/cli_output.rs).
    assert_eq!(
        lines(&r.stdout),
        vec![
            "alpha\t1.2.3\tauth\tenabled\t",
            "beta\t1.2.3\tprovider\tenabled\tA description that is much longer than forty characters, cut",
            "gamma-plugin\t1.2.3\tchannel\tdisabled\tGamma",
        ]
    );
}

#[test]
fn list_json_is_sorted_with_all_fields() {
    let env = Env::new();
    three_plugins(&env);
    let r = env.tw(&["plugin", "list", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).expect("JSON array");
    let items = v.as_array().expect("array");
    let ids: Vec<&str> = items.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["alpha", "beta", "gamma-plugin"]);
    let gamma = &items[2];
    assert_eq!(gamma["version"], "1.2.3");
    assert_eq!(gamma["type"], "channel");
    assert_eq!(gamma["enabled"], false);
    assert_eq!(gamma["description"], "Gamma");
    let dir = env.plugins().join("gamma-plugin");
    assert_eq!(gamma["dir"], dir.to_str().unwrap());
    assert_eq!(gamma["wasm"], dir.join("plugin.wasm").to_str().unwrap());
    assert_eq!(items[0]["enabled"], true);
    // The full description, not the table's cut.
    assert_eq!(
        items[1]["description"],
        "A description that is much longer than forty characters, cut"
    );
}

#[test]
fn list_empty_and_with_a_broken_plugin() {
    let env = Env::new();
    let r = env.tw(&["plugin", "list"]).ok();
    assert_eq!(
        r.stdout, "",
        "nothing to list: nothing on stdout when piped"
    );
    let r = env.tw(&["plugin", "list", "--json"]).ok();
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap(),
        Value::Array(vec![])
    );

    let broken = env.plugins().join("broken");
    fs::create_dir_all(&broken).unwrap();
    fs::write(broken.join("plugin.toml"), "[plugin]\nname = \"broken\"\n").unwrap();
    make_source(&env.plugins().join("fine"), "fine", "auth", "", "");
    let r = env.tw(&["plugin", "list"]).ok();
    assert!(r.stdout.starts_with("fine\t"), "{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("Plugin at {} failed to load: ", broken.display())),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("plugin.toml"), "{}", r.stderr);
    assert!(
        r.stderr.contains("Failed to load plugin at"),
        "{}",
        r.stderr
    );
}

#[test]
fn info_text_and_json() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(
        &src,
        "infodemo",
        "provider",
        "description = \"Info demo\"\nauthor = \"Ann\"\nlicense = \"MIT\"",
        "[capabilities]\nhttp = [\"api.example.com\"]\nfs_read = [\"~/.config/x\"]\n\n[oauth]\nflow = \"pkce\"\nauth_url = \"https://a\"\ntoken_url = \"https://t\"\nclient_id = \"cid\"\nclient_secret = \"hunter2\"\nscopes = [\"s\"]\nredirect_uri = \"http://localhost/cb\"\n",
    );
    env.add(&src).ok();
    let dir = env.plugins().join("infodemo");
    let r = env.tw(&["plugin", "info", "infodemo"]).ok();
    assert!(!r.stdout.contains('\x1b'));
    // Last: every function of the type, with its signature and whether it is callable.
    let (head, functions) = r
        .stdout
        .split_once("\nFunctions:\n")
        .unwrap_or_else(|| panic!("no Functions section:\n{}", r.stdout));
    let line = |name: &str| {
        functions
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{functions}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("info"), "✓ func() -> provider-info");
    assert_eq!(
        line("auth-status"),
        "✗ func() -> provider-auth-status (not exported)"
    );
    assert_eq!(
        line("provider_auth_credentials"),
        "✗ func() -> string (not exported)"
    );
    assert!(!functions.contains("chat-stream-start"), "{functions}");
    let head = head.to_string();
    // `plugin add` compiled the module into the cache: the first call does not compile.
    let mut got: Vec<String> = lines(&head).iter().map(|l| l.to_string()).collect();
    let cache_line = got.pop().unwrap_or_default();
    let cached = format!(
        "  Cache:   cached for cranelift ({}",
        env.root().join("artifact-cache").display()
    );
    assert!(cache_line.starts_with(&cached), "{cache_line}");
    assert_eq!(
        got,
        vec![
            "=== Plugin: infodemo ===".to_string(),
            String::new(),
            "Name:    infodemo".into(),
            "Version:  1.2.3".into(),
            "Type:    provider".into(),
            "Status:  enabled".into(),
            "Description: Info demo".into(),
            "Author:  Ann".into(),
            "License: MIT".into(),
            String::new(),
            "Capabilities:".into(),
            "  Storage: ✗".into(),
            "  HTTP:    api.example.com".into(),
            "  Env:     ✗".into(),
            "  Files:   ~/.config/x".into(),
            "  Shell:   ✗".into(),
            String::new(),
            "Paths:".into(),
            format!("  Install: {}", dir.display()),
            format!("  WASM:    {}", dir.join("plugin.wasm").display()),
            format!("  Data:    {}", dir.join("data").display()),
            format!("  Source:  {} (local)", src.display()),
            String::new(),
            "Module:".into(),
            format!("  Size:    {} bytes", stub_wasm("provider").len()),
            "  ABI:     legacy".into(),
        ]
    );

    let r = env.tw(&["plugin", "info", "infodemo", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["id"], "infodemo");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["type"], "provider");
    assert_eq!(v["dir"], dir.to_str().unwrap());
    assert_eq!(v["wasm"], dir.join("plugin.wasm").to_str().unwrap());
    assert_eq!(v["data_dir"], dir.join("data").to_str().unwrap());
    assert_eq!(v["install"]["url"], src.to_str().unwrap());
    assert_eq!(v["plugin"]["author"], "Ann");
    assert_eq!(v["plugin"]["wasm"], "plugin.wasm");
    assert_eq!(v["capabilities"]["http"][0], "api.example.com");
    assert_eq!(v["oauth"]["client_id"], "cid");
    assert_eq!(v["oauth"]["client_secret"], "<redacted>");
    assert!(!r.stdout.contains("hunter2"));
    assert_eq!(v["module"]["abi"], "legacy");
    assert_eq!(v["module"]["world"], Value::Null);
}

#[test]
fn disable_enable_and_remove() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(&src, "toggle", "auth", "", "");
    env.add(&src).ok();
    let dir = env.plugins().join("toggle");

    let r = env.tw(&["plugin", "disable", "toggle"]).ok();
    assert_eq!(r.stdout, "✅ Disabled plugin: toggle\n");
    assert!(dir.join(".disabled").is_file());
    assert_eq!(fs::read(dir.join(".disabled")).unwrap(), b"");
    let r = env.tw(&["plugin", "info", "toggle"]).ok();
    assert!(r.stdout.contains("\nStatus:  disabled\n"), "{}", r.stdout);
    let r = env.tw(&["plugin", "list"]).ok();
    assert!(r.stdout.contains("\tdisabled\t"), "{}", r.stdout);

    let r = env.tw(&["plugin", "enable", "toggle"]).ok();
    assert_eq!(r.stdout, "✅ Enabled plugin: toggle\n");
    assert!(!dir.join(".disabled").exists());
    let r = env.tw(&["plugin", "list", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["enabled"], true);

    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/storage.json"), "{}").unwrap();
    let r = env.tw(&["plugin", "remove", "toggle"]).ok();
    assert_eq!(r.stdout, "✅ Removed plugin: toggle\n");
    assert!(!dir.exists());
    assert!(src.join("plugin.wasm").is_file(), "source untouched");
    let r = env.tw(&["plugin", "list", "--json"]).ok();
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn unknown_ids_are_reported() {
    let env = Env::new();
    for cmd in ["info", "remove", "enable", "disable"] {
        let r = env.tw(&["plugin", cmd, "ghost"]).fails();
        assert_eq!(
            r.stderr.trim_end(),
            "Error: Plugin 'ghost' not found",
            "{cmd}"
        );
    }
    let r = env.tw(&["call", "ghost", "status"]).fails();
    assert!(
        r.stderr.contains("Plugin 'ghost' not found"),
        "{}",
        r.stderr
    );
    // An id that would escape the plugins directory is just not found.
    let outside = env.root().join("victim");
    fs::create_dir_all(&outside).unwrap();
    env.tw(&["plugin", "remove", "../victim"]).fails();
    assert!(outside.is_dir());
}

#[test]
fn plugins_dir_from_the_environment() {
    let env = Env::new();
    let src = env.root().join("src");
    make_source(&src, "envdemo", "auth", "", "");
    let dir = env.root().join("from-env");
    let mut cmd = bin();
    cmd.env("TARK_PLUGINS_DIR", &dir)
        .args(["plugin", "add", src.to_str().unwrap()]);
    run(cmd).ok();
    assert!(dir.join("envdemo/plugin.toml").is_file());
    let mut cmd = bin();
    cmd.env("TARK_PLUGINS_DIR", &dir).args(["plugin", "list"]);
    let r = run(cmd).ok();
    assert!(r.stdout.starts_with("envdemo\t"), "{}", r.stdout);
    // --plugins-dir wins over the environment.
    let mut cmd = bin();
    cmd.env("TARK_PLUGINS_DIR", &dir)
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["plugin", "list", "--json"]);
    let r = run(cmd).ok();
    assert_eq!(
        serde_json::from_str::<Value>(&r.stdout).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn invalid_compiler_lists_the_valid_ones() {
    let env = Env::new();
    let r = env.tw(&["--compiler", "bogus", "plugin", "list"]);
    assert_ne!(r.code, Some(0));
    assert!(r.stderr.contains("bogus"), "{}", r.stderr);
    assert!(
        r.stderr.contains("singlepass") && r.stderr.contains("cranelift"),
        "{}",
        r.stderr
    );
    let mut cmd = bin();
    cmd.env("TARK_WASMER_COMPILER", "bogus")
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["plugin", "list"]);
    let r = run(cmd).fails();
    assert_eq!(
        r.stderr.trim_end(),
        "Error: invalid TARK_WASMER_COMPILER value 'bogus' (possible values: singlepass, cranelift)"
    );
    // Valid values from the environment, any case; empty means unset.
    for value in ["Cranelift", ""] {
        let mut cmd = bin();
        cmd.env("TARK_WASMER_COMPILER", value)
            .arg("--plugins-dir")
            .arg(env.plugins())
            .args(["plugin", "list", "--json"]);
        run(cmd).ok();
    }
}

#[test]
fn colours_follow_clicolor_force_and_no_color() {
    let env = Env::new();
    three_plugins(&env);
    let mut cmd = bin();
    cmd.env("CLICOLOR_FORCE", "1")
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["plugin", "enable", "gamma-plugin"]);
    let r = run(cmd).ok();
    assert_eq!(r.stdout, "✅ Enabled plugin: \x1b[32mgamma-plugin\x1b[0m\n");
    let mut cmd = bin();
    cmd.env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["plugin", "disable", "gamma-plugin"]);
    let r = run(cmd).ok();
    assert_eq!(r.stdout, "✅ Disabled plugin: gamma-plugin\n");
}

#[test]
fn every_command_has_help_with_examples() {
    for args in [
        vec!["--help"],
        vec!["plugin", "--help"],
        vec!["plugin", "add", "--help"],
        vec!["plugin", "list", "--help"],
        vec!["plugin", "info", "--help"],
        vec!["plugin", "remove", "--help"],
        vec!["plugin", "enable", "--help"],
        vec!["plugin", "disable", "--help"],
        vec!["plugin", "update", "--help"],
        vec!["plugin", "check", "--help"],
        vec!["plugin", "new", "--help"],
        vec!["call", "--help"],
    ] {
        let mut cmd = bin();
        cmd.args(&args);
        let r = run(cmd).ok();
        assert!(
            r.stdout.contains("Examples:\n  tark-wasmer "),
            "{args:?}: {}",
            r.stdout
        );
    }
}

/// A legacy auth plugin: bump allocator, `status` = 1, `display_name` = "X", `get_token`
/// fails with an `{"error": ...}` payload, `get_endpoint` traps.
fn auth_plugin_wat() -> String {
    let err = r#"{"error":"no token stored"}"#;
    let escaped = err.replace('"', "\\\"");
    format!(
        r#"(module
  (memory (export "memory") 64)
  (global $next (mut i32) (i32.const 4096))
  (data (i32.const 64) "{escaped}")
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "status") (result i32) (i32.const 1))
  (func (export "display_name") (param $out i32) (result i32)
    (i32.store8 (local.get $out) (i32.const 88))
    (i32.const 1))
  (func (export "get_token") (param $out i32) (result i32)
    (memory.copy (local.get $out) (i32.const 64) (i32.const {len}))
    (i32.const -{len}))
  (func (export "get_endpoint") (param i32) (result i32) unreachable)
  (func (export "logout") (result i32) (i32.const 0))
  (func (export "init_with_credentials") (param i32 i32) (result i32) (local.get 1)))"#,
        len = err.len()
    )
}

fn install_auth_plugin(env: &Env) {
    let src = env.root().join("src/wat-auth");
    make_source(
        &src,
        "wat-auth",
        "auth",
        "",
        "[capabilities]\nstorage = true\n",
    );
    fs::write(src.join("plugin.wasm"), wasm(&auth_plugin_wat())).unwrap();
    env.add(&src).ok();
}

#[test]
fn call_prints_json_results() {
    let env = Env::new();
    install_auth_plugin(&env);
    let r = env.tw(&["call", "wat-auth", "status"]).ok();
    assert_eq!(
        r.stdout, "\"authenticated\"\n",
        "the auth interface's `status` (not the raw legacy export's code)"
    );
    let r = env.tw(&["call", "wat-auth", "display-name"]).ok();
    assert_eq!(r.stdout, "\"X\"\n");
    // Raw legacy export with one argument: its code (the input length here).
    let r = env
        .tw(&[
            "call",
            "wat-auth",
            "init_with_credentials",
            r#"{"token":"t"}"#,
        ])
        .ok();
    assert_eq!(r.stdout, "13\n");
    // Both compilers.
    let r = env
        .tw(&[
            "--compiler",
            "cranelift",
            "call",
            "wat-auth",
            "display-name",
        ])
        .ok();
    assert_eq!(r.stdout, "\"X\"\n");
}

#[test]
fn call_failures_exit_with_their_code_and_a_message() {
    let env = Env::new();
    install_auth_plugin(&env);
    let r = env
        .tw(&["call", "wat-auth", "no-such-function"])
        .fails_with(2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(r.stderr.starts_with("Error: "), "{}", r.stderr);
    assert!(r.stderr.contains("no-such-function"), "{}", r.stderr);

    // The plugin's failure: its error text as the `err` value, exit 3.
    let r = env.tw(&["call", "wat-auth", "get-token"]).fails_with(3);
    assert_eq!(r.stdout, "{\"err\":\"no token stored\"}\n");
    assert!(r.stderr.contains("no token stored"), "{}", r.stderr);

    let r = env.tw(&["call", "wat-auth", "get_endpoint"]).fails_with(4);
    assert!(r.stderr.contains("trap"), "{}", r.stderr);

    env.tw(&["plugin", "disable", "wat-auth"]).ok();
    let r = env.tw(&["call", "wat-auth", "status"]).fails();
    assert!(r.stderr.contains("disabled"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[test]
fn call_reports_an_unreadable_ca_file() {
    let env = Env::new();
    install_auth_plugin(&env);
    let missing = env.root().join("no-such-ca.pem");
    let mut cmd = bin();
    cmd.env("TARK_WASMER_CA_FILE", &missing)
        .arg("--plugins-dir")
        .arg(env.plugins())
        .args(["call", "wat-auth", "status"]);
    let r = run(cmd).fails();
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "{}",
        r.stderr
    );
}
