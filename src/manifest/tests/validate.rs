//! Tests of `validate.rs`: required fields, tark's name and version rules, the `wasm` path
//! rules (no escape from the plugin directory), warnings and the compatibility check.

use super::*;

#[test]
fn missing_required_fields_name_field_and_fix() {
    assert_eq!(
        err_text("[capabilities]\nstorage = true\n"),
        r#"/plugins/demo/plugin.toml: [plugin] section is missing (add a [plugin] section with name = "...", version = "0.1.0" and type = "...")"#
    );
    assert_eq!(
        err_text("plugin = 3\n"),
        "/plugins/demo/plugin.toml: [plugin] must be a table, found integer (write a [plugin] section with name, version and type)"
    );
    assert_eq!(
        err_text("[plugin]\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name is required (set name = "my-plugin" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] version is required (set version = "0.1.0" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\nversion = \"1.0.0\"\n"),
        "/plugins/demo/plugin.toml: [plugin] type is required (use one of: auth, tool, provider, channel, hook)"
    );
    assert_eq!(
        err_text("[plugin]\nname = 5\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name must be a string, found integer (set name = "my-plugin" under [plugin])"#
    );
}

#[test]
fn empty_name_and_version_use_tarks_rules() {
    assert_eq!(
        err_text("[plugin]\nname = \"\"\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name is required (set name = "my-plugin" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\nversion = \"\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] version is required (set version = "0.1.0" under [plugin])"#
    );
}

#[test]
fn version_must_be_semver() {
    let text = "[plugin]\nname = \"x\"\nversion = \"1.0\"\ntype = \"tool\"\n";
    assert_eq!(
        err_text(text),
        r#"/plugins/demo/plugin.toml: [plugin] version "1.0" is not valid semver (expected MAJOR.MINOR.PATCH such as 1.0.0)"#
    );
    let text = "[plugin]\nname = \"x\"\nversion = \"v1.0.0\"\ntype = \"tool\"\n";
    assert!(err_text(text).contains(r#"version "v1.0.0" is not valid semver"#));
    for ok in ["0.2.3-beta.1", "1.2.3+build.5", "10.20.30"] {
        let text = format!("[plugin]\nname = \"x\"\nversion = \"{ok}\"\ntype = \"tool\"\n");
        assert_eq!(parse(&text).unwrap().version(), ok);
    }
}

#[test]
fn wasm_path_rules() {
    let dir = Path::new("/plugins/demo");
    let m = parse(&with_plugin_line("wasm = \"dist/plugin.wasm\"")).unwrap();
    assert_eq!(m.wasm_path(dir).unwrap(), dir.join("dist/plugin.wasm"));
    let m = parse(&with_plugin_line("wasm = \"./x.wasm\"")).unwrap();
    assert_eq!(m.wasm_path(dir).unwrap(), dir.join("./x.wasm"));
    for escaping in [
        "/etc/passwd",
        "../other/plugin.wasm",
        "dist/../../x.wasm",
        "dist/../p.wasm",
    ] {
        let e = err_text(&with_plugin_line(&format!("wasm = \"{escaping}\"")));
        assert_eq!(
            e,
            format!("wasm path escapes the plugin directory: {escaping}")
        );
    }
    assert_eq!(
        err_text(&with_plugin_line("wasm = \"\"")),
        r#"/plugins/demo/plugin.toml: [plugin] wasm is empty (set wasm = "plugin.wasm" (relative to the plugin directory) or remove the key)"#
    );
    let e = err_text(&with_plugin_line("wasm = \".\""));
    assert!(
        e.contains(r#"[plugin] wasm "." does not name a file"#),
        "{e}"
    );
    // The check also guards manifests built in code.
    let mut m = parse(MINIMAL).unwrap();
    m.plugin.wasm = "/abs.wasm".into();
    assert!(matches!(
        m.validate(),
        Err(ManifestError::WasmEscape { .. })
    ));
    assert!(matches!(
        m.wasm_path(dir),
        Err(ManifestError::WasmEscape { .. })
    ));
}

#[cfg(unix)]
#[test]
fn wasm_symlink_escape_is_refused() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let plugin = tmp.path().join("plugin");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(plugin.join("build")).unwrap();
    std::fs::write(outside.join("evil.wasm"), b"\0asm").unwrap();
    std::fs::write(plugin.join("build/real.wasm"), b"\0asm").unwrap();
    let manifest_path = plugin.join(MANIFEST_FILE);

    // File symlink pointing outside.
    symlink(outside.join("evil.wasm"), plugin.join("plugin.wasm")).unwrap();
    std::fs::write(&manifest_path, MINIMAL).unwrap();
    let e = PluginManifest::load(&manifest_path).unwrap_err();
    match &e {
        ManifestError::WasmEscape { wasm, resolved, .. } => {
            assert_eq!(wasm, "plugin.wasm");
            assert_eq!(
                resolved.as_deref(),
                Some(outside.join("evil.wasm").canonicalize().unwrap().as_path())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("wasm path escapes the plugin directory: plugin.wasm"));

    // Directory symlink pointing outside, even though the module itself is missing.
    symlink(&outside, plugin.join("dist")).unwrap();
    std::fs::write(
        &manifest_path,
        format!("{MINIMAL}wasm = \"dist/missing.wasm\"\n"),
    )
    .unwrap();
    let e = PluginManifest::load(&manifest_path).unwrap_err();
    assert!(matches!(e, ManifestError::WasmEscape { .. }), "{e}");

    // A symlink that stays inside is fine.
    std::fs::remove_file(plugin.join("plugin.wasm")).unwrap();
    symlink(plugin.join("build/real.wasm"), plugin.join("plugin.wasm")).unwrap();
    std::fs::write(&manifest_path, MINIMAL).unwrap();
    let m = PluginManifest::load(&manifest_path).unwrap();
    assert_eq!(m.wasm_path(&plugin).unwrap(), plugin.join("plugin.wasm"));

    // The plugin directory itself may be reached through a symlink.
    let link = tmp.path().join("link-to-plugin");
    symlink(&plugin, &link).unwrap();
    assert_eq!(m.wasm_path(&link).unwrap(), link.join("plugin.wasm"));
}

#[test]
fn warnings_for_inert_fields_never_errors() {
    let text = with_plugin_line("min_tark_version = \"latest\"\napi_version = \"next\"\n[capabilities]\nshell = true\nfilesystem = [\"./src\"]");
    let m = parse(&text).unwrap();
    let w = m.warnings();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].contains("Plugin 'demo' requests shell access - this is dangerous!"));
    assert!(w[1].contains("filesystem = [./src]") && w[1].contains("grants no access"));
    assert!(
        w[2].contains(r#"min_tark_version "latest", which is not a version (ignored)"#),
        "{}",
        w[2]
    );
    assert!(
        w[3].contains(r#"api_version "next", which is not a version"#),
        "{}",
        w[3]
    );

    for fine in ["0.12.6", "0.12", "0.9.1", "0.12.6-rc.1", ">=0.9", "^0.12"] {
        let m = parse(&with_plugin_line(&format!("min_tark_version = \"{fine}\""))).unwrap();
        assert!(m.warnings().is_empty(), "{fine}: {:?}", m.warnings());
        assert!(m.check_compatibility().is_ok(), "{fine}");
    }
    for known in ["0.1", "0.1.0", "0.1.7", "0.2", "0.2.0", "0.2.9", "v0.2"] {
        let m = parse(&with_plugin_line(&format!("api_version = \"{known}\""))).unwrap();
        assert!(m.warnings().is_empty(), "{known}");
    }
    let m = parse(&with_plugin_line("api_version = \"0.0.3\"")).unwrap();
    assert!(
        m.warnings()[0].contains("older than any plugin API"),
        "{:?}",
        m.warnings()
    );
}

#[test]
fn newer_api_or_tark_version_is_refused_naming_field_value_and_support() {
    for newer in ["0.3", "0.3.0", "1", "1.0", "1.0.0", "2.1.0"] {
        let e = err_text(&with_plugin_line(&format!("api_version = \"{newer}\"")));
        assert_eq!(
            e,
            format!("/plugins/demo/plugin.toml: [plugin] api_version = \"{newer}\" needs a newer host: this host implements plugin API 0.2.0 and accepts api_version 0.1.x and 0.2.x (install a version of the plugin built for this host, or lower api_version if the plugin really works with it)")
        );
    }
    for newer in ["0.12.7", "0.13", "1.0.0", ">=0.13", "^1"] {
        let e = err_text(&with_plugin_line(&format!(
            "min_tark_version = \"{newer}\""
        )));
        assert!(
            e.starts_with(&format!("/plugins/demo/plugin.toml: [plugin] min_tark_version = \"{newer}\" needs a newer host: this host is compatible with tark 0.12.6")),
            "{e}"
        );
    }
    // A real file: load refuses too, with the typed error.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(MANIFEST_FILE);
    std::fs::write(&path, with_plugin_line("min_tark_version = \"0.20.0\"")).unwrap();
    match PluginManifest::load(&path) {
        Err(ManifestError::Incompatible { field, value, .. }) => {
            assert_eq!(
                (field.as_str(), value.as_str()),
                ("min_tark_version", "0.20.0")
            );
        }
        other => panic!("{other:?}"),
    }
    // Built in code: check_compatibility is the same rule.
    let mut m = parse(MINIMAL).unwrap();
    m.plugin.api_version = "0.9".into();
    assert!(matches!(
        m.check_compatibility(),
        Err(ManifestError::Incompatible { .. })
    ));
}
