//! The plugins directory: tark's on-disk layout, with two hygiene fixes over tark: local
//! sources are recorded as absolute paths, and every change is all-or-nothing (README.md,
//! "The command line"; the tests in `src/registry/tests/` pin both).
//!
//! Layout: `<plugins_dir>/<id>/` holds a copy of the plugin's source tree, `data/` (runtime
//! storage), `.install.json` (where it came from) and an optional empty `.disabled` marker.
//! Directories written by tark and by this host are interchangeable.
//!
//! Changes to an installed plugin are all-or-nothing: the new tree is built and validated in
//! a hidden sibling directory (`.tmp-…`, ignored by [`PluginRegistry::scan`]) and then moved
//! into place with renames; on any error the old plugin is put back as it was. `data/` is
//! never copied, only moved, so nothing the plugin stored is lost.
//!
//! What lives where:
//! - `mod.rs`: [`PluginRegistry`] and its read accessors, [`RegistryError`], the file-name
//!   constants and plugins-directory resolution.
//! - `scan.rs`: [`InstalledPlugin`] (loading one plugin directory), [`LoadError`],
//!   [`PluginRegistry::scan`] and the `.disabled` marker (enable / disable).
//! - `source.rs`: [`InstallSource`], the `.install.json` record.
//! - `install.rs`: install / update / remove with staging, backup and rollback.
//! - `copy.rs`: copying a plugin source tree (skips, symlink rules, limits).
//! - `tests/`: unit tests, one file per file above (`tests/mod.rs` has the shared fixtures).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use crate::manifest::is_valid_plugin_name;
use crate::manifest::ManifestError;

mod copy;
mod install;
mod scan;
mod source;
#[cfg(test)]
mod tests;

pub use crate::host::storage::STORAGE_FILE;
pub use install::link_target;
pub use install::PAUSE_ENV;
pub use scan::{InstalledPlugin, LoadError};
pub use source::InstallSource;

/// Environment variable that overrides the plugins directory (after an explicit CLI value).
pub const PLUGINS_DIR_ENV: &str = "TARK_PLUGINS_DIR";
/// Install-source record inside a plugin directory (tark's name and format).
pub const INSTALL_FILE: &str = ".install.json";
/// Marker file whose presence disables a plugin (tark's name).
pub const DISABLED_MARKER: &str = ".disabled";
/// Runtime data directory inside a plugin directory.
pub const DATA_DIR: &str = "data";

/// Prefix of our staging / backup directories; `scan` ignores them. Plugin ids cannot start
/// with `.`, so they never collide with an install directory.
const TEMP_PREFIX: &str = ".tmp-";

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

/// All installed plugins, keyed by id (manifest name), sorted.
#[derive(Debug)]
pub struct PluginRegistry {
    plugins_dir: PathBuf,
    plugins: BTreeMap<String, InstalledPlugin>,
    load_errors: Vec<LoadError>,
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
}

fn exists_no_follow(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
