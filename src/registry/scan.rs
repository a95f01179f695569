//! Loading installed plugins: one plugin directory ([`InstalledPlugin`]), the whole plugins
//! directory ([`PluginRegistry::scan`], with [`LoadError`] for directories it cannot use),
//! and the `.disabled` marker.

use std::collections::btree_map::Entry;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use super::{
    check_id, exists_no_follow, io_err, InstallSource, PluginRegistry, RegistryError, DATA_DIR,
    DISABLED_MARKER, INSTALL_FILE, STORAGE_FILE, TEMP_PREFIX,
};
use crate::manifest::{ManifestError, PluginManifest, PluginType, MANIFEST_FILE};

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
impl PluginRegistry {
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
        self.recover_interrupted();
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
}
