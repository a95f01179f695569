//! Tests of `scan.rs`: loading plugin directories, load errors, duplicates, the
//! `.disabled` marker and the install record of a loaded plugin.

use super::*;

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
