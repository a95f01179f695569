//! tark's `PluginRegistry` / `InstalledPlugin`, over [`crate::registry`]. tark reads the
//! public fields `manifest`, `path`, `wasm_path` and `enabled`, so the face keeps them;
//! the registry's own entry rides along for loading.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::manifest::{PluginManifest, PluginType, ProviderContribution};
use crate::registry as core;

/// An installed plugin, as tark sees it (`<plugins_dir>/<id>/`).
#[derive(Debug, Clone)]
pub struct InstalledPlugin {
    /// The parsed and validated `plugin.toml`.
    pub manifest: PluginManifest,
    /// The plugin's directory.
    pub path: PathBuf,
    /// Its wasm module (the manifest's `wasm`, default `plugin.wasm`).
    pub wasm_path: PathBuf,
    /// No `.disabled` marker in the directory.
    pub enabled: bool,
    entry: core::InstalledPlugin,
}

impl InstalledPlugin {
    /// Load the plugin in `plugin_dir` (manifest checks and the wasm file must exist).
    pub fn load(plugin_dir: &Path) -> Result<Self> {
        Ok(Self::from_entry(core::InstalledPlugin::load(plugin_dir)?))
    }

    pub(super) fn from_entry(entry: core::InstalledPlugin) -> Self {
        InstalledPlugin {
            manifest: entry.manifest.clone(),
            path: entry.dir.clone(),
            wasm_path: entry.wasm_path(),
            enabled: entry.enabled,
            entry,
        }
    }

    /// The registry entry the host loads.
    pub(super) fn entry(&self) -> &core::InstalledPlugin {
        &self.entry
    }

    /// The plugin id (`[plugin] name`).
    pub fn id(&self) -> &str {
        self.manifest.id()
    }

    /// `[plugin] type`.
    pub fn plugin_type(&self) -> PluginType {
        self.manifest.plugin_type()
    }

    /// `<path>/data`, the default data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.path.join(core::DATA_DIR)
    }

    /// Remove the `.disabled` marker.
    pub fn enable(&mut self) -> Result<()> {
        let marker = self.path.join(core::DISABLED_MARKER);
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to remove {}", marker.display()))
            }
        }
        self.enabled = true;
        self.entry.enabled = true;
        Ok(())
    }

    /// Write the (empty) `.disabled` marker.
    pub fn disable(&mut self) -> Result<()> {
        let marker = self.path.join(core::DISABLED_MARKER);
        std::fs::write(&marker, "")
            .with_context(|| format!("Failed to write {}", marker.display()))?;
        self.enabled = false;
        self.entry.enabled = false;
        Ok(())
    }

    /// Whether `[activation] events` select this plugin for `event` (this crate's rule,
    /// see [`crate::manifest::ActivationConfig::should_activate_for`]).
    pub fn should_activate_for(&self, event: &str) -> bool {
        self.manifest.activation.should_activate_for(event)
    }

    /// `[contributes] providers`.
    pub fn contributed_providers(&self) -> &[ProviderContribution] {
        &self.manifest.contributes.providers
    }
}

/// The installed plugins of tark's plugins directory, scanned on creation.
pub struct PluginRegistry {
    plugins: BTreeMap<String, InstalledPlugin>,
    plugins_dir: PathBuf,
    inner: core::PluginRegistry,
}

impl PluginRegistry {
    /// Scan [`super::plugins_dir`] (created when missing).
    pub fn new() -> Result<Self> {
        let plugins_dir = super::plugins_dir()?;
        let mut registry = PluginRegistry {
            plugins: BTreeMap::new(),
            inner: core::PluginRegistry::new(plugins_dir.clone()),
            plugins_dir,
        };
        registry.scan()?;
        Ok(registry)
    }

    /// Re-read the plugins directory. Plugins that fail to load are logged and skipped.
    pub fn scan(&mut self) -> Result<()> {
        self.plugins.clear();
        self.inner.scan()?;
        for entry in self.inner.list() {
            self.plugins
                .insert(entry.id.clone(), InstalledPlugin::from_entry(entry.clone()));
        }
        Ok(())
    }

    /// Every installed plugin (sorted by id).
    pub fn all(&self) -> impl Iterator<Item = &InstalledPlugin> {
        self.plugins.values()
    }

    /// Enabled plugins.
    pub fn enabled(&self) -> impl Iterator<Item = &InstalledPlugin> {
        self.plugins.values().filter(|p| p.enabled)
    }

    /// Enabled plugins, collected.
    pub fn list_enabled(&self) -> Vec<&InstalledPlugin> {
        self.enabled().collect()
    }

    /// Enabled provider plugins.
    pub fn provider_plugins(&self) -> impl Iterator<Item = &InstalledPlugin> {
        self.plugins
            .values()
            .filter(|p| p.enabled && p.plugin_type() == PluginType::Provider)
    }

    /// Plugins of one type, enabled or not (tark filters `enabled` itself).
    pub fn by_type(&self, plugin_type: PluginType) -> impl Iterator<Item = &InstalledPlugin> {
        self.plugins
            .values()
            .filter(move |p| p.plugin_type() == plugin_type)
    }

    /// One plugin by id.
    pub fn get(&self, id: &str) -> Option<&InstalledPlugin> {
        self.plugins.get(id)
    }

    /// One plugin by id, for `enable` / `disable`.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut InstalledPlugin> {
        self.plugins.get_mut(id)
    }

    /// Copy a plugin from `source_dir` into the plugins directory; its id. Refuses an id
    /// that is installed (`Plugin '<id>' is already installed`).
    #[allow(clippy::ptr_arg)] // tark's signature
    pub fn install(&mut self, source_dir: &PathBuf) -> Result<String> {
        let source = core::InstallSource::local(source_dir)?;
        let entry = self.inner.install_from_dir(source_dir, source, false)?;
        let id = entry.id.clone();
        self.plugins
            .insert(id.clone(), InstalledPlugin::from_entry(entry));
        log::info!("Installed plugin: {id}");
        Ok(id)
    }

    /// Replace an installed plugin's files from `source_dir`, keeping `data/`,
    /// `.disabled` and `.install.json`.
    #[allow(clippy::ptr_arg)] // tark's signature
    pub fn update(&mut self, id: &str, source_dir: &PathBuf) -> Result<()> {
        let entry = self.inner.update_from_dir(id, source_dir)?;
        self.plugins
            .insert(id.to_string(), InstalledPlugin::from_entry(entry));
        Ok(())
    }

    /// Delete an installed plugin (its directory, including `data/`).
    pub fn uninstall(&mut self, id: &str) -> Result<()> {
        self.inner.remove(id)?;
        self.plugins.remove(id);
        log::info!("Uninstalled plugin: {id}");
        Ok(())
    }

    /// The plugins directory.
    pub fn plugins_dir(&self) -> &PathBuf {
        &self.plugins_dir
    }

    /// Number of installed plugins.
    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    /// No plugin installed?
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}
