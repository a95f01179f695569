//! `.install.json`: the record of where a plugin was installed from (tark's format).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, RegistryError, INSTALL_FILE};
use crate::fsutil::{self, AtomicWrite, WriteStep};

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
    /// A local install from `source_dir`, recorded as an absolute path (tark records it as
    /// given, so `update` from another directory breaks; see the test
    /// `constructors_stamp_time_and_record_absolute_local_paths`) and stamped now.
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

    /// Write `<plugin_dir>/.install.json` atomically (temporary file, fsync, rename).
    pub fn write(&self, plugin_dir: &Path) -> Result<(), RegistryError> {
        let path = plugin_dir.join(INSTALL_FILE);
        let tmp = fsutil::tmp_sibling(&path);
        let json = self.to_json_pretty()?;
        let write = AtomicWrite {
            target: &path,
            tmp: &tmp,
            mode: None,
        };
        // The directory fsync is best effort: the rename is the commit.
        write.write(&[json.as_bytes()]).map_err(|e| {
            let failed = if e.step == WriteStep::Rename {
                &path
            } else {
                &tmp
            };
            io_err(format!("Failed to write {}", failed.display()))(e.error)
        })?;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}
