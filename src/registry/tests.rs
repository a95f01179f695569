//! Unit tests for the registry: scanning, the install record, install / update / remove
//! (including injected failures mid-swap) and tree copying.

use super::install::{FailPoint, FAIL_AT};
use super::*;
use crate::manifest::{PluginType, MANIFEST_FILE};
use std::fs;
use std::path::{Path, PathBuf};

const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn manifest_text(id: &str, version: &str, extra: &str) -> String {
    format!("[plugin]\nname = \"{id}\"\nversion = \"{version}\"\ntype = \"provider\"\n{extra}\n")
}

/// A source or installed plugin directory with a manifest and a module.
fn write_plugin(dir: &Path, id: &str, version: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(MANIFEST_FILE), manifest_text(id, version, "")).unwrap();
    fs::write(dir.join("plugin.wasm"), WASM).unwrap();
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    plugins: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let plugins = root.join("plugins");
    Fixture {
        _tmp: tmp,
        root,
        plugins,
    }
}

fn scanned(dir: &Path) -> PluginRegistry {
    let mut r = PluginRegistry::new(dir);
    r.scan().unwrap();
    r
}

fn sample_source(at: &Path) -> InstallSource {
    InstallSource {
        is_git: false,
        url: at.display().to_string(),
        branch: None,
        path: None,
        installed_at: "2026-02-18T10:00:00+00:00".into(),
    }
}

fn temp_leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(TEMP_PREFIX))
        .collect()
}

fn set_fail(point: Option<FailPoint>) {
    FAIL_AT.with(|f| f.set(point));
}

#[test]
fn plugins_dir_resolution() {
    let d = default_plugins_dir();
    assert!(d.ends_with("tark/plugins"), "{}", d.display());
    if let Some(local) = dirs::data_local_dir() {
        assert_eq!(d, local.join("tark").join("plugins"));
    }
    let cli = PathBuf::from("/from/cli");
    assert_eq!(
        resolve_with(Some(cli.clone()), Some("/from/env".into())),
        cli
    );
    assert_eq!(
        resolve_with(None, Some("/from/env".into())),
        PathBuf::from("/from/env")
    );
    assert_eq!(resolve_with(None, Some("".into())), d);
    assert_eq!(resolve_with(None, None), d);
    assert_eq!(resolve_plugins_dir(Some(cli.clone())), cli);
}

#[test]
fn install_json_has_tarks_key_order_and_format() {
    let s = InstallSource {
        is_git: true,
        url: "https://github.com/x/y".into(),
        branch: Some("main".into()),
        path: Some("plugins/a".into()),
        installed_at: "2026-02-18T10:00:00.123456789+00:00".into(),
    };
    assert_eq!(
        s.to_json_pretty().unwrap(),
        "{\n  \"is_git\": true,\n  \"url\": \"https://github.com/x/y\",\n  \"branch\": \"main\",\n  \"path\": \"plugins/a\",\n  \"installed_at\": \"2026-02-18T10:00:00.123456789+00:00\"\n}"
    );
    let local = InstallSource {
        is_git: false,
        url: "/src/p".into(),
        branch: None,
        path: None,
        installed_at: "2026-02-18T10:00:00+00:00".into(),
    };
    assert_eq!(
        local.to_json_pretty().unwrap(),
        "{\n  \"is_git\": false,\n  \"url\": \"/src/p\",\n  \"branch\": null,\n  \"path\": null,\n  \"installed_at\": \"2026-02-18T10:00:00+00:00\"\n}"
    );
    // Round trip through a real file.
    let f = fixture();
    fs::create_dir_all(&f.root).unwrap();
    s.write(&f.root).unwrap();
    assert_eq!(
        fs::read_to_string(f.root.join(INSTALL_FILE)).unwrap(),
        s.to_json_pretty().unwrap()
    );
    assert_eq!(InstallSource::read(&f.root).unwrap(), Some(s));
    assert_eq!(temp_leftovers(&f.root), Vec::<String>::new());
    let install_temps: Vec<String> = fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{INSTALL_FILE}.tmp-")))
        .collect();
    assert_eq!(install_temps, Vec::<String>::new());
}

#[test]
fn constructors_stamp_time_and_record_absolute_local_paths() {
    let s = InstallSource::local(Path::new("some/rel/dir")).unwrap();
    assert!(!s.is_git);
    assert_eq!(
        PathBuf::from(&s.url),
        std::env::current_dir().unwrap().join("some/rel/dir")
    );
    assert_eq!((s.branch, s.path), (None, None));
    assert!(chrono::DateTime::parse_from_rfc3339(&s.installed_at).is_ok());

    let g = InstallSource::git("https://h/r.git", Some("dev"), None);
    assert!(g.is_git);
    assert_eq!(g.branch.as_deref(), Some("dev"));
    assert_eq!(g.source_path(), None);
    assert!(chrono::DateTime::parse_from_rfc3339(&g.installed_at).is_ok());
}

#[test]
fn reads_tark_written_install_json_with_relative_url() {
    let f = fixture();
    fs::create_dir_all(&f.root).unwrap();
    // Exactly what tark writes for `tark plugin add ./my-plugin`.
    fs::write(
        f.root.join(INSTALL_FILE),
        "{\n  \"is_git\": false,\n  \"url\": \"./my-plugin\",\n  \"branch\": null,\n  \"path\": null,\n  \"installed_at\": \"2026-01-02T03:04:05.678+00:00\"\n}",
    )
    .unwrap();
    let s = InstallSource::read(&f.root).unwrap().unwrap();
    assert_eq!(s.url, "./my-plugin");
    assert_eq!(s.installed_at, "2026-01-02T03:04:05.678+00:00");
    assert_eq!(
        s.source_path().unwrap(),
        std::env::current_dir().unwrap().join("./my-plugin")
    );
    let abs = InstallSource {
        url: "/abs/p".into(),
        ..s.clone()
    };
    assert_eq!(abs.source_path().unwrap(), PathBuf::from("/abs/p"));
    if let Some(home) = dirs::home_dir() {
        let tilde = InstallSource {
            url: "~/p".into(),
            ..s.clone()
        };
        assert_eq!(tilde.source_path().unwrap(), home.join("p"));
    }
    // Missing file is None; garbage is a clear error.
    let other = f.root.join("other");
    fs::create_dir_all(&other).unwrap();
    assert_eq!(InstallSource::read(&other).unwrap(), None);
    fs::write(other.join(INSTALL_FILE), "{not json").unwrap();
    let e = InstallSource::read(&other).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "Invalid install metadata: {}",
            other.join(INSTALL_FILE).display()
        )),
        "{e}"
    );
}

#[test]
fn scan_creates_dir_loads_good_and_reports_broken() {
    let f = fixture();
    let mut r = PluginRegistry::new(&f.plugins);
    r.scan().unwrap();
    assert!(f.plugins.is_dir());
    assert!(r.is_empty());

    write_plugin(&f.plugins.join("beta"), "beta", "1.0.0");
    write_plugin(&f.plugins.join("alpha"), "alpha", "2.0.0");
    // Invalid version.
    let bad = f.plugins.join("bad");
    write_plugin(&bad, "bad", "1.0");
    // Module missing.
    let nowasm = f.plugins.join("nowasm");
    write_plugin(&nowasm, "nowasm", "1.0.0");
    fs::remove_file(nowasm.join("plugin.wasm")).unwrap();
    // No manifest, a plain file, and a leftover staging directory.
    fs::create_dir_all(f.plugins.join("empty")).unwrap();
    fs::write(f.plugins.join("README"), "x").unwrap();
    write_plugin(&f.plugins.join(".tmp-install-ghost-1-0"), "ghost", "1.0.0");

    r.scan().unwrap();
    let ids: Vec<_> = r.list().iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, ["alpha", "beta"]);
    assert_eq!(r.len(), 2);
    assert!(r.contains("alpha") && !r.contains("ghost") && !r.contains("bad"));
    let alpha = r.get("alpha").unwrap();
    assert_eq!(alpha.manifest.version(), "2.0.0");
    assert_eq!(alpha.dir, f.plugins.join("alpha"));
    assert!(alpha.is_enabled());
    assert_eq!(alpha.install, None);
    assert_eq!(alpha.wasm_path(), f.plugins.join("alpha/plugin.wasm"));
    assert_eq!(alpha.checked_wasm_path().unwrap(), alpha.wasm_path());
    assert_eq!(alpha.data_dir(), f.plugins.join("alpha/data"));
    assert_eq!(
        alpha.storage_path(),
        f.plugins.join("alpha/data/storage.json")
    );
    assert!(alpha.should_activate_for("onStartup"));
    assert_eq!(alpha.plugin_type(), PluginType::Provider);
    assert!(matches!(
        alpha.install_source(),
        Err(RegistryError::MissingInstallMetadata { .. })
    ));

    let errors = r.load_errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].dir, bad);
    assert_eq!(
        errors[0].message,
        format!(
            "{}: [plugin] version \"1.0\" is not valid semver (expected MAJOR.MINOR.PATCH such as 1.0.0)",
            bad.join(MANIFEST_FILE).display()
        )
    );
    assert_eq!(errors[1].dir, nowasm);
    assert_eq!(
        errors[1].message,
        format!(
            "WASM module not found: {} (declared in manifest)",
            nowasm.join("plugin.wasm").display()
        )
    );
    // A rescan starts from scratch.
    fs::remove_dir_all(&bad).unwrap();
    r.scan().unwrap();
    assert_eq!(r.load_errors().len(), 1);
}

#[test]
fn scan_picks_duplicates_deterministically() {
    let f = fixture();
    // Neither directory is named like the id: first in sorted order wins.
    write_plugin(&f.plugins.join("b-copy"), "dup", "2.0.0");
    write_plugin(&f.plugins.join("a-copy"), "dup", "1.0.0");
    let r = scanned(&f.plugins);
    assert_eq!(r.get("dup").unwrap().dir, f.plugins.join("a-copy"));
    assert_eq!(r.load_errors().len(), 1);
    assert_eq!(r.load_errors()[0].dir, f.plugins.join("b-copy"));
    assert!(r.load_errors()[0]
        .message
        .contains("duplicate plugin id 'dup'"));

    // A directory named like the id wins over earlier ones.
    write_plugin(&f.plugins.join("dup"), "dup", "3.0.0");
    let r = scanned(&f.plugins);
    let p = r.get("dup").unwrap();
    assert_eq!(p.dir, f.plugins.join("dup"));
    assert_eq!(p.manifest.version(), "3.0.0");
    let mut losers: Vec<_> = r.load_errors().iter().map(|e| e.dir.clone()).collect();
    losers.sort();
    assert_eq!(losers, [f.plugins.join("a-copy"), f.plugins.join("b-copy")]);
}

#[test]
fn enable_disable_marker() {
    let f = fixture();
    write_plugin(&f.plugins.join("p"), "p", "1.0.0");
    fs::write(f.plugins.join("p").join(DISABLED_MARKER), "").unwrap();
    let mut r = scanned(&f.plugins);
    assert!(!r.get("p").unwrap().is_enabled());
    assert_eq!(r.enabled().count(), 0);

    r.enable("p").unwrap();
    assert!(r.get("p").unwrap().enabled);
    assert!(!f.plugins.join("p/.disabled").exists());
    r.enable("p").unwrap(); // idempotent

    r.disable("p").unwrap();
    assert!(!r.get("p").unwrap().enabled);
    assert_eq!(fs::read(f.plugins.join("p/.disabled")).unwrap(), b"");
    assert!(!scanned(&f.plugins).get("p").unwrap().enabled);

    assert_eq!(
        r.enable("nope").unwrap_err().to_string(),
        "Plugin 'nope' not found"
    );
    assert_eq!(
        r.disable("nope").unwrap_err().to_string(),
        "Plugin 'nope' not found"
    );
    assert!(matches!(
        r.disable("../p").unwrap_err(),
        RegistryError::InvalidId { .. }
    ));
}

/// A source tree with build output, git metadata, nested files and a data dir.
fn rich_source(src: &Path, id: &str, version: &str) {
    write_plugin(src, id, version);
    fs::create_dir_all(src.join("target/release")).unwrap();
    fs::write(src.join("target/release/big.bin"), "junk").unwrap();
    fs::create_dir_all(src.join(".git/objects")).unwrap();
    fs::write(src.join(".git/HEAD"), "ref").unwrap();
    fs::create_dir_all(src.join("assets/target")).unwrap();
    fs::write(src.join("assets/target/nested.bin"), "junk").unwrap();
    fs::write(src.join("assets/logo.txt"), "logo").unwrap();
    fs::write(src.join("README.md"), format!("readme {version}")).unwrap();
    fs::write(src.join("target.txt"), "a file named like target").unwrap();
}

#[test]
fn install_copies_tree_without_build_output_and_writes_install_json() {
    let f = fixture();
    let src = f.root.join("src/demo");
    rich_source(&src, "demo", "1.0.0");
    let mut r = scanned(&f.plugins);
    let source = sample_source(&src);
    let p = r.install_from_dir(&src, source.clone(), false).unwrap();
    let dest = f.plugins.join("demo");
    assert_eq!(p.dir, dest);
    assert_eq!(p.id, "demo");
    assert!(p.enabled);
    assert_eq!(p.install.as_ref(), Some(&source));
    assert_eq!(fs::read(dest.join("plugin.wasm")).unwrap(), WASM);
    assert_eq!(
        fs::read_to_string(dest.join("README.md")).unwrap(),
        "readme 1.0.0"
    );
    assert_eq!(
        fs::read_to_string(dest.join("assets/logo.txt")).unwrap(),
        "logo"
    );
    assert!(dest.join("target.txt").is_file());
    assert!(!dest.join("target").exists());
    assert!(!dest.join(".git").exists());
    assert!(!dest.join("assets/target").exists());
    assert_eq!(
        fs::read_to_string(dest.join(INSTALL_FILE)).unwrap(),
        source.to_json_pretty().unwrap()
    );
    assert!(r.contains("demo"));
    assert_eq!(
        scanned(&f.plugins).get("demo").unwrap().install,
        Some(source)
    );
    assert!(temp_leftovers(&f.plugins).is_empty());

    // Again without overwrite: tark's error, nothing changes.
    let e = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap_err();
    assert_eq!(e.to_string(), "Plugin 'demo' is already installed");
}

#[test]
fn install_overwrite_replaces_tree_and_keeps_data() {
    let f = fixture();
    let src = f.root.join("src/demo");
    rich_source(&src, "demo", "1.0.0");
    let mut r = scanned(&f.plugins);
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    let dest = f.plugins.join("demo");
    fs::create_dir_all(dest.join("data")).unwrap();
    fs::write(dest.join("data/storage.json"), "{\"k\": \"v\"}").unwrap();
    fs::write(dest.join("old-only.txt"), "old").unwrap();

    rich_source(&src, "demo", "2.0.0");
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("data/storage.json"), "{\"from\": \"source\"}").unwrap();
    let mut source2 = sample_source(&src);
    source2.installed_at = "2027-01-01T00:00:00+00:00".into();
    let p = r.install_from_dir(&src, source2.clone(), true).unwrap();
    assert_eq!(p.manifest.version(), "2.0.0");
    assert_eq!(
        fs::read_to_string(dest.join("data/storage.json")).unwrap(),
        "{\"k\": \"v\"}"
    );
    assert!(!dest.join("old-only.txt").exists());
    assert_eq!(InstallSource::read(&dest).unwrap(), Some(source2));
    assert!(temp_leftovers(&f.plugins).is_empty());
}

#[test]
fn install_replaces_an_unregistered_leftover_directory() {
    let f = fixture();
    let leftover = f.plugins.join("demo");
    fs::create_dir_all(leftover.join("data")).unwrap();
    fs::write(leftover.join("data/storage.json"), "{}").unwrap();
    fs::write(leftover.join(MANIFEST_FILE), "broken = [").unwrap();
    let mut r = scanned(&f.plugins);
    assert_eq!(r.load_errors().len(), 1);
    let src = f.root.join("src");
    write_plugin(&src, "demo", "1.0.0");
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    assert_eq!(
        fs::read_to_string(leftover.join("data/storage.json")).unwrap(),
        "{}"
    );
    assert_eq!(
        scanned(&f.plugins).get("demo").unwrap().manifest.version(),
        "1.0.0"
    );
}

#[test]
fn install_errors_use_tarks_texts() {
    let f = fixture();
    let mut r = scanned(&f.plugins);
    let src = f.root.join("src");
    fs::create_dir_all(&src).unwrap();
    let e = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "No plugin.toml found in {}\nMake sure the path contains a valid plugin.",
            src.display()
        )
    );
    fs::write(
        src.join(MANIFEST_FILE),
        manifest_text("demo", "1.0.0", "wasm = \"dist/plugin.wasm\""),
    )
    .unwrap();
    let e = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "WASM module not found: {}\nDid you forget to build the plugin?",
            src.join("dist/plugin.wasm").display()
        )
    );
    // Relative source paths are reported in full too.
    let cwd = std::env::current_dir().unwrap();
    let missing = Path::new("definitely-missing-plugin-src");
    let e = r
        .install_from_dir(missing, sample_source(&src), false)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(&cwd.join(missing).display().to_string()),
        "{e}"
    );
    // Invalid manifest.
    fs::write(src.join(MANIFEST_FILE), manifest_text("demo", "1", "")).unwrap();
    let e = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap_err();
    assert!(matches!(
        e,
        RegistryError::Manifest(ManifestError::InvalidField { .. })
    ));
    assert!(r.is_empty());
    assert_eq!(fs::read_dir(&f.plugins).unwrap().count(), 0);
}

#[test]
fn install_keeps_module_that_lives_under_target() {
    let f = fixture();
    let src = f.root.join("src");
    fs::create_dir_all(src.join("target/wasm32-wasip1/release")).unwrap();
    fs::write(
        src.join(MANIFEST_FILE),
        manifest_text(
            "t",
            "1.0.0",
            "wasm = \"target/wasm32-wasip1/release/t.wasm\"",
        ),
    )
    .unwrap();
    fs::write(src.join("target/wasm32-wasip1/release/t.wasm"), WASM).unwrap();
    fs::write(src.join("target/wasm32-wasip1/release/t.d"), "deps").unwrap();
    let mut r = scanned(&f.plugins);
    let p = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    assert_eq!(fs::read(p.checked_wasm_path().unwrap()).unwrap(), WASM);
    assert!(!p.dir.join("target/wasm32-wasip1/release/t.d").exists());
}

#[cfg(unix)]
#[test]
fn install_follows_only_inner_symlinks_and_survives_loops() {
    use std::os::unix::fs::symlink;
    let f = fixture();
    let src = f.root.join("src");
    write_plugin(&src, "links", "1.0.0");
    let outside = f.root.join("secret.txt");
    fs::write(&outside, "secret").unwrap();
    fs::create_dir_all(src.join("docs")).unwrap();
    fs::write(src.join("docs/a.txt"), "a").unwrap();
    symlink(src.join("docs/a.txt"), src.join("inner-link.txt")).unwrap();
    symlink(src.join("docs"), src.join("docs-link")).unwrap();
    symlink(&outside, src.join("outer-link.txt")).unwrap();
    symlink(&f.root, src.join("outer-dir")).unwrap();
    symlink(&src, src.join("docs/loop")).unwrap();
    symlink(src.join("nowhere"), src.join("dangling")).unwrap();
    let mut r = scanned(&f.plugins);
    let p = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    let d = &p.dir;
    assert_eq!(fs::read_to_string(d.join("inner-link.txt")).unwrap(), "a");
    assert!(!fs::symlink_metadata(d.join("inner-link.txt"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(d.join("docs-link/a.txt")).unwrap(), "a");
    assert!(!d.join("outer-link.txt").exists());
    assert!(!d.join("outer-dir").exists());
    assert!(!d.join("docs/loop").exists());
    assert!(!d.join("dangling").exists());
}

#[test]
fn install_refuses_a_source_containing_the_plugins_dir() {
    let f = fixture();
    write_plugin(&f.root, "outer", "1.0.0");
    let mut r = scanned(&f.plugins);
    let e = r
        .install_from_dir(&f.root, sample_source(&f.root), false)
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::SourceContainsPluginsDir { .. }),
        "{e}"
    );
    assert!(temp_leftovers(&f.plugins).is_empty());
}

#[test]
fn install_failure_after_copy_leaves_nothing_behind() {
    let f = fixture();
    let src = f.root.join("src");
    write_plugin(&src, "demo", "1.0.0");
    let mut r = scanned(&f.plugins);
    set_fail(Some(FailPoint::AfterCopy));
    let e = r.install_from_dir(&src, sample_source(&src), false);
    set_fail(None);
    assert!(e.is_err());
    assert!(!f.plugins.join("demo").exists());
    assert!(temp_leftovers(&f.plugins).is_empty());
    assert!(!r.contains("demo"));
}

#[test]
fn remove_deletes_everything_and_refuses_unsafe_ids() {
    let f = fixture();
    let src = f.root.join("src");
    write_plugin(&src, "demo", "1.0.0");
    let mut r = scanned(&f.plugins);
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    fs::create_dir_all(f.plugins.join("demo/data")).unwrap();
    fs::write(f.plugins.join("demo/data/storage.json"), "{}").unwrap();

    // A directory next to the plugins dir that a traversal would hit.
    let victim = f.root.join("victim");
    fs::create_dir_all(&victim).unwrap();
    for bad in ["../victim", "..", ".", "", "demo/../../victim", "/tmp"] {
        let e = r.remove(bad).unwrap_err();
        assert!(matches!(e, RegistryError::InvalidId { .. }), "{bad}: {e}");
    }
    assert!(victim.is_dir());
    assert!(src.join(MANIFEST_FILE).is_file());
    assert_eq!(
        r.remove("ghost").unwrap_err().to_string(),
        "Plugin 'ghost' not found"
    );

    let removed = r.remove("demo").unwrap();
    assert_eq!(removed.id, "demo");
    assert!(!f.plugins.join("demo").exists());
    assert!(!r.contains("demo"));
    assert!(temp_leftovers(&f.plugins).is_empty());
    assert!(src.join("plugin.wasm").is_file(), "source untouched");
}

#[cfg(unix)]
#[test]
fn remove_of_symlinked_install_keeps_the_target() {
    let f = fixture();
    let dev = f.root.join("dev-plugin");
    write_plugin(&dev, "dev", "1.0.0");
    fs::create_dir_all(&f.plugins).unwrap();
    std::os::unix::fs::symlink(&dev, f.plugins.join("dev")).unwrap();
    let mut r = scanned(&f.plugins);
    assert!(r.contains("dev"));
    r.remove("dev").unwrap();
    assert!(!f.plugins.join("dev").exists());
    assert!(dev.join("plugin.wasm").is_file());
}

/// Install v1 with data, a disabled marker and install metadata; return the source dir.
fn installed_v1(f: &Fixture, r: &mut PluginRegistry) -> PathBuf {
    let src = f.root.join("src/demo");
    rich_source(&src, "demo", "1.0.0");
    fs::write(src.join("v1-only.txt"), "v1").unwrap();
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    let dest = f.plugins.join("demo");
    fs::create_dir_all(dest.join("data")).unwrap();
    fs::write(dest.join("data/storage.json"), "{\"token\": \"abc\"}").unwrap();
    r.disable("demo").unwrap();
    src
}

fn v2_source(f: &Fixture) -> PathBuf {
    let src2 = f.root.join("src/demo-v2");
    rich_source(&src2, "demo", "2.0.0");
    fs::create_dir_all(src2.join("data")).unwrap();
    fs::write(src2.join("data/storage.json"), "{\"from\": \"source\"}").unwrap();
    fs::write(src2.join(DISABLED_MARKER), "").unwrap();
    fs::write(src2.join(INSTALL_FILE), "{\"garbage\": true}").unwrap();
    fs::create_dir_all(src2.join("nested/data")).unwrap();
    fs::write(src2.join("nested/data/keep.txt"), "nested data is content").unwrap();
    src2
}

fn assert_v1_intact(f: &Fixture, r: &PluginRegistry, src: &Path) {
    let dest = f.plugins.join("demo");
    let p = r.get("demo").unwrap();
    assert_eq!(p.manifest.version(), "1.0.0");
    assert!(!p.enabled);
    let fresh = scanned(&f.plugins);
    let p = fresh.get("demo").unwrap();
    assert_eq!(p.manifest.version(), "1.0.0");
    assert!(!p.enabled);
    assert_eq!(p.install, Some(sample_source(src)));
    assert_eq!(fs::read_to_string(dest.join("v1-only.txt")).unwrap(), "v1");
    assert_eq!(
        fs::read_to_string(dest.join("data/storage.json")).unwrap(),
        "{\"token\": \"abc\"}"
    );
    assert!(
        temp_leftovers(&f.plugins).is_empty(),
        "{:?}",
        temp_leftovers(&f.plugins)
    );
}

#[test]
fn update_replaces_code_and_preserves_state() {
    let f = fixture();
    let mut r = scanned(&f.plugins);
    let src = installed_v1(&f, &mut r);
    let src2 = v2_source(&f);
    let p = r.update_from_dir("demo", &src2).unwrap();
    let dest = f.plugins.join("demo");
    assert_eq!(p.manifest.version(), "2.0.0");
    assert!(!p.enabled, "disabled marker kept");
    assert_eq!(p.install, Some(sample_source(&src)), ".install.json kept");
    assert_eq!(
        fs::read_to_string(dest.join("data/storage.json")).unwrap(),
        "{\"token\": \"abc\"}"
    );
    assert!(!dest.join("v1-only.txt").exists());
    assert_eq!(
        fs::read_to_string(dest.join("README.md")).unwrap(),
        "readme 2.0.0"
    );
    assert_eq!(
        fs::read_to_string(dest.join("nested/data/keep.txt")).unwrap(),
        "nested data is content"
    );
    assert!(!dest.join("target").exists());
    assert!(temp_leftovers(&f.plugins).is_empty());
    assert_eq!(
        scanned(&f.plugins).get("demo").unwrap().manifest.version(),
        "2.0.0"
    );
}

#[test]
fn update_errors() {
    let f = fixture();
    let mut r = scanned(&f.plugins);
    let src = installed_v1(&f, &mut r);
    let other = f.root.join("other");
    write_plugin(&other, "someone-else", "9.0.0");
    assert_eq!(
        r.update_from_dir("demo", &other).unwrap_err().to_string(),
        "Plugin ID mismatch: expected 'demo', found 'someone-else'"
    );
    assert_eq!(
        r.update_from_dir("ghost", &other).unwrap_err().to_string(),
        "Plugin 'ghost' not found"
    );
    assert!(matches!(
        r.update_from_dir("../demo", &other).unwrap_err(),
        RegistryError::InvalidId { .. }
    ));
    let nowasm = f.root.join("nowasm");
    write_plugin(&nowasm, "demo", "3.0.0");
    fs::remove_file(nowasm.join("plugin.wasm")).unwrap();
    assert!(matches!(
        r.update_from_dir("demo", &nowasm).unwrap_err(),
        RegistryError::WasmNotBuilt { .. }
    ));
    assert_v1_intact(&f, &r, &src);

    // Registered, but the directory vanished behind our back.
    let mut stale = scanned(&f.plugins);
    fs::remove_dir_all(f.plugins.join("demo")).unwrap();
    assert_eq!(
        stale
            .update_from_dir("demo", &other)
            .unwrap_err()
            .to_string(),
        "Plugin 'demo' is not installed"
    );
}

#[test]
fn update_failing_midway_leaves_old_plugin_intact() {
    for point in [
        FailPoint::AfterCopy,
        FailPoint::Preserve,
        FailPoint::FinalRename,
    ] {
        let f = fixture();
        let mut r = scanned(&f.plugins);
        let src = installed_v1(&f, &mut r);
        let src2 = v2_source(&f);
        set_fail(Some(point));
        let result = r.update_from_dir("demo", &src2);
        set_fail(None);
        let e = result.unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{point:?}: {e}");
        assert_v1_intact(&f, &r, &src);
        // And the update still works afterwards.
        r.update_from_dir("demo", &src2).unwrap();
        assert_eq!(r.get("demo").unwrap().manifest.version(), "2.0.0");
    }
}

#[test]
fn install_overwrite_failing_midway_leaves_old_plugin_intact() {
    for point in [FailPoint::Preserve, FailPoint::FinalRename] {
        let f = fixture();
        let mut r = scanned(&f.plugins);
        let src = installed_v1(&f, &mut r);
        let src2 = v2_source(&f);
        set_fail(Some(point));
        let result = r.install_from_dir(&src2, sample_source(&src2), true);
        set_fail(None);
        assert!(result.is_err(), "{point:?}");
        assert_v1_intact(&f, &r, &src);
    }
}

#[test]
fn set_install_source_rewrites_the_record() {
    let f = fixture();
    let src = f.root.join("src");
    write_plugin(&src, "demo", "1.0.0");
    let mut r = scanned(&f.plugins);
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    let git = InstallSource::git("https://h/r", Some("main"), Some("sub"));
    r.get_mut("demo")
        .unwrap()
        .set_install_source(git.clone())
        .unwrap();
    assert_eq!(r.get("demo").unwrap().install_source().unwrap(), &git);
    assert_eq!(scanned(&f.plugins).get("demo").unwrap().install, Some(git));
}

#[test]
fn unreadable_install_json_does_not_block_loading() {
    let f = fixture();
    write_plugin(&f.plugins.join("p"), "p", "1.0.0");
    fs::write(f.plugins.join("p").join(INSTALL_FILE), "nonsense").unwrap();
    let r = scanned(&f.plugins);
    assert_eq!(r.get("p").unwrap().install, None);
    assert!(r.load_errors().is_empty());
}

#[test]
fn plugins_for_a_newer_host_are_refused_at_install_update_and_scan() {
    let f = fixture();
    let mut r = scanned(&f.plugins);
    let src = f.root.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("plugin.wasm"), WASM).unwrap();
    fs::write(
        src.join(MANIFEST_FILE),
        manifest_text("demo", "1.0.0", "api_version = \"0.3\""),
    )
    .unwrap();
    let e = r
        .install_from_dir(&src, sample_source(&src), false)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("[plugin] api_version = \"0.3\" needs a newer host"),
        "{e}"
    );
    assert_eq!(fs::read_dir(&f.plugins).unwrap().count(), 0);

    // Installed fine, then updated from a source that needs tark 0.13: refused, old kept.
    write_plugin(&src, "demo", "1.0.0");
    r.install_from_dir(&src, sample_source(&src), false)
        .unwrap();
    fs::write(
        src.join(MANIFEST_FILE),
        manifest_text("demo", "2.0.0", "min_tark_version = \"0.13.0\""),
    )
    .unwrap();
    let e = r.update_from_dir("demo", &src).unwrap_err();
    assert!(
        e.to_string().contains("min_tark_version = \"0.13.0\""),
        "{e}"
    );
    assert_eq!(r.get("demo").unwrap().manifest.version(), "1.0.0");

    // A directory laid out by hand is skipped by scan with the same message.
    fs::write(
        f.plugins.join("demo").join(MANIFEST_FILE),
        manifest_text("demo", "1.0.0", "min_tark_version = \"1.0\""),
    )
    .unwrap();
    let r = scanned(&f.plugins);
    assert!(r.get("demo").is_none());
    assert_eq!(r.load_errors().len(), 1);
    assert!(
        r.load_errors()[0]
            .message
            .contains("this host is compatible with tark 0.12.6"),
        "{:?}",
        r.load_errors()
    );
}
