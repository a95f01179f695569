//! `integrations/tark/wasmer-feature.patch` applies cleanly to tark 0.12.6 as kept in
//! the shared reference copy (`../shared/reference/tark` next to the repository, or
//! `TARK_REFERENCE_DIR`), and what it changes is what `integrations/tark/README.md`
//! says: a `wasmer` feature enabling an optional `tark-wasmer`, the JavaScript grammar
//! through the compat crate, and `src/plugins/mod.rs` re-exporting `tark_wasmer::tark`
//! under the feature while the wasmtime module stays as it is without it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn patch() -> PathBuf {
    repo().join("integrations/tark/wasmer-feature.patch")
}

fn reference() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("TARK_REFERENCE_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join("../shared/reference/tark")])
        .collect();
    candidates
        .iter()
        .find(|p| p.join("src/plugins/mod.rs").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("tark reference copy not found (tried {candidates:?}; set TARK_REFERENCE_DIR)")
        })
}

fn git_apply(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .arg("apply")
        .args(args)
        .arg(patch())
        .current_dir(dir)
        .output()
        .expect("run git apply");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn patch_applies_cleanly_to_the_reference_copy() {
    let (ok, output) = git_apply(&reference(), &["--check", "-v"]);
    assert!(ok, "git apply --check failed:\n{output}");
    for file in [
        "Cargo.toml",
        "src/plugins/mod.rs",
        "crates/tree-sitter-javascript-compat/Cargo.toml",
        "crates/tree-sitter-javascript-compat/src/lib.rs",
    ] {
        assert!(
            output.contains(&format!("Checking patch {file}")),
            "{output}"
        );
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
            let mut perms = std::fs::metadata(&to).expect("meta").permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&to, perms).expect("chmod");
        }
    }
}

#[test]
fn patched_tark_has_the_wasmer_feature_and_keeps_wasmtime_without_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let tree = tmp.path().join("tark");
    copy_tree(&reference(), &tree);
    let (ok, output) = git_apply(&tree, &[]);
    assert!(ok, "git apply failed:\n{output}");

    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(tree.join("Cargo.toml")).expect("read"))
            .expect("Cargo.toml parses");
    let deps = manifest["dependencies"].as_table().expect("dependencies");
    let tw = deps["tark-wasmer"].as_table().expect("tark-wasmer table");
    assert_eq!(tw.get("optional").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(
        tw.get("path").and_then(|v| v.as_str()),
        Some("../tark-wasmer")
    );
    let features = manifest["features"].as_table().expect("features");
    assert_eq!(
        features["wasmer"].as_array().expect("wasmer feature"),
        &vec![toml::Value::String("dep:tark-wasmer".into())]
    );
    let default: Vec<&str> = features["default"]
        .as_array()
        .expect("default")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(!default.contains(&"wasmer"), "wasmer must stay opt-in");
    assert_eq!(deps["wasmtime"].as_str(), Some("27"), "wasmtime untouched");
    let js = deps["tree-sitter-javascript"]
        .as_table()
        .expect("js grammar");
    assert_eq!(
        js.get("package").and_then(|v| v.as_str()),
        Some("tark-tree-sitter-javascript")
    );
    let compat: toml::Table = toml::from_str(
        &std::fs::read_to_string(tree.join("crates/tree-sitter-javascript-compat/Cargo.toml"))
            .expect("compat manifest"),
    )
    .expect("compat parses");
    let grammar = compat["dependencies"]["grammar"]
        .as_table()
        .expect("grammar");
    assert_eq!(
        grammar.get("package").and_then(|v| v.as_str()),
        Some("tree-sitter-javascript")
    );
    assert_eq!(
        grammar.get("version").and_then(|v| v.as_str()),
        Some("0.23")
    );
    assert_eq!(
        compat["lib"]["name"].as_str(),
        Some("tree_sitter_javascript")
    );

    // mod.rs: the re-export under the feature; every wasmtime item only without it.
    let module = std::fs::read_to_string(tree.join("src/plugins/mod.rs")).expect("mod.rs");
    assert!(module.contains("#[cfg(feature = \"wasmer\")]\npub use tark_wasmer::tark::*;"));
    let lines: Vec<&str> = module.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let item = line.starts_with("pub mod ")
            || line.starts_with("mod ")
            || line.starts_with("pub use ")
            || line.starts_with("pub const ")
            || line.starts_with("pub fn ");
        if item && !line.contains("tark_wasmer") {
            assert_eq!(
                i.checked_sub(1).and_then(|j| lines.get(j)).copied(),
                Some("#[cfg(not(feature = \"wasmer\"))]"),
                "unguarded item: {line}"
            );
        }
    }
    // Nothing of the wasmtime host itself changed.
    for file in [
        "host/mod.rs",
        "manifest/mod.rs",
        "registry/mod.rs",
        "oauth.rs",
        "widget.rs",
        "ws_host.rs",
    ] {
        assert_eq!(
            std::fs::read(tree.join("src/plugins").join(file)).expect("patched"),
            std::fs::read(reference().join("src/plugins").join(file)).expect("reference"),
            "{file} changed"
        );
    }
}
