//! Install, update and remove: every change is staged in a hidden sibling directory,
//! validated there, and swapped in with renames (the old tree is kept as a backup until
//! the swap succeeded and put back on any failure).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::copy::copy_tree;
use super::{
    check_id, exists_no_follow, io_err, InstallSource, InstalledPlugin, PluginRegistry,
    RegistryError, DATA_DIR, DISABLED_MARKER, INSTALL_FILE, TEMP_PREFIX,
};
use crate::manifest::{PluginManifest, MANIFEST_FILE};

/// What an update keeps from the installed plugin (tark's list).
const PRESERVED_ON_UPDATE: [&str; 3] = [DATA_DIR, DISABLED_MARKER, INSTALL_FILE];
/// What a re-install over an existing directory keeps.
const PRESERVED_ON_INSTALL: [&str; 1] = [DATA_DIR];

/// The steps of an install or update, where unit tests inject failures and
/// `tests/faults.rs` kills the process (through [`PAUSE_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailPoint {
    /// The new tree is staged, nothing of the old plugin touched.
    AfterCopy,
    /// The old plugin directory was renamed to its backup (`.tmp-old-…`).
    MovedAside,
    /// One preserved entry (`data/`, ...) was moved from the backup into the new tree.
    Preserve,
    /// Just before the new tree is renamed into place.
    FinalRename,
    /// The new tree is in place; the backup is not deleted yet.
    AfterSwap,
}

impl FailPoint {
    fn name(self) -> &'static str {
        match self {
            FailPoint::AfterCopy => "after-copy",
            FailPoint::MovedAside => "moved-aside",
            FailPoint::Preserve => "preserve",
            FailPoint::FinalRename => "final-rename",
            FailPoint::AfterSwap => "after-swap",
        }
    }
}

/// Test hook: `TARK_WASMER_PAUSE_AT=<step>` (`after-copy`, `moved-aside`, `preserve`,
/// `final-rename`, `after-swap`) stops an install or update at that step, after printing
/// `tark-wasmer: paused at <step>` on stderr, until the process is killed. `tests/faults.rs`
/// kills the CLI so at every step and checks that the plugin still works afterwards
/// ([`PluginRegistry::scan`] finishes or undoes what a killed process left).
pub const PAUSE_ENV: &str = "TARK_WASMER_PAUSE_AT";

#[cfg(test)]
thread_local! {
    pub(super) static FAIL_AT: std::cell::Cell<Option<FailPoint>> = const { std::cell::Cell::new(None) };
}

fn fail_point(point: FailPoint) -> Result<(), RegistryError> {
    if std::env::var_os(PAUSE_ENV).is_some_and(|v| v == point.name()) {
        eprintln!("tark-wasmer: paused at {}", point.name());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
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

    /// Install a plugin by reference (`plugin add --link`): `<plugins_dir>/<id>` becomes a
    /// symbolic link to the source directory, so a rebuilt module is what the next load
    /// runs (the artifact cache is keyed by the module's hash).
    ///
    /// tark sees a linked plugin like any other: its scan follows the link to a directory
    /// holding `plugin.toml`. Everything tark writes for the plugin (`data/`, `.disabled`)
    /// lands in the source directory; no `.install.json` is written (so `plugin update`
    /// skips it: there is nothing to fetch). Removing it removes only the link, never the
    /// source.
    pub fn link_dir(&mut self, src: &Path) -> Result<InstalledPlugin, RegistryError> {
        let src = absolute(src)?;
        let src = std::fs::canonicalize(&src)
            .map_err(io_err(format!("Failed to resolve {}", src.display())))?;
        let (manifest, _) = check_source(&src)?;
        let id = manifest.id().to_string();
        check_id(&id)?;
        if self.contains(&id) {
            return Err(RegistryError::AlreadyInstalled { id });
        }
        self.prepare_plugins_dir(&src)?;
        let dest = self.plugins_dir.join(&id);
        if exists_no_follow(&dest) {
            return Err(RegistryError::Io {
                context: format!(
                    "Cannot link {}: {} already exists (not a plugin this host can load)",
                    id,
                    dest.display()
                ),
                error: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        // Created under a temporary name and renamed: the link appears whole or not at all.
        let tmp = self.temp_path("link", &id);
        symlink_dir(&src, &tmp).map_err(io_err(format!(
            "Failed to create a link to {}",
            src.display()
        )))?;
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            remove_temp(&tmp);
            return Err(RegistryError::Io {
                context: format!("Failed to create {}", dest.display()),
                error: e,
            });
        }
        let plugin = InstalledPlugin::load_quiet(&dest)?;
        self.plugins.insert(id.clone(), plugin.clone());
        log::info!("Linked plugin: {id} -> {}", src.display());
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
            match &result {
                Ok(()) => {
                    let _ = fail_point(FailPoint::AfterSwap);
                }
                Err(_) => remove_temp(stage),
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
            fail_point(FailPoint::MovedAside)?;
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
                // Committed: an injected failure here changes nothing (the pause hook
                // stops here).
                let _ = fail_point(FailPoint::AfterSwap);
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

/// A `.tmp-<kind>-<id>-<pid>-<n>` name taken apart: (kind, id, pid).
pub(super) fn parse_temp_name(name: &str) -> Option<(&str, &str, u32)> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let (kind, rest) = rest.split_once('-')?;
    let (rest, n) = rest.rsplit_once('-')?;
    let (id, pid) = rest.rsplit_once('-')?;
    n.parse::<u64>().ok()?;
    let pid = pid.parse::<u32>().ok()?;
    check_id(id).ok()?;
    Some((kind, id, pid))
}

/// Whether process `pid` may still be working on its temporary directories: our own
/// pid and, where we cannot tell, every pid count as alive.
pub(super) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

impl PluginRegistry {
    /// Finish or undo what an install, update or removal killed half-way left behind
    /// (only for processes that are gone): a backup (`.tmp-old-<id>-…`) whose plugin
    /// directory is missing is put back, with the preserved entries (`data/`, `.disabled`,
    /// `.install.json`) the killed update had already moved into its staging tree; a
    /// backup whose plugin directory exists (the swap was committed) is deleted, as are
    /// stale staging trees and the trash of a removal. `tests/faults.rs`,
    /// `update_killed_at_every_step_leaves_a_working_plugin`.
    pub(super) fn recover_interrupted(&self) {
        let Ok(reader) = std::fs::read_dir(&self.plugins_dir) else {
            return;
        };
        let mut temps: Vec<(String, String, String, u32)> = reader
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let (kind, id, pid) = parse_temp_name(&name)?;
                let (kind, id) = (kind.to_string(), id.to_string());
                (!process_alive(pid)).then_some((name, kind, id, pid))
            })
            .collect();
        temps.sort();
        let mut unresolved: Vec<(String, u32)> = Vec::new();
        for (name, _, id, pid) in temps.iter().filter(|t| t.1 == "old") {
            let backup = self.plugins_dir.join(name);
            let dest = self.plugins_dir.join(id);
            if exists_no_follow(&dest) {
                match remove_any(&backup) {
                    Ok(()) => log::info!(
                        "Deleted {}: left by an interrupted update of '{id}'",
                        backup.display()
                    ),
                    Err(e) => log::warn!("Failed to delete {}: {e}", backup.display()),
                }
                continue;
            }
            for (stage_name, stage_kind, _, _) in temps
                .iter()
                .filter(|t| (t.1 == "update" || t.1 == "install") && &t.2 == id && t.3 == *pid)
            {
                let stage = self.plugins_dir.join(stage_name);
                let preserved: &[&str] = if stage_kind == "update" {
                    &PRESERVED_ON_UPDATE
                } else {
                    &PRESERVED_ON_INSTALL
                };
                for &entry in preserved {
                    let (from, to) = (stage.join(entry), backup.join(entry));
                    if exists_no_follow(&from) && !exists_no_follow(&to) {
                        if let Err(e) = std::fs::rename(&from, &to) {
                            log::error!(
                                "Failed to move {} back to {}: {e}",
                                from.display(),
                                to.display()
                            );
                        }
                    }
                }
            }
            match std::fs::rename(&backup, &dest) {
                Ok(()) => log::warn!(
                    "Restored plugin '{id}' from {}: an update or install was interrupted",
                    backup.display()
                ),
                Err(e) => {
                    log::error!(
                        "Failed to restore plugin '{id}' from {}: {e}; the old plugin is intact there",
                        backup.display()
                    );
                    unresolved.push((id.clone(), *pid));
                }
            }
        }
        for (name, kind, id, pid) in &temps {
            let keep = kind == "old" || unresolved.iter().any(|(i, p)| i == id && p == pid);
            if keep {
                continue;
            }
            let path = self.plugins_dir.join(name);
            if exists_no_follow(&path) {
                match remove_any(&path) {
                    Ok(()) => {
                        log::info!("Deleted {}: left by an interrupted {kind}", path.display())
                    }
                    Err(e) => log::warn!("Failed to delete {}: {e}", path.display()),
                }
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

/// Delete a file, symlink or directory tree (never following symlinks).
#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_dir(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

/// No links (and no file system) in the JS backend's wasm32 host.
#[cfg(not(any(unix, windows)))]
fn symlink_dir(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic links are not available on this platform",
    ))
}

/// Is this installed plugin directory a link made by [`PluginRegistry::link_dir`]? Its
/// target when it is.
pub fn link_target(dir: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    std::fs::read_link(dir).ok()
}

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
