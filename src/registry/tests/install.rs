//! Tests of `install.rs`: install, overwrite, remove and update, their error texts, and
//! rollback when a step fails midway (injected through `FailPoint`).

use super::*;

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

#[test]
fn temp_names_parse_from_the_right_and_ids_may_have_dashes() {
    use super::super::install::{parse_temp_name, process_alive};
    assert_eq!(
        parse_temp_name(".tmp-old-my-plugin-1234-0"),
        Some(("old", "my-plugin", 1234))
    );
    assert_eq!(
        parse_temp_name(".tmp-update-x-77-12"),
        Some(("update", "x", 77))
    );
    for bad in [
        ".tmp-old-x-y",
        "old-x-1-2",
        ".tmp-old--1-2",
        ".tmp-old-../x-1-2",
    ] {
        assert_eq!(parse_temp_name(bad), None, "{bad}");
    }
    assert!(process_alive(std::process::id()));
}
