//! File-system helpers shared by the registry (`.install.json`), the storage service
//! (`storage.json`) and the artifact cache, so that "replace a file atomically" is written
//! (and fixed) once.

// The JS backend writes no files: parts of this are native-only there.
#![cfg_attr(not(feature = "sys"), allow(dead_code))]

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers temporary files uniquely within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path next to `target`: `.<name>.tmp-<pid>-<n>` (one leading dot, also
/// for names that already start with one), so it lives on the same file system and is
/// hidden.
pub(crate) fn tmp_sibling(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default();
    let mut tmp = OsString::new();
    if !name.to_string_lossy().starts_with('.') {
        tmp.push(".");
    }
    tmp.push(name);
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    target.with_file_name(tmp)
}

/// The step of an atomic write that failed, so each caller keeps its own error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteStep {
    /// Creating the temporary file (it must not exist yet).
    Create,
    /// Writing the contents into the temporary file.
    Write,
    /// fsync of the temporary file.
    Sync,
    /// Renaming the temporary file over the target (or the `before_rename` check).
    Rename,
}

/// A failed atomic write. The temporary file has been removed; the target is untouched.
#[derive(Debug)]
pub(crate) struct AtomicWriteError {
    /// Which step failed.
    pub step: WriteStep,
    /// The underlying error.
    pub error: io::Error,
}

/// A committed atomic write.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The new file, still open: its metadata identifies exactly what was committed.
    pub file: File,
    /// fsync of the directory, which makes the rename durable. The new content is visible
    /// either way, so callers decide whether a failure matters (some platforms cannot open
    /// a directory at all).
    pub dir_sync: io::Result<()>,
}

/// Replace `target` with new contents so that readers see either the old or the new file,
/// never a partial one: write a temporary file in the same directory, fsync it, rename it
/// over `target`, then fsync the directory. Any lock that serializes writers is the
/// caller's to hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AtomicWrite<'a> {
    /// The file to replace (or create).
    pub target: &'a Path,
    /// The temporary file: in `target`'s directory and not existing yet (see
    /// [`tmp_sibling`]).
    pub tmp: &'a Path,
    /// Unix permission bits for the new file; `None` is the platform default (0o666 minus
    /// the umask). Ignored elsewhere.
    pub mode: Option<u32>,
}

impl AtomicWrite<'_> {
    /// Write `parts` (concatenated) as the new contents of the target.
    pub(crate) fn write(&self, parts: &[&[u8]]) -> Result<Committed, AtomicWriteError> {
        self.write_checked(parts, || Ok(()))
    }

    /// [`Self::write`] with `before_rename` run after the fsync of the temporary file; its
    /// error aborts the write as a [`WriteStep::Rename`] failure (tests inject faults so).
    pub(crate) fn write_checked(
        &self,
        parts: &[&[u8]],
        before_rename: impl FnOnce() -> io::Result<()>,
    ) -> Result<Committed, AtomicWriteError> {
        let fail = |step| move |error| AtomicWriteError { step, error };
        let result: Result<File, AtomicWriteError> = (|| {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            if let Some(mode) = self.mode {
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
            }
            let mut file = options.open(self.tmp).map_err(fail(WriteStep::Create))?;
            for part in parts {
                file.write_all(part).map_err(fail(WriteStep::Write))?;
            }
            file.sync_all().map_err(fail(WriteStep::Sync))?;
            before_rename().map_err(fail(WriteStep::Rename))?;
            std::fs::rename(self.tmp, self.target).map_err(fail(WriteStep::Rename))?;
            Ok(file)
        })();
        let file = match result {
            Ok(file) => file,
            Err(e) => {
                if e.step != WriteStep::Create {
                    let _ = std::fs::remove_file(self.tmp);
                }
                return Err(e);
            }
        };
        let dir = match self.target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir_sync = File::open(dir).and_then(|d| d.sync_all());
        Ok(Committed { file, dir_sync })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn tmp_sibling_is_hidden_unique_and_in_the_same_directory() {
        let a = tmp_sibling(Path::new("/d/storage.json"));
        let b = tmp_sibling(Path::new("/d/storage.json"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/d")));
        let name = a.file_name().unwrap().to_str().unwrap();
        let prefix = format!(".storage.json.tmp-{}-", std::process::id());
        assert!(name.starts_with(&prefix), "{name}");
        let dotted = tmp_sibling(Path::new("/d/.install.json"));
        let dotted = dotted.file_name().unwrap().to_str().unwrap();
        assert!(dotted.starts_with(".install.json.tmp-"), "{dotted}");
    }

    #[test]
    fn creates_and_replaces_leaving_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.json");
        for text in ["first", "second, longer"] {
            let tmp = tmp_sibling(&target);
            let done = AtomicWrite {
                target: &target,
                tmp: &tmp,
                mode: None,
            }
            .write(&[text.as_bytes()])
            .unwrap();
            assert!(done.dir_sync.is_ok());
            assert_eq!(done.file.metadata().unwrap().len(), text.len() as u64);
            assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
            assert_eq!(names(dir.path()), vec!["f.json".to_string()]);
        }
    }

    #[test]
    fn parts_are_concatenated() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let tmp = tmp_sibling(&target);
        AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: None,
        }
        .write(&[b"head", b"", b"-body"])
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"head-body");
    }

    #[test]
    fn failure_before_rename_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        std::fs::write(&target, "old").unwrap();
        let tmp = tmp_sibling(&target);
        let err = AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: None,
        }
        .write_checked(&[b"new"], || Err(io::Error::other("injected")))
        .unwrap_err();
        assert_eq!(err.step, WriteStep::Rename);
        assert_eq!(err.error.to_string(), "injected");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(names(dir.path()), vec!["f".to_string()]);
    }

    #[test]
    fn an_existing_temporary_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let tmp = dir.path().join(".f.tmp");
        std::fs::write(&tmp, "someone else's").unwrap();
        let err = AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: None,
        }
        .write(&[b"new"])
        .unwrap_err();
        assert_eq!(err.step, WriteStep::Create);
        assert_eq!(err.error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "someone else's");
        assert!(!target.exists());
    }

    #[test]
    fn rename_failure_is_reported_as_such_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let target = dir.path().join("busy");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("x"), "").unwrap();
        let tmp = tmp_sibling(&target);
        let err = AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: None,
        }
        .write(&[b"new"])
        .unwrap_err();
        assert_eq!(err.step, WriteStep::Rename);
        assert!(!tmp.exists());
        assert!(target.join("x").exists());
    }

    #[cfg(unix)]
    #[test]
    fn mode_applies_to_the_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let tmp = tmp_sibling(&target);
        AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: Some(0o600),
        }
        .write(&[b"x"])
        .unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
