//! Unit tests for the registry, one file per source file (`scan.rs`, `source.rs`,
//! `install.rs`, `copy.rs`); this file holds the shared fixtures and the tests of `mod.rs`
//! (plugins-directory resolution).

use super::install::{FailPoint, FAIL_AT};
use super::*;
use crate::manifest::{PluginType, MANIFEST_FILE};
use std::fs;
use std::path::{Path, PathBuf};

mod copy;
mod install;
mod scan;
mod source;

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
