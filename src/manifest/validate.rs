//! Manifest validation: tark's rules (in tark's order), the `wasm` path rules, warnings for
//! what tark accepts but the author should know about, and the host-compatibility check.

use std::path::{Component, Path, PathBuf};

use super::{
    invalid, is_valid_plugin_name, printable, printable_list, ManifestError, PluginManifest,
    PluginType, COMPAT_TARK_VERSION, MANIFEST_FILE, PLUGIN_API_VERSION,
};

impl PluginManifest {
    /// tark's validation (plus the `wasm` path rule), reporting errors against
    /// `plugin.toml`. Prefer [`Self::validate_at`] when the file is known.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.validate_at(Path::new(MANIFEST_FILE))
    }

    /// Validate, naming `manifest_path` in errors. Rules in tark's order: name required,
    /// version required, version semver, name characters; then the `wasm` path.
    pub fn validate_at(&self, manifest_path: &Path) -> Result<(), ManifestError> {
        let p = &self.plugin;
        if p.name.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] name",
                "is required".into(),
                r#"set name = "my-plugin" under [plugin]"#,
            ));
        }
        if p.version.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] version",
                "is required".into(),
                r#"set version = "0.1.0" under [plugin]"#,
            ));
        }
        if semver::Version::parse(&p.version).is_err() {
            return Err(invalid(
                manifest_path,
                "[plugin] version",
                format!("{:?} is not valid semver", p.version),
                "expected MAJOR.MINOR.PATCH such as 1.0.0",
            ));
        }
        if !is_valid_plugin_name(&p.name) {
            return Err(invalid(
                manifest_path,
                "[plugin] name",
                format!(
                    "{:?} must be alphanumeric with hyphens/underscores",
                    p.name
                ),
                "use only letters, digits, '-' and '_'; the name is also the install directory name",
            ));
        }
        self.check_wasm_lexical(manifest_path)?;
        self.limits
            .request()
            .map(|_| ())
            .map_err(|(field, message, fix)| invalid(manifest_path, field, message, fix))
    }

    /// The checks on `wasm` that need no file system: not empty, names a file, relative,
    /// no `..`.
    fn check_wasm_lexical(&self, manifest_path: &Path) -> Result<(), ManifestError> {
        let wasm = &self.plugin.wasm;
        if wasm.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] wasm",
                "is empty".into(),
                r#"set wasm = "plugin.wasm" (relative to the plugin directory) or remove the key"#,
            ));
        }
        let escape = || ManifestError::WasmEscape {
            path: manifest_path.to_path_buf(),
            wasm: wasm.clone(),
            resolved: None,
        };
        let path = Path::new(wasm);
        if path.is_absolute() || path.has_root() {
            return Err(escape());
        }
        let mut last_is_name = false;
        for component in path.components() {
            match component {
                Component::Normal(_) => last_is_name = true,
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(escape())
                }
            }
        }
        if !last_is_name {
            return Err(invalid(
                manifest_path,
                "[plugin] wasm",
                format!("{wasm:?} does not name a file"),
                r#"set wasm to the module's path, e.g. "plugin.wasm" or "dist/plugin.wasm""#,
            ));
        }
        Ok(())
    }

    /// `<plugin_dir>/<wasm>` after checking that it stays inside `plugin_dir`, also after
    /// resolving symlinks along the part of the path that exists. Does not require the file
    /// to exist (the caller reports [`ManifestError::WasmMissing`]).
    pub fn wasm_path(&self, plugin_dir: &Path) -> Result<PathBuf, ManifestError> {
        let manifest_path = plugin_dir.join(MANIFEST_FILE);
        self.check_wasm_lexical(&manifest_path)?;
        let joined = plugin_dir.join(&self.plugin.wasm);
        let Ok(root) = std::fs::canonicalize(plugin_dir) else {
            // Nothing exists yet, so there is no symlink to follow.
            return Ok(joined);
        };
        // Resolve the deepest existing prefix: a symlinked directory that leads outside is
        // an escape even when the module itself is missing.
        let mut probe: &Path = &joined;
        loop {
            match std::fs::canonicalize(probe) {
                Ok(real) if real.starts_with(&root) => return Ok(joined),
                Ok(real) => {
                    return Err(ManifestError::WasmEscape {
                        path: manifest_path,
                        wasm: self.plugin.wasm.clone(),
                        resolved: Some(real),
                    })
                }
                Err(_) => match probe.parent() {
                    Some(parent) if probe != plugin_dir && !parent.as_os_str().is_empty() => {
                        probe = parent
                    }
                    _ => return Ok(joined),
                },
            }
        }
    }

    /// Things tark accepts but the user should know about (see the test
    /// `warnings_for_inert_fields_never_errors`). Never errors: refusing these would break
    /// plugins that work under tark.
    pub fn warnings(&self) -> Vec<String> {
        let id = printable(&self.plugin.name);
        let mut out = Vec::new();
        if self.capabilities.shell {
            out.push(format!(
                "Plugin '{id}' requests shell access - this is dangerous! (no shell access is granted: this host has no shell function)"
            ));
        }
        if !self.capabilities.filesystem.is_empty() {
            out.push(format!(
                "Plugin '{id}' declares [capabilities] filesystem = [{}]; this grants no access (only fs_read paths are readable)",
                printable_list(&self.capabilities.filesystem)
            ));
        }
        if let Some(min) = &self.plugin.min_tark_version {
            if let VersionCheck::Unparsed = check_min_tark_version(min) {
                out.push(format!(
                    "Plugin '{id}' has min_tark_version {:?}, which is not a version (ignored)",
                    printable(min)
                ));
            }
        }
        match check_api_version(&self.plugin.api_version) {
            VersionCheck::Unparsed => out.push(format!(
                "Plugin '{id}' declares api_version {:?}, which is not a version (ignored; this host implements plugin API {PLUGIN_API_VERSION})",
                printable(&self.plugin.api_version)
            )),
            VersionCheck::Older => out.push(format!(
                "Plugin '{id}' declares api_version {:?}, older than any plugin API tark published (0.1); loading it anyway",
                printable(&self.plugin.api_version)
            )),
            VersionCheck::Ok | VersionCheck::Newer => {}
        }
        out
    }

    /// Refuse a plugin built for a newer host: `api_version` with a newer major or minor
    /// than [`PLUGIN_API_VERSION`], or `min_tark_version` above [`COMPAT_TARK_VERSION`]
    /// (a plain version, `0.13`, or a requirement such as `>=0.13` that 0.12.6 does not
    /// meet). Values that are not versions at all are only warned about (see
    /// [`Self::warnings`]): tark never read them, so refusing them would break plugins that
    /// run under tark. Called by [`Self::load`] and every parse, so installing, updating
    /// and loading all refuse such a plugin with the same message.
    pub fn check_compatibility(&self) -> Result<(), ManifestError> {
        self.check_compatibility_at(Path::new(MANIFEST_FILE))
    }

    pub(super) fn check_compatibility_at(&self, path: &Path) -> Result<(), ManifestError> {
        let p = &self.plugin;
        if let VersionCheck::Newer = check_api_version(&p.api_version) {
            return Err(ManifestError::Incompatible {
                path: path.to_path_buf(),
                field: "api_version".into(),
                value: printable(&p.api_version),
                supported: format!(
                    "this host implements plugin API {PLUGIN_API_VERSION} and accepts api_version 0.1.x and 0.2.x"
                ),
            });
        }
        if let Some(min) = &p.min_tark_version {
            if let VersionCheck::Newer = check_min_tark_version(min) {
                return Err(ManifestError::Incompatible {
                    path: path.to_path_buf(),
                    field: "min_tark_version".into(),
                    value: printable(min),
                    supported: format!("this host is compatible with tark {COMPAT_TARK_VERSION}"),
                });
            }
        }
        Ok(())
    }
}

/// How a declared version compares with what this host supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionCheck {
    /// Supported.
    Ok,
    /// Needs a newer host: refused.
    Newer,
    /// Older than anything tark published: accepted with a warning.
    Older,
    /// Not a version: ignored with a warning.
    Unparsed,
}

/// `MAJOR`, `MAJOR.MINOR` or a full semver version (missing parts are 0); surrounding
/// spaces and a leading `v` are tolerated.
fn lenient_version(text: &str) -> Option<semver::Version> {
    let t = text.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let mut parts = t.split('.');
    let major = parts.next()?.parse::<u64>().ok()?;
    let minor = match parts.next() {
        Some(m) => m.parse::<u64>().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(semver::Version::new(major, minor, 0))
}

/// `api_version`: same major and a minor up to ours is fine; `0.0.x` is older than tark's
/// first API; anything with a newer major or minor needs a newer host.
fn check_api_version(declared: &str) -> VersionCheck {
    let (Some(v), Some(ours)) = (
        lenient_version(declared),
        lenient_version(PLUGIN_API_VERSION),
    ) else {
        return VersionCheck::Unparsed;
    };
    if (v.major, v.minor) > (ours.major, ours.minor) {
        VersionCheck::Newer
    } else if (v.major, v.minor) < (0, 1) {
        VersionCheck::Older
    } else {
        VersionCheck::Ok
    }
}

/// `min_tark_version`: a version (lenient) above [`COMPAT_TARK_VERSION`], or a requirement
/// (`>=0.13`, `^0.13`) that it does not meet, needs a newer host.
fn check_min_tark_version(declared: &str) -> VersionCheck {
    let Ok(compat) = semver::Version::parse(COMPAT_TARK_VERSION) else {
        return VersionCheck::Unparsed;
    };
    if let Some(v) = lenient_version(declared) {
        // Pre-releases sort below their release: "0.12.6-rc.1" is satisfied by 0.12.6.
        return if v > compat {
            VersionCheck::Newer
        } else {
            VersionCheck::Ok
        };
    }
    match semver::VersionReq::parse(declared.trim()) {
        Ok(req) if req.matches(&compat) => VersionCheck::Ok,
        Ok(_) => VersionCheck::Newer,
        Err(_) => VersionCheck::Unparsed,
    }
}

/// Before serde sees the manifest: check the `[plugin]` keys tark requires so the error
/// names the field and the fix instead of serde's "missing field".
pub(super) fn precheck_plugin_table(table: &toml::Table, path: &Path) -> Result<(), ManifestError> {
    let plugin = match table.get("plugin") {
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            return Err(invalid(
                path,
                "[plugin]",
                format!("must be a table, found {}", other.type_str()),
                "write a [plugin] section with name, version and type",
            ))
        }
        None => {
            return Err(invalid(
                path,
                "[plugin]",
                "section is missing".into(),
                r#"add a [plugin] section with name = "...", version = "0.1.0" and type = "...""#,
            ))
        }
    };
    let required = [
        ("name", r#"set name = "my-plugin" under [plugin]"#),
        ("version", r#"set version = "0.1.0" under [plugin]"#),
    ];
    for (key, fix) in required {
        let field = format!("[plugin] {key}");
        match plugin.get(key) {
            Some(toml::Value::String(_)) => {}
            Some(other) => {
                return Err(invalid(
                    path,
                    &field,
                    format!("must be a string, found {}", other.type_str()),
                    fix,
                ))
            }
            None => return Err(invalid(path, &field, "is required".into(), fix)),
        }
    }
    let type_fix = format!("use one of: {}", PluginType::valid_list());
    match plugin.get("type") {
        Some(toml::Value::String(s)) => {
            if s.parse::<PluginType>().is_err() {
                return Err(invalid(
                    path,
                    "[plugin] type",
                    format!("{:?} is not a valid plugin type", printable(s)),
                    &type_fix,
                ));
            }
        }
        Some(other) => {
            return Err(invalid(
                path,
                "[plugin] type",
                format!("must be a string, found {}", other.type_str()),
                &type_fix,
            ))
        }
        None => {
            return Err(invalid(
                path,
                "[plugin] type",
                "is required".into(),
                &type_fix,
            ))
        }
    }
    Ok(())
}
