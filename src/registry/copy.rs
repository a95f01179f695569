//! Copying a plugin source tree into a staging directory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{io_err, RegistryError};

/// Directory nesting limit while copying a source tree (symlinks can fan out).
const MAX_COPY_DEPTH: usize = 64;
/// Entry limit while copying a source tree.
const MAX_COPY_ENTRIES: usize = 200_000;

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
pub(super) fn copy_tree(src: &Path, dst: &Path, top_skip: &[&str]) -> Result<(), RegistryError> {
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
