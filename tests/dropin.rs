//! Drop-in proof: plugins laid out on disk exactly as tark lays them out are managed by our
//! CLI (list, info, enable, disable, call sees the stored data, update from tark's relative
//! source path), what we write is what tark reads (`.install.json` key order and format,
//! flat pretty `storage.json`, empty `.disabled`), and the library has tark's names
//! (PluginHost::new/load/get/get_mut/unload/load_all, PluginRegistry, InstalledPlugin,
//! PluginManifest, PluginType, PluginCapabilities, the instance methods), plus lazy
//! activation through `[activation] events`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use tark_wasmer::PolicyConfig;
use tark_wasmer::{
    HostOptions, InstalledPlugin, PluginCapabilities, PluginHost, PluginInstance, PluginManifest,
    PluginRegistry, PluginType,
};

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

/// `tark-wasmer --plugins-dir <plugins> <args>` run in `cwd`.
fn tw(cwd: &Path, plugins: &Path, args: &[&str]) -> Run {
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
    cmd.current_dir(cwd)
        .env("TARK_WASMER_CACHE_DIR", cwd.join("artifact-cache"))
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

/// A legacy auth plugin (tark's ABI): `get_token` answers storage key `token`,
/// `init_with_credentials` stores its input under `token`.
const STORAGE_AUTH: &str = r#"(module
  (import "tark:storage" "get" (func $get (param i32 i32 i32) (result i32)))
  (import "tark:storage" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (global $next (mut i32) (i32.const 8192))
  (data (i32.const 16) "token")
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "status") (result i32) (i32.const 1))
  (func (export "get_token") (param $out i32) (result i32)
    (call $get (i32.const 16) (i32.const 5) (local.get $out)))
  (func (export "get_endpoint") (param i32) (result i32) (i32.const 0))
  (func (export "init_with_credentials") (param $p i32) (param $n i32) (result i32)
    (call $set (i32.const 16) (i32.const 5) (local.get $p) (local.get $n)))
  (func (export "logout") (result i32) (i32.const 0))
  (func (export "display_name") (param $out i32) (result i32)
    (i32.store8 (local.get $out) (i32.const 88))
    (i32.const 1)))"#;

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

fn manifest(id: &str, ty: &str, version: &str, extra: &str) -> String {
    format!(
        "[plugin]\nname = \"{id}\"\nversion = \"{version}\"\ntype = \"{ty}\"\ndescription = \"{id} plugin\"\n\n[capabilities]\nstorage = true\n{extra}\n"
    )
}

/// tark's `.install.json` (src/plugins/registry: `InstallMetadata`), read the way tark reads
/// it. No `deny_unknown_fields`, like tark; every field required, like tark.
#[derive(Debug, Deserialize, PartialEq)]
struct TarkInstallMetadata {
    is_git: bool,
    url: String,
    branch: Option<String>,
    path: Option<String>,
    installed_at: String,
}

/// What tark writes: `serde_json::to_string_pretty` of the struct, no trailing newline.
fn tark_install_json(url: &str, installed_at: &str) -> String {
    format!(
        "{{\n  \"is_git\": false,\n  \"url\": \"{url}\",\n  \"branch\": null,\n  \"path\": null,\n  \"installed_at\": \"{installed_at}\"\n}}"
    )
}

/// tark's storage file: `to_string_pretty` of a `HashMap<String, String>`.
fn tark_storage_json(map: &HashMap<String, String>) -> String {
    serde_json::to_string_pretty(map).unwrap()
}

const INSTALLED_AT: &str = "2026-02-18T10:00:00.123456789+00:00";

/// `<root>/plugins` as tark leaves it: `alpha` (auth, installed from `src/alpha`, relative
/// as tark records it, with stored data) and `beta` (tool, disabled).
fn tark_layout(root: &Path) -> PathBuf {
    let plugins = root.join("plugins");
    let src = root.join("src/alpha");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("plugin.toml"),
        manifest("alpha", "auth", "1.0.0", ""),
    )
    .unwrap();
    fs::write(src.join("plugin.wasm"), wasm(STORAGE_AUTH)).unwrap();
    // tark's install: a recursive copy of the source, then .install.json.
    let alpha = plugins.join("alpha");
    fs::create_dir_all(alpha.join("data")).unwrap();
    for f in ["plugin.toml", "plugin.wasm"] {
        fs::copy(src.join(f), alpha.join(f)).unwrap();
    }
    fs::write(
        alpha.join(".install.json"),
        tark_install_json("src/alpha", INSTALLED_AT),
    )
    .unwrap();
    let data: HashMap<String, String> = [("token".to_string(), "tark-token".to_string())].into();
    fs::write(alpha.join("data/storage.json"), tark_storage_json(&data)).unwrap();

    let beta = plugins.join("beta");
    fs::create_dir_all(&beta).unwrap();
    fs::write(
        beta.join("plugin.toml"),
        manifest("beta", "tool", "0.3.0", ""),
    )
    .unwrap();
    fs::write(
        beta.join("plugin.wasm"),
        wasm(r#"(module (memory (export "memory") 1))"#),
    )
    .unwrap();
    fs::write(beta.join(".disabled"), "").unwrap();
    plugins
}

#[test]
fn plugins_laid_out_by_tark_are_managed_by_our_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let plugins = tark_layout(&root);

    let r = tw(&root, &plugins, &["plugin", "list", "--json"]).ok();
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    let rows: Vec<(String, bool, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["enabled"].as_bool().unwrap(),
                p["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("alpha".to_string(), true, "1.0.0".to_string()),
            ("beta".to_string(), false, "0.3.0".to_string())
        ]
    );

    let r = tw(&root, &plugins, &["plugin", "info", "alpha"]).ok();
    assert!(r.stdout.contains("Status:  enabled"), "{}", r.stdout);
    assert!(
        r.stdout.contains("  Source:  src/alpha (local)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("  ABI:     legacy"), "{}", r.stdout);

    // call sees what tark stored.
    let r = tw(&root, &plugins, &["call", "alpha", "get-token"]).ok();
    assert_eq!(r.stdout, "{\"ok\":\"tark-token\"}\n");

    // enable / disable use tark's marker.
    tw(&root, &plugins, &["plugin", "enable", "beta"]).ok();
    assert!(!plugins.join("beta/.disabled").exists());
    tw(&root, &plugins, &["plugin", "disable", "alpha"]).ok();
    assert_eq!(fs::read(plugins.join("alpha/.disabled")).unwrap(), b"");
    tw(&root, &plugins, &["plugin", "enable", "alpha"]).ok();

    // update from tark's relative source path, resolved against the current directory.
    fs::write(
        root.join("src/alpha/plugin.toml"),
        manifest("alpha", "auth", "1.1.0", ""),
    )
    .unwrap();
    let r = tw(&root, &plugins, &["plugin", "update", "alpha"]).ok();
    assert!(
        r.stdout
            .contains("Updating alpha from src/alpha\n✅ Updated plugin: alpha"),
        "{}",
        r.stdout
    );
    let r = tw(&root, &plugins, &["plugin", "info", "alpha", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["version"], "1.1.0");
    // Data kept; the record now absolute, everything else as tark wrote it.
    let r = tw(&root, &plugins, &["call", "alpha", "get-token"]).ok();
    assert_eq!(r.stdout, "{\"ok\":\"tark-token\"}\n");
    let abs = root.join("src/alpha");
    assert_eq!(
        fs::read_to_string(plugins.join("alpha/.install.json")).unwrap(),
        tark_install_json(abs.to_str().unwrap(), INSTALLED_AT)
    );
    // ... so a second update works from any directory.
    let elsewhere = root.join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    tw(&elsewhere, &plugins, &["plugin", "update", "alpha"]).ok();
}

#[test]
fn what_we_write_is_what_tark_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let plugins = root.join("plugins");
    let src = root.join("src/gamma");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("plugin.toml"),
        manifest("gamma", "auth", "2.0.0", ""),
    )
    .unwrap();
    fs::write(src.join("plugin.wasm"), wasm(STORAGE_AUTH)).unwrap();
    tw(&root, &plugins, &["plugin", "add", "src/gamma"]).ok();
    let dir = plugins.join("gamma");

    // .install.json: tark's struct order, pretty, no trailing newline; tark's reader takes it.
    let text = fs::read_to_string(dir.join(".install.json")).unwrap();
    let meta: TarkInstallMetadata = serde_json::from_str(&text).expect("tark reads it");
    assert!(!meta.is_git);
    assert_eq!(meta.url, src.to_str().unwrap());
    assert_eq!((meta.branch, meta.path), (None, None));
    chrono::DateTime::parse_from_rfc3339(&meta.installed_at).expect("RFC 3339");
    assert_eq!(
        text,
        tark_install_json(src.to_str().unwrap(), &meta.installed_at)
    );

    // storage.json: a flat pretty string map, exactly as tark's writer formats it.
    tw(
        &root,
        &plugins,
        &["call", "gamma", "init_with_credentials", "secret-1"],
    )
    .ok();
    let storage = fs::read_to_string(dir.join("data/storage.json")).unwrap();
    let map: HashMap<String, String> = serde_json::from_str(&storage).expect("flat string map");
    assert_eq!(map["token"], "secret-1");
    assert_eq!(storage, tark_storage_json(&map));

    // .disabled: an empty file.
    tw(&root, &plugins, &["plugin", "disable", "gamma"]).ok();
    assert_eq!(fs::metadata(dir.join(".disabled")).unwrap().len(), 0);

    // tark's scan rule: a directory with plugin.toml whose wasm exists, keyed by name.
    let m = PluginManifest::load(&dir.join("plugin.toml")).unwrap();
    assert_eq!(m.id(), "gamma");
    assert!(dir.join(&m.plugin.wasm).is_file());
}

fn host_on(plugins: &Path) -> PluginHost {
    let mut options = HostOptions {
        plugins_dir: Some(plugins.to_path_buf()),
        // Compiled artifacts next to the plugins, never in the user's cache.
        cache: tark_wasmer::cache::CacheConfig {
            dir: Some(plugins.with_extension("cache")),
            ..Default::default()
        },
        ..HostOptions::default()
    };
    options.config.policy = PolicyConfig {
        workspace_root: plugins.to_path_buf(),
        home_dir: None,
        strict_https: false,
    };
    PluginHost::with_options(options).expect("host")
}

/// Every name tark's code uses, with the shapes tark calls them with. Compiling this is
/// the test; the body also runs against a real plugin.
#[test]
fn the_library_has_tarks_names() {
    // Types.
    fn _types(
        _: &PluginHost,
        _: &PluginRegistry,
        _: &InstalledPlugin,
        _: &PluginManifest,
        _: PluginType,
        _: &PluginCapabilities,
        _: &PluginInstance,
    ) {
    }
    // PluginHost methods as tark calls them.
    let _new: fn() -> tark_wasmer::Result<PluginHost> = PluginHost::new;
    let _load: fn(&mut PluginHost, &InstalledPlugin) -> tark_wasmer::Result<()> = PluginHost::load;
    let _get: for<'a> fn(&'a PluginHost, &str) -> Option<&'a PluginInstance> = PluginHost::get;
    let _get_mut: for<'a> fn(&'a mut PluginHost, &str) -> Option<&'a mut PluginInstance> =
        PluginHost::get_mut;
    let _unload: fn(&mut PluginHost, &str) -> bool = PluginHost::unload;
    let _load_all = PluginHost::load_all;
    // Registry and installed plugin.
    let _scan = PluginRegistry::scan;
    let _list = PluginRegistry::list;
    let _reg_get = PluginRegistry::get;
    let _enable = PluginRegistry::enable;
    let _disable = PluginRegistry::disable;
    let _remove = PluginRegistry::remove;
    let _ip_load = InstalledPlugin::load;
    let _activate = InstalledPlugin::should_activate_for;
    let _manifest_load = PluginManifest::load;
    // Instance methods tark calls (src/plugins/host/mod.rs).
    let _ = (
        PluginInstance::provider_info,
        PluginInstance::provider_models,
        PluginInstance::provider_chat,
        PluginInstance::provider_auth_status,
        PluginInstance::provider_auth_init,
        PluginInstance::provider_auth_logout,
        PluginInstance::provider_auth_credentials,
        PluginInstance::auth_process_tokens,
        PluginInstance::channel_info,
        PluginInstance::channel_start,
        PluginInstance::channel_stop,
        PluginInstance::channel_send,
        PluginInstance::channel_poll,
        PluginInstance::channel_handle_webhook,
        PluginInstance::channel_handle_gateway_event,
        PluginInstance::channel_auth_init,
        PluginInstance::channel_auth_status,
        PluginInstance::channel_auth_logout,
        PluginInstance::channel_widget_state,
    );
    let _ = (
        PluginInstance::auth_status,
        PluginInstance::auth_get_token,
        PluginInstance::auth_get_endpoint,
        PluginInstance::auth_display_name,
        PluginInstance::auth_init_with_credentials,
        PluginInstance::auth_logout,
    );

    // And it runs: tark's load / get / get_mut / unload sequence.
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let dir = plugins.join("alpha");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("plugin.toml"),
        manifest("alpha", "auth", "1.0.0", ""),
    )
    .unwrap();
    fs::write(dir.join("plugin.wasm"), wasm(STORAGE_AUTH)).unwrap();
    let mut host = host_on(&plugins);
    let plugin: InstalledPlugin = host.registry().get("alpha").cloned().expect("scanned");
    assert_eq!(plugin.plugin_type(), PluginType::Auth);
    assert!(plugin.manifest.capabilities.storage);
    host.load(&plugin).unwrap();
    assert!(host.get("alpha").is_some());
    let inst = host.get_mut("alpha").unwrap();
    inst.auth_init_with_credentials("tok").unwrap();
    assert_eq!(inst.auth_get_token().unwrap(), "tok");
    assert_eq!(inst.auth_display_name().unwrap(), "X");
    assert!(host.unload("alpha"));
    assert!(host.get("alpha").is_none());
    assert!(host.load_all().is_empty());
    assert_eq!(host.loaded(), ["alpha"]);
}

#[test]
fn activation_events_decide_what_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let empty = wasm(r#"(module (memory (export "memory") 1))"#);
    for (id, events, disabled) in [
        (
            "gemini",
            "[activation]\nevents = [\"onProvider:gemini\"]",
            false,
        ),
        (
            "commands",
            "[activation]\nevents = [\"onCommand:*\"]",
            false,
        ),
        ("startup", "[activation]\nevents = [\"onStartup\"]", false),
        ("always", "", false),
        (
            "off",
            "[activation]\nevents = [\"onProvider:gemini\"]",
            true,
        ),
    ] {
        let dir = plugins.join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("plugin.toml"),
            format!(
                "[plugin]\nname = \"{id}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n\n{events}\n"
            ),
        )
        .unwrap();
        fs::write(dir.join("plugin.wasm"), &empty).unwrap();
        if disabled {
            fs::write(dir.join(".disabled"), "").unwrap();
        }
    }
    let mut host = host_on(&plugins);
    assert!(host.load_for_event("onProvider:openai").is_empty());
    assert_eq!(host.loaded(), ["always", "startup"]);
    assert!(host.load_for_event("onProvider:gemini").is_empty());
    assert_eq!(host.loaded(), ["always", "gemini", "startup"]);
    assert_eq!(
        host.activate("onCommand:build"),
        ["always", "commands", "startup"]
    );
    assert_eq!(host.loaded(), ["always", "commands", "gemini", "startup"]);
    assert!(host.get("off").is_none(), "disabled plugins never load");

    // A plugin that fails to load is reported, not fatal.
    fs::write(plugins.join("gemini/plugin.wasm"), b"not wasm").unwrap();
    let mut host = host_on(&plugins);
    let failures = host.load_for_event("onProvider:gemini");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, "gemini");
    assert_eq!(host.loaded(), ["always", "startup"]);
}
