//! The plugins directory: tark's on-disk layout (legacy spec §5.1, §5.2) with the hygiene
//! fixes of §6.4 item 24.
//!
//! Layout: `<plugins_dir>/<id>/` holds a copy of the plugin's source tree, `data/` (runtime
//! storage), `.install.json` (where it came from) and an optional empty `.disabled` marker.
//! Directories written by tark and by this host are interchangeable.
//!
//! Changes to an installed plugin are all-or-nothing: the new tree is built and validated in
//! a hidden sibling directory (`.tmp-…`, ignored by [`PluginRegistry::scan`]) and then moved
//! into place with renames; on any error the old plugin is put back as it was. `data/` is
//! never copied, only moved, so nothing the plugin stored is lost.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::manifest::{
    is_valid_plugin_name, ManifestError, PluginManifest, PluginType, MANIFEST_FILE,
};

/// Environment variable that overrides the plugins directory (after an explicit CLI value).
pub const PLUGINS_DIR_ENV: &str = "TARK_PLUGINS_DIR";
/// Install-source record inside a plugin directory (tark's name and format).
pub const INSTALL_FILE: &str = ".install.json";
/// Marker file whose presence disables a plugin (tark's name).
pub const DISABLED_MARKER: &str = ".disabled";
/// Runtime data directory inside a plugin directory.
pub const DATA_DIR: &str = "data";
/// Storage file inside the data directory.
pub const STORAGE_FILE: &str = "storage.json";

/// Prefix of our staging / backup directories; `scan` ignores them. Plugin ids cannot start
/// with `.`, so they never collide with an install directory.
const TEMP_PREFIX: &str = ".tmp-";
/// What an update keeps from the installed plugin (tark's list).
const PRESERVED_ON_UPDATE: [&str; 3] = [DATA_DIR, DISABLED_MARKER, INSTALL_FILE];
/// What a re-install over an existing directory keeps.
const PRESERVED_ON_INSTALL: [&str; 1] = [DATA_DIR];
/// Directory nesting limit while copying a source tree (symlinks can fan out).
const MAX_COPY_DEPTH: usize = 64;
/// Entry limit while copying a source tree.
const MAX_COPY_ENTRIES: usize = 200_000;

/// tark's plugins directory: `dirs::data_local_dir()/tark/plugins`, falling back to
/// `~/.local/share/tark/plugins` (and to a relative `.local/share/tark/plugins` when not even
/// the home directory is known).
pub fn default_plugins_dir() -> PathBuf {
    dirs::data_local_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("share")))
        .unwrap_or_else(|| PathBuf::from(".local").join("share"))
        .join("tark")
        .join("plugins")
}

/// The plugins directory to use: an explicit value, else `$TARK_PLUGINS_DIR` (when set and
/// non-empty), else [`default_plugins_dir`].
pub fn resolve_plugins_dir(cli: Option<PathBuf>) -> PathBuf {
    resolve_with(cli, std::env::var_os(PLUGINS_DIR_ENV))
}

fn resolve_with(cli: Option<PathBuf>, env: Option<OsString>) -> PathBuf {
    match (cli, env) {
        (Some(dir), _) => dir,
        (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_plugins_dir(),
    }
}

/// Errors from registry operations. Texts are tark's where tark has one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file-system operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The I/O error.
        error: io::Error,
    },
    /// The manifest (or its `wasm`) is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The source directory has no `plugin.toml`.
    #[error("No plugin.toml found in {}\nMake sure the path contains a valid plugin.", dir.display())]
    NoManifest {
        /// The source directory.
        dir: PathBuf,
    },
    /// The source's declared module does not exist.
    #[error("WASM module not found: {}\nDid you forget to build the plugin?", path.display())]
    WasmNotBuilt {
        /// Full path that was looked up.
        path: PathBuf,
    },
    /// Install without overwrite of an id that is registered.
    #[error("Plugin '{id}' is already installed")]
    AlreadyInstalled {
        /// Plugin id.
        id: String,
    },
    /// No registered plugin has this id.
    #[error("Plugin '{id}' not found")]
    NotFound {
        /// Plugin id.
        id: String,
    },
    /// The plugin is registered but its directory is gone.
    #[error("Plugin '{id}' is not installed")]
    NotInstalled {
        /// Plugin id.
        id: String,
    },
    /// Update source declares another plugin.
    #[error("Plugin ID mismatch: expected '{expected}', found '{found}'")]
    IdMismatch {
        /// Id being updated.
        expected: String,
        /// Id in the source manifest.
        found: String,
    },
    /// The id is not a safe directory name, so it is never joined onto a path.
    #[error("Invalid plugin id {id:?}: a plugin id must be alphanumeric with hyphens/underscores")]
    InvalidId {
        /// The rejected id.
        id: String,
    },
    /// The plugin has no `.install.json` (needed by `update`).
    #[error("Missing install metadata: {}", path.display())]
    MissingInstallMetadata {
        /// Expected `.install.json` path.
        path: PathBuf,
    },
    /// `.install.json` exists but is not tark's format.
    #[error("Invalid install metadata: {}: {message}", path.display())]
    InvalidInstallMetadata {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        message: String,
    },
    /// A recorded local source no longer exists (for `update`).
    #[error("Local plugin source path not found: {}", path.display())]
    LocalSourceMissing {
        /// The resolved source path.
        path: PathBuf,
    },
    /// Copying the source would copy the plugins directory into itself.
    #[error("Cannot install from {}: it contains the plugins directory {}", src.display(), plugins_dir.display())]
    SourceContainsPluginsDir {
        /// The source directory.
        src: PathBuf,
        /// The plugins directory.
        plugins_dir: PathBuf,
    },
    /// A path that `.install.json` cannot record (it stores UTF-8 strings).
    #[error("Path is not valid UTF-8: {}", path.display())]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// The source tree is too deep or too large to copy.
    #[error("Cannot copy {}: {message}", path.display())]
    SourceTooLarge {
        /// Where the limit was hit.
        path: PathBuf,
        /// Which limit.
        message: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> RegistryError {
    let context = context.into();
    move |error| RegistryError::Io { context, error }
}

fn check_id(id: &str) -> Result<(), RegistryError> {
    if is_valid_plugin_name(id) {
        Ok(())
    } else {
        Err(RegistryError::InvalidId { id: id.to_string() })
    }
}

/// `.install.json`: where a plugin came from, so `update` can fetch it again. Field order is
/// tark's struct order, which is the key order in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSource {
    /// Cloned from git (`url` is a git URL) or copied from a local directory.
    pub is_git: bool,
    /// Git URL as given, or the local source directory (absolute when written by this host;
    /// tark may have written a relative path).
    pub url: String,
    /// Git branch (`null` for local sources).
    pub branch: Option<String>,
    /// Subdirectory inside the repository (`null` for local sources).
    pub path: Option<String>,
    /// RFC 3339 install time (chrono `to_rfc3339`); kept unchanged by updates.
    #[serde(default)]
    pub installed_at: String,
}

impl InstallSource {
    /// A local install from `source_dir`, recorded as an absolute path (spec §6.4 item 24)
    /// and stamped now.
    pub fn local(source_dir: &Path) -> Result<Self, RegistryError> {
        let abs = std::path::absolute(source_dir).map_err(io_err(format!(
            "Failed to resolve {}",
            source_dir.display()
        )))?;
        let url = abs
            .to_str()
            .ok_or_else(|| RegistryError::NonUtf8Path { path: abs.clone() })?
            .to_string();
        Ok(Self {
            is_git: false,
            url,
            branch: None,
            path: None,
            installed_at: now_rfc3339(),
        })
    }

    /// A git install of `url` (as given) at `branch`, optionally from subdirectory `path`,
    /// stamped now.
    pub fn git(url: &str, branch: Option<&str>, path: Option<&str>) -> Self {
        Self {
            is_git: true,
            url: url.to_string(),
            branch: branch.map(str::to_string),
            path: path.map(str::to_string),
            installed_at: now_rfc3339(),
        }
    }

    /// For local sources, the directory to re-read on update: `~` expanded, and a relative
    /// path (as tark records it) resolved against the current directory. `None` for git.
    pub fn source_path(&self) -> Option<PathBuf> {
        if self.is_git {
            return None;
        }
        let expanded = match (self.url.as_str(), dirs::home_dir()) {
            ("~", Some(home)) => home,
            (url, Some(home)) if url.starts_with("~/") => home.join(url.get(2..).unwrap_or("")),
            (url, _) => PathBuf::from(url),
        };
        if expanded.is_absolute() {
            return Some(expanded);
        }
        Some(match std::env::current_dir() {
            Ok(cwd) => cwd.join(expanded),
            Err(_) => expanded,
        })
    }

    /// The file contents tark writes: pretty JSON with 2-space indent, no trailing newline.
    pub fn to_json_pretty(&self) -> Result<String, RegistryError> {
        serde_json::to_string_pretty(self).map_err(|e| RegistryError::Io {
            context: "Failed to serialize install metadata".into(),
            error: io::Error::other(e),
        })
    }

    /// Read `<plugin_dir>/.install.json`; `Ok(None)` when it does not exist.
    pub fn read(plugin_dir: &Path) -> Result<Option<Self>, RegistryError> {
        let path = plugin_dir.join(INSTALL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("Failed to read {}", path.display()))(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RegistryError::InvalidInstallMetadata {
                path,
                message: e.to_string(),
            })
    }

    /// Write `<plugin_dir>/.install.json` atomically (temporary file + rename).
    pub fn write(&self, plugin_dir: &Path) -> Result<(), RegistryError> {
        let path = plugin_dir.join(INSTALL_FILE);
        let tmp = plugin_dir.join(format!("{INSTALL_FILE}.tmp-{}", std::process::id()));
        let json = self.to_json_pretty()?;
        std::fs::write(&tmp, json).map_err(io_err(format!("Failed to write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(format!("Failed to write {}", path.display()))(e)
        })
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// One installed plugin: its directory, validated manifest and state.
#[derive(Debug, Clone)]
pub struct InstalledPlugin {
    /// Plugin id (`[plugin] name`).
    pub id: String,
    /// Install directory (normally `<plugins_dir>/<id>`).
    pub dir: PathBuf,
    /// Validated manifest.
    pub manifest: PluginManifest,
    /// `false` when `.disabled` exists.
    pub enabled: bool,
    /// `.install.json`, when present and readable.
    pub install: Option<InstallSource>,
}

impl InstalledPlugin {
    /// Load a plugin directory: manifest (validated, warnings logged), `wasm` inside the
    /// directory and present, `.disabled`, `.install.json` (an unreadable one is logged and
    /// treated as absent: tark does not need it to run the plugin).
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let manifest = PluginManifest::load(&dir.join(MANIFEST_FILE))?;
        Self::from_manifest(dir, manifest)
    }

    /// [`Self::load`] without logging manifest warnings.
    pub fn load_quiet(dir: &Path) -> Result<Self, ManifestError> {
        let manifest = PluginManifest::load_quiet(&dir.join(MANIFEST_FILE))?;
        Self::from_manifest(dir, manifest)
    }

    fn from_manifest(dir: &Path, manifest: PluginManifest) -> Result<Self, ManifestError> {
        let plugin = Self {
            id: manifest.id().to_string(),
            dir: dir.to_path_buf(),
            enabled: !exists_no_follow(&dir.join(DISABLED_MARKER)),
            manifest,
            install: None,
        };
        plugin.checked_wasm_path()?;
        let install = match InstallSource::read(dir) {
            Ok(install) => install,
            Err(e) => {
                log::warn!("{e}");
                None
            }
        };
        Ok(Self { install, ..plugin })
    }

    /// Plugin id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Plugin type.
    pub fn plugin_type(&self) -> PluginType {
        self.manifest.plugin_type()
    }

    /// The module to run: `<dir>/<wasm>` (checked when the plugin was loaded; use
    /// [`Self::checked_wasm_path`] to check again right before reading it).
    pub fn wasm_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.plugin.wasm)
    }

    /// [`Self::wasm_path`], checked again now (inside `dir` after resolving symlinks, and
    /// a file), since the directory may have changed since it was loaded.
    pub fn checked_wasm_path(&self) -> Result<PathBuf, ManifestError> {
        let wasm = self.manifest.wasm_path(&self.dir)?;
        if wasm.is_file() {
            Ok(wasm)
        } else {
            Err(ManifestError::WasmMissing { path: wasm })
        }
    }

    /// `<dir>/data`: the plugin's runtime data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join(DATA_DIR)
    }

    /// `<dir>/data/storage.json`.
    pub fn storage_path(&self) -> PathBuf {
        self.data_dir().join(STORAGE_FILE)
    }

    /// Whether the plugin is enabled (no `.disabled` marker when it was loaded).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// See [`crate::manifest::ActivationConfig::should_activate_for`].
    pub fn should_activate_for(&self, event: &str) -> bool {
        self.manifest.activation.should_activate_for(event)
    }

    /// The install record `update` needs; tark's error when there is none.
    pub fn install_source(&self) -> Result<&InstallSource, RegistryError> {
        self.install
            .as_ref()
            .ok_or_else(|| RegistryError::MissingInstallMetadata {
                path: self.dir.join(INSTALL_FILE),
            })
    }

    /// Replace the install record on disk and in memory (e.g. to record a tark-written
    /// relative path as absolute).
    pub fn set_install_source(&mut self, source: InstallSource) -> Result<(), RegistryError> {
        source.write(&self.dir)?;
        self.install = Some(source);
        Ok(())
    }
}

/// A plugin directory that could not be used during [`PluginRegistry::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The directory.
    pub dir: PathBuf,
    /// Why (the error text, or the duplicate-id explanation).
    pub message: String,
}

/// All installed plugins, keyed by id (manifest name), sorted.
#[derive(Debug)]
pub struct PluginRegistry {
    plugins_dir: PathBuf,
    plugins: BTreeMap<String, InstalledPlugin>,
    load_errors: Vec<LoadError>,
}

/// Test-only fault injection points for the rename sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailPoint {
    AfterCopy,
    Preserve,
    FinalRename,
}

#[cfg(test)]
thread_local! {
    static FAIL_AT: std::cell::Cell<Option<FailPoint>> = const { std::cell::Cell::new(None) };
}

fn fail_point(point: FailPoint) -> Result<(), RegistryError> {
    #[cfg(test)]
    if FAIL_AT.with(|f| f.get()) == Some(point) {
        return Err(RegistryError::Io {
            context: format!("injected failure at {point:?}"),
            error: io::Error::other("injected"),
        });
    }
    let _ = point;
    Ok(())
}

impl PluginRegistry {
    /// A registry over `plugins_dir`; call [`Self::scan`] to populate it.
    pub fn new(plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            plugins: BTreeMap::new(),
            load_errors: Vec::new(),
        }
    }

    /// (Re)read the plugins directory, creating it if missing. Broken plugins are logged
    /// (`Failed to load plugin at <dir>: <err>`) and kept in [`Self::load_errors`];
    /// directories without `plugin.toml`, plain files and our `.tmp-` directories are
    /// skipped. Duplicate ids: the directory named like the id wins, else the first in
    /// sorted order (both with a warning).
    pub fn scan(&mut self) -> Result<(), RegistryError> {
        self.plugins.clear();
        self.load_errors.clear();
        std::fs::create_dir_all(&self.plugins_dir).map_err(io_err(format!(
            "Failed to create plugins directory {}",
            self.plugins_dir.display()
        )))?;
        let reader = std::fs::read_dir(&self.plugins_dir).map_err(io_err(format!(
            "Failed to read plugins directory {}",
            self.plugins_dir.display()
        )))?;
        let mut dirs = Vec::new();
        for entry in reader {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    log::warn!(
                        "Failed to read an entry of {}: {e}",
                        self.plugins_dir.display()
                    );
                    continue;
                }
            };
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                log::debug!("Skipping {}: temporary directory", path.display());
                continue;
            }
            if !path.is_dir() {
                continue;
            }
            if !path.join(MANIFEST_FILE).exists() {
                log::debug!("Skipping {}: no plugin.toml", path.display());
                continue;
            }
            dirs.push(path);
        }
        dirs.sort();
        for dir in dirs {
            match InstalledPlugin::load(&dir) {
                Ok(plugin) => self.add_scanned(plugin),
                Err(e) => {
                    log::warn!("Failed to load plugin at {}: {e}", dir.display());
                    self.load_errors.push(LoadError {
                        dir,
                        message: e.to_string(),
                    });
                }
            }
        }
        log::debug!("Loaded {} plugins", self.plugins.len());
        Ok(())
    }

    fn add_scanned(&mut self, plugin: InstalledPlugin) {
        let named_like_id =
            |p: &InstalledPlugin| p.dir.file_name() == Some(OsStr::new(p.id.as_str()));
        if !named_like_id(&plugin) {
            log::warn!(
                "Plugin directory {} holds plugin '{}': the directory name differs from the plugin id",
                plugin.dir.display(),
                plugin.id
            );
        }
        match self.plugins.entry(plugin.id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(plugin);
            }
            Entry::Occupied(mut slot) => {
                let (winner, loser) = if named_like_id(&plugin) && !named_like_id(slot.get()) {
                    let loser = slot.insert(plugin);
                    (slot.get().dir.clone(), loser.dir)
                } else {
                    (slot.get().dir.clone(), plugin.dir)
                };
                let id = slot.key();
                log::warn!(
                    "Plugins at {} and {} both declare id '{id}'; using {}",
                    winner.display(),
                    loser.display(),
                    winner.display()
                );
                self.load_errors.push(LoadError {
                    message: format!(
                        "duplicate plugin id '{id}' (also declared by {}); ignored",
                        winner.display()
                    ),
                    dir: loser,
                });
            }
        }
    }

    /// Installed plugins, sorted by id.
    pub fn list(&self) -> Vec<&InstalledPlugin> {
        self.plugins.values().collect()
    }

    /// Enabled plugins, sorted by id.
    pub fn enabled(&self) -> impl Iterator<Item = &InstalledPlugin> {
        self.plugins.values().filter(|p| p.enabled)
    }

    /// Look up a plugin by id.
    pub fn get(&self, id: &str) -> Option<&InstalledPlugin> {
        self.plugins.get(id)
    }

    /// Look up a plugin by id, mutably.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut InstalledPlugin> {
        self.plugins.get_mut(id)
    }

    /// Whether a plugin with this id is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.plugins.contains_key(id)
    }

    /// Number of registered plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// Whether no plugin is registered.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// The directory this registry manages.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// Plugin directories the last scan could not use (for `plugin list`).
    pub fn load_errors(&self) -> &[LoadError] {
        &self.load_errors
    }

    /// Install a plugin from a source directory into `<plugins_dir>/<id>`, recording
    /// `source` as `.install.json`.
    ///
    /// The source manifest and module are validated first; the tree is copied (without
    /// `target/` and `.git/` at any depth, except the declared module wherever it lies;
    /// symlinks followed only while they stay inside the source) into a hidden staging
    /// directory, validated again there, and renamed into place. An existing directory for
    /// the id (a registered plugin when `overwrite`, or an unregistered leftover) is
    /// replaced, keeping its `data/`.
    pub fn install_from_dir(
        &mut self,
        src: &Path,
        source: InstallSource,
        overwrite: bool,
    ) -> Result<InstalledPlugin, RegistryError> {
        let src = absolute(src)?;
        let (manifest, src_wasm) = check_source(&src)?;
        let id = manifest.id().to_string();
        check_id(&id)?;
        if self.contains(&id) && !overwrite {
            return Err(RegistryError::AlreadyInstalled { id });
        }
        self.prepare_plugins_dir(&src)?;
        let stage = self.create_temp_dir("install", &id)?;
        let staged = (|| {
            copy_tree(&src, &stage, &[])?;
            ensure_wasm_copied(&manifest, &src_wasm, &stage)?;
            source.write(&stage)?;
            fail_point(FailPoint::AfterCopy)?;
            InstalledPlugin::load(&stage)?;
            Ok(())
        })();
        if let Err(e) = staged {
            remove_temp(&stage);
            return Err(e);
        }
        let dest = self.plugins_dir.join(&id);
        self.swap_in(&stage, &dest, &id, &PRESERVED_ON_INSTALL)?;
        let plugin = InstalledPlugin::load_quiet(&dest)?;
        self.plugins.insert(id.clone(), plugin.clone());
        log::info!("Installed plugin: {id}");
        Ok(plugin)
    }

    /// Update an installed plugin from a source directory, keeping its `data/`,
    /// `.disabled` and `.install.json`. The source must declare the same id. The new tree is
    /// staged and validated before anything of the old plugin is touched; any failure leaves
    /// the old plugin exactly as it was.
    pub fn update_from_dir(
        &mut self,
        id: &str,
        src: &Path,
    ) -> Result<InstalledPlugin, RegistryError> {
        check_id(id)?;
        let dest = match self.plugins.get(id) {
            Some(plugin) => plugin.dir.clone(),
            None => return Err(RegistryError::NotFound { id: id.to_string() }),
        };
        if !dest.is_dir() {
            return Err(RegistryError::NotInstalled { id: id.to_string() });
        }
        let src = absolute(src)?;
        let (manifest, src_wasm) = check_source(&src)?;
        if manifest.id() != id {
            return Err(RegistryError::IdMismatch {
                expected: id.to_string(),
                found: manifest.id().to_string(),
            });
        }
        self.prepare_plugins_dir(&src)?;
        let stage = self.create_temp_dir("update", id)?;
        let staged = (|| {
            copy_tree(&src, &stage, &PRESERVED_ON_UPDATE)?;
            ensure_wasm_copied(&manifest, &src_wasm, &stage)?;
            fail_point(FailPoint::AfterCopy)?;
            InstalledPlugin::load(&stage)?;
            Ok(())
        })();
        if let Err(e) = staged {
            remove_temp(&stage);
            return Err(e);
        }
        self.swap_in(&stage, &dest, id, &PRESERVED_ON_UPDATE)?;
        let plugin = InstalledPlugin::load_quiet(&dest)?;
        self.plugins.insert(id.to_string(), plugin.clone());
        log::info!("Updated plugin: {id}");
        Ok(plugin)
    }

    /// Uninstall: delete the whole install directory (including `data/`). The directory is
    /// first renamed to a hidden name, so a failed deletion never leaves a half plugin; a
    /// symlinked install directory loses only the link, never its target.
    pub fn remove(&mut self, id: &str) -> Result<InstalledPlugin, RegistryError> {
        check_id(id)?;
        let dir = match self.plugins.get(id) {
            Some(plugin) => plugin.dir.clone(),
            None => return Err(RegistryError::NotFound { id: id.to_string() }),
        };
        let trash = self.temp_path("remove", id);
        std::fs::rename(&dir, &trash)
            .map_err(io_err(format!("Failed to remove {}", dir.display())))?;
        if let Err(e) = remove_any(&trash) {
            log::warn!(
                "Plugin '{id}' is uninstalled but {} could not be deleted: {e}",
                trash.display()
            );
        }
        let plugin = self
            .plugins
            .remove(id)
            .ok_or_else(|| RegistryError::NotFound { id: id.to_string() })?;
        log::info!("Uninstalled plugin: {id}");
        Ok(plugin)
    }

    /// Enable: delete the `.disabled` marker.
    pub fn enable(&mut self, id: &str) -> Result<(), RegistryError> {
        let plugin = self.lookup_mut(id)?;
        let marker = plugin.dir.join(DISABLED_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("Failed to remove {}", marker.display()))(e)),
        }
        plugin.enabled = true;
        Ok(())
    }

    /// Disable: write an empty `.disabled` marker.
    pub fn disable(&mut self, id: &str) -> Result<(), RegistryError> {
        let plugin = self.lookup_mut(id)?;
        let marker = plugin.dir.join(DISABLED_MARKER);
        std::fs::write(&marker, "")
            .map_err(io_err(format!("Failed to write {}", marker.display())))?;
        plugin.enabled = false;
        Ok(())
    }

    fn lookup_mut(&mut self, id: &str) -> Result<&mut InstalledPlugin, RegistryError> {
        check_id(id)?;
        self.plugins
            .get_mut(id)
            .ok_or_else(|| RegistryError::NotFound { id: id.to_string() })
    }

    /// Create the plugins directory and refuse a source that contains it (the copy would
    /// recurse into its own staging directory).
    fn prepare_plugins_dir(&self, src: &Path) -> Result<(), RegistryError> {
        std::fs::create_dir_all(&self.plugins_dir).map_err(io_err(format!(
            "Failed to create plugins directory {}",
            self.plugins_dir.display()
        )))?;
        let canon = |p: &Path| {
            std::fs::canonicalize(p).map_err(io_err(format!("Failed to resolve {}", p.display())))
        };
        if canon(&self.plugins_dir)?.starts_with(canon(src)?) {
            return Err(RegistryError::SourceContainsPluginsDir {
                src: src.to_path_buf(),
                plugins_dir: self.plugins_dir.clone(),
            });
        }
        Ok(())
    }

    fn temp_path(&self, kind: &str, id: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.plugins_dir.join(format!(
            "{TEMP_PREFIX}{kind}-{id}-{}-{n}",
            std::process::id()
        ))
    }

    fn create_temp_dir(&self, kind: &str, id: &str) -> Result<PathBuf, RegistryError> {
        let path = self.temp_path(kind, id);
        if exists_no_follow(&path) {
            // A leftover of a crashed process that had our pid: ours to reuse.
            remove_any(&path).map_err(io_err(format!("Failed to remove {}", path.display())))?;
        }
        std::fs::create_dir(&path)
            .map_err(io_err(format!("Failed to create {}", path.display())))?;
        Ok(path)
    }

    /// Put the validated `stage` tree at `dest`, moving the `preserve` entries of the old
    /// `dest` (if any) into it. Every step is a rename; on failure each completed step is
    /// undone, so `dest` ends up either entirely old or entirely new. `stage` is consumed
    /// either way.
    fn swap_in(
        &self,
        stage: &Path,
        dest: &Path,
        id: &str,
        preserve: &[&str],
    ) -> Result<(), RegistryError> {
        if !exists_no_follow(dest) {
            let result = fail_point(FailPoint::FinalRename).and_then(|()| {
                std::fs::rename(stage, dest).map_err(io_err(format!(
                    "Failed to move {} to {}",
                    stage.display(),
                    dest.display()
                )))
            });
            if result.is_err() {
                remove_temp(stage);
            }
            return result;
        }
        let backup = self.temp_path("old", id);
        if let Err(e) = std::fs::rename(dest, &backup) {
            remove_temp(stage);
            return Err(io_err(format!("Failed to move {} aside", dest.display()))(
                e,
            ));
        }
        let mut moved: Vec<&str> = Vec::new();
        let result = (|| {
            for &name in preserve {
                let from = backup.join(name);
                if !exists_no_follow(&from) {
                    continue;
                }
                let to = stage.join(name);
                if exists_no_follow(&to) {
                    remove_any(&to)
                        .map_err(io_err(format!("Failed to remove {}", to.display())))?;
                }
                std::fs::rename(&from, &to).map_err(io_err(format!(
                    "Failed to move {} to {}",
                    from.display(),
                    to.display()
                )))?;
                moved.push(name);
                fail_point(FailPoint::Preserve)?;
            }
            fail_point(FailPoint::FinalRename)?;
            std::fs::rename(stage, dest).map_err(io_err(format!(
                "Failed to move {} to {}",
                stage.display(),
                dest.display()
            )))
        })();
        match result {
            Ok(()) => {
                if let Err(e) = remove_any(&backup) {
                    log::warn!("Failed to delete old version at {}: {e}", backup.display());
                }
                Ok(())
            }
            Err(e) => {
                for name in moved {
                    if let Err(err) = std::fs::rename(stage.join(name), backup.join(name)) {
                        log::error!(
                            "Rollback: could not move {} back to {}: {err}",
                            stage.join(name).display(),
                            backup.join(name).display()
                        );
                    }
                }
                if let Err(err) = std::fs::rename(&backup, dest) {
                    log::error!(
                        "Rollback: could not move {} back to {}: {err}; the old plugin is intact there",
                        backup.display(),
                        dest.display()
                    );
                }
                remove_temp(stage);
                Err(e)
            }
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, RegistryError> {
    std::path::absolute(path).map_err(io_err(format!("Failed to resolve {}", path.display())))
}

/// Validate a source directory before copying: manifest present and valid, module present.
fn check_source(src: &Path) -> Result<(PluginManifest, PathBuf), RegistryError> {
    let manifest_path = src.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(RegistryError::NoManifest {
            dir: src.to_path_buf(),
        });
    }
    let manifest = PluginManifest::load_quiet(&manifest_path)?;
    let wasm = manifest.wasm_path(src)?;
    if !wasm.is_file() {
        return Err(RegistryError::WasmNotBuilt { path: wasm });
    }
    Ok((manifest, wasm))
}

/// The declared module must be installed even when it lies under a skipped `target/`.
fn ensure_wasm_copied(
    manifest: &PluginManifest,
    src_wasm: &Path,
    stage: &Path,
) -> Result<(), RegistryError> {
    let staged = stage.join(&manifest.plugin.wasm);
    if staged.is_file() {
        return Ok(());
    }
    if let Some(parent) = staged.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io_err(format!("Failed to create {}", parent.display())))?;
    }
    std::fs::copy(src_wasm, &staged).map_err(io_err(format!(
        "Failed to copy {} to {}",
        src_wasm.display(),
        staged.display()
    )))?;
    Ok(())
}

fn exists_no_follow(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Delete a file, symlink or directory tree (never following symlinks).
fn remove_any(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

fn remove_temp(path: &Path) {
    if let Err(e) = remove_any(path) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!("Failed to delete temporary {}: {e}", path.display());
        }
    }
}

/// Recursive copy of a plugin source tree into the existing directory `dst`.
struct TreeCopier {
    /// Canonical source root: symlinks must resolve inside it.
    root: PathBuf,
    /// Canonical directories being copied (ancestors), to stop symlink loops.
    stack: Vec<PathBuf>,
    entries: usize,
}

/// Copy `src` into the existing directory `dst`, skipping `target/` and `.git` at any depth
/// and `top_skip` names at the top level.
fn copy_tree(src: &Path, dst: &Path, top_skip: &[&str]) -> Result<(), RegistryError> {
    let root = std::fs::canonicalize(src)
        .map_err(io_err(format!("Failed to resolve {}", src.display())))?;
    let mut copier = TreeCopier {
        root: root.clone(),
        stack: vec![root.clone()],
        entries: 0,
    };
    copier.copy_dir(&root, dst, 0, top_skip)
}

impl TreeCopier {
    fn copy_dir(
        &mut self,
        real_dir: &Path,
        dst: &Path,
        depth: usize,
        top_skip: &[&str],
    ) -> Result<(), RegistryError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(real_dir)
            .map_err(io_err(format!("Failed to read {}", real_dir.display())))?
        {
            let entry = entry.map_err(io_err(format!("Failed to read {}", real_dir.display())))?;
            names.push(entry.file_name());
        }
        names.sort();
        for name in names {
            if depth == 0 && top_skip.iter().any(|s| OsStr::new(s) == name) {
                continue;
            }
            if name == ".git" {
                continue;
            }
            self.entries = self.entries.saturating_add(1);
            if self.entries > MAX_COPY_ENTRIES {
                return Err(RegistryError::SourceTooLarge {
                    path: real_dir.to_path_buf(),
                    message: format!("more than {MAX_COPY_ENTRIES} entries"),
                });
            }
            let path = real_dir.join(&name);
            let meta = std::fs::symlink_metadata(&path)
                .map_err(io_err(format!("Failed to read {}", path.display())))?;
            let (real, meta) = if meta.file_type().is_symlink() {
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(&self.root) => {
                        match std::fs::metadata(&target) {
                            Ok(m) => (target, m),
                            Err(e) => {
                                log::warn!("Skipping symlink {}: {e}", path.display());
                                continue;
                            }
                        }
                    }
                    Ok(target) => {
                        log::warn!(
                            "Skipping symlink {} -> {}: it points outside the plugin source directory",
                            path.display(),
                            target.display()
                        );
                        continue;
                    }
                    Err(e) => {
                        log::warn!("Skipping dangling symlink {}: {e}", path.display());
                        continue;
                    }
                }
            } else {
                (path.clone(), meta)
            };
            let to = dst.join(&name);
            if meta.is_dir() {
                if name == "target" {
                    continue;
                }
                if self.stack.contains(&real) {
                    log::warn!(
                        "Skipping {}: symlink loop back to {}",
                        path.display(),
                        real.display()
                    );
                    continue;
                }
                if depth.saturating_add(1) > MAX_COPY_DEPTH {
                    return Err(RegistryError::SourceTooLarge {
                        path,
                        message: format!("nested deeper than {MAX_COPY_DEPTH} directories"),
                    });
                }
                std::fs::create_dir(&to)
                    .map_err(io_err(format!("Failed to create {}", to.display())))?;
                self.stack.push(real.clone());
                let result = self.copy_dir(&real, &to, depth.saturating_add(1), top_skip);
                self.stack.pop();
                result?;
            } else if meta.is_file() {
                std::fs::copy(&real, &to).map_err(io_err(format!(
                    "Failed to copy {} to {}",
                    real.display(),
                    to.display()
                )))?;
            } else {
                log::warn!(
                    "Skipping {}: not a regular file or directory",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const WASM: &[u8] = b"\0asm\x01\0\0\0";

    fn manifest_text(id: &str, version: &str, extra: &str) -> String {
        format!(
            "[plugin]\nname = \"{id}\"\nversion = \"{version}\"\ntype = \"provider\"\n{extra}\n"
        )
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
        assert!(!f
            .root
            .join(format!("{INSTALL_FILE}.tmp-{}", std::process::id()))
            .exists());
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
}
