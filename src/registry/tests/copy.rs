//! Tests of `copy.rs` through `install_from_dir`: what is copied, what is skipped
//! (build output, `.git`), and which symlinks are followed.

use super::*;

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
