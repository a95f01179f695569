//! `tark:storage`: one persistent string map per data directory, shared by every
//! instance in the process, stored as tark's `storage.json`.
//!
//! Format (tark's; pinned by the test `file_format_is_tark_compatible`):
//! `<data_dir>/storage.json`, a flat JSON object of string to string, pretty-printed with
//! two-space indentation; keys are written sorted (tark does not care about order); an
//! empty map is `{}`.
//!
//! Consistency (what tark lacks: README.md, "Where this host does better than tark"; the
//! tests below cover each point):
//! - One [`Store`] per data directory per [`StoreRegistry`] (the host has one
//!   registry), so all instances of a plugin share it.
//! - Reads answer from memory. A read checks whether `storage.json` changed on disk
//!   (device, inode, length, modification and change times, compared with the loaded
//!   snapshot, whose file handle is kept open so that its inode cannot be reused) and
//!   reloads it if so, but that `stat` is made at most once per [`RECHECK_INTERVAL`]
//!   per store: a write by another process (or an edit of the file by tark) is seen by
//!   the reads that start at most [`RECHECK_INTERVAL`] after it was committed. Writes
//!   through any store of this process bump a process-wide generation, so they are
//!   seen by the next read of every other store of the same directory at once (no
//!   window). Writes always check the file under the lock (below), so the window never
//!   loses an update.
//! - Every write is a read-modify-write under the process-local mutex and an exclusive
//!   `flock` on `<data_dir>/.storage.lock`: reload if changed, modify, write a temporary
//!   file in the same directory, fsync, rename over `storage.json`, fsync the directory
//!   (`crate::fsutil::AtomicWrite`). Memory is only updated once the rename succeeded, so
//!   it always equals the disk.
//! - A file that is not a JSON object of strings is never overwritten: under the lock it
//!   is re-read once (tark writes in place, so a reader may catch it half-written), then
//!   moved aside to `storage.json.corrupt-<unix seconds>` (never replacing an existing
//!   file), an error is logged naming both paths, and the store starts empty.
//!   An empty (zero-length or blank) file counts as an empty map.

// The JS backend keeps storage in memory: the file machinery below is native-only.
#![cfg_attr(not(feature = "sys"), allow(dead_code, unused_imports))]

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::fsutil::{self, AtomicWrite, WriteStep};

/// The storage file's name inside the data directory (tark's name). This is its one
/// definition; the registry re-exports it.
pub const STORAGE_FILE: &str = "storage.json";
/// The cross-process lock file's name inside the data directory.
pub const LOCK_FILE: &str = ".storage.lock";

/// How stale a read may be with respect to writes by *other processes*: a read `stat`s
/// `storage.json` only when the last check of its store is at least this old (writes in
/// this process are seen at once, see the module docs). 20 ms is far below anything a
/// person or tark's own polling notices, and turns a `stat` per `storage.get` (about
/// 1 µs) into one per 20 ms.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Bumped by every committed write of any store in this process: a store whose last
/// check saw an older value checks the file again on its next read.
static WRITE_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A value is larger than the per-value limit.
    #[error("value too large: {size} bytes (limit {limit})")]
    ValueTooLarge {
        /// Size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The write would take the plugin's storage over its quota.
    #[error("storage quota exceeded: {size} bytes (limit {limit})")]
    Quota {
        /// Resulting size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Reading or writing the file failed.
    #[error("storage I/O at {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

fn io_err(path: &Path, what: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: path.display().to_string(),
        message: format!("{what}: {err}"),
    }
}

/// Identity and version of the file a snapshot was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime: meta.modified().ok(),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            }
        }
        #[cfg(not(unix))]
        {
            Stamp {
                dev: 0,
                ino: 0,
                len: meta.len(),
                mtime: meta.modified().ok(),
                ctime: (0, 0),
            }
        }
    }
}

/// The in-memory snapshot: always equal to the last committed file we saw.
#[derive(Default)]
struct State {
    map: BTreeMap<String, String>,
    /// Sum of key and value bytes.
    total: usize,
    /// Whether a snapshot (possibly "no file") has been taken.
    loaded: bool,
    /// The file the snapshot came from; None when there was no file.
    stamp: Option<Stamp>,
    /// Kept open so the snapshot's inode cannot be reused by a later file.
    _handle: Option<File>,
    /// When the file was last compared with the snapshot (None: never), and the
    /// process-wide [`WRITE_GENERATION`] seen then.
    checked: Option<(Instant, u64)>,
}

impl State {
    fn set_empty(&mut self) {
        self.map.clear();
        self.total = 0;
        self.loaded = true;
        self.stamp = None;
        self._handle = None;
    }

    /// Is the snapshot recent enough for a read to skip the `stat`?
    fn fresh(&self) -> bool {
        match self.checked {
            Some((at, generation)) => {
                self.loaded
                    && generation == WRITE_GENERATION.load(Ordering::Acquire)
                    && at.elapsed() < RECHECK_INTERVAL
            }
            None => false,
        }
    }
}

fn total_size(map: &BTreeMap<String, String>) -> usize {
    map.iter().fold(0usize, |acc, (k, v)| {
        acc.saturating_add(k.len()).saturating_add(v.len())
    })
}

/// What reading `storage.json` found.
enum Loaded {
    Missing,
    Map {
        map: BTreeMap<String, String>,
        stamp: Stamp,
        handle: File,
    },
    Corrupt(String),
}

/// One plugin's store.
pub struct Store {
    plugin_id: String,
    dir: PathBuf,
    file: PathBuf,
    lock_path: PathBuf,
    total_max: usize,
    state: Mutex<State>,
    /// Test hook: make the next persist fail after writing its temporary file.
    #[cfg(test)]
    fail_next_rename: std::sync::atomic::AtomicBool,
}

impl Store {
    fn new(dir: PathBuf, plugin_id: &str, total_max: usize) -> Store {
        Store {
            plugin_id: plugin_id.to_string(),
            file: dir.join(STORAGE_FILE),
            lock_path: dir.join(LOCK_FILE),
            dir,
            total_max,
            state: Mutex::new(State::default()),
            #[cfg(test)]
            fail_next_rename: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The `storage.json` path this store persists to.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The value of `key` (None when absent); values over `max` are an error.
    pub fn get(&self, key: &str, max: usize) -> Result<Option<String>, StorageError> {
        let mut st = self.lock_state();
        self.refresh_for_read(&mut st)?;
        match st.map.get(key) {
            None => Ok(None),
            Some(v) if v.len() > max => {
                log::warn!(
                    "[plugin:{}] storage.get({key}): value of {} bytes exceeds the limit of {max}",
                    self.plugin_id,
                    v.len()
                );
                Err(StorageError::ValueTooLarge {
                    size: v.len(),
                    limit: max,
                })
            }
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// Set and persist. Refused (nothing changes) when the total of key and value bytes
    /// would exceed the quota and grow; writes that shrink an over-quota store pass.
    pub fn set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        let mut st = self.lock_state();
        self.create_dir()?;
        let _flock = self.lock_file()?;
        self.refresh(&mut st, true)?;
        if st.map.get(key).is_some_and(|v| v == value) {
            return Ok(());
        }
        let old_total = st.total;
        let old_entry = st
            .map
            .get(key)
            .map_or(0, |v| key.len().saturating_add(v.len()));
        let new_total = old_total
            .saturating_sub(old_entry)
            .saturating_add(key.len())
            .saturating_add(value.len());
        if new_total > self.total_max && new_total > old_total {
            log::warn!(
                "[plugin:{}] storage.set({key}) refused: storage would be {new_total} bytes (quota {})",
                self.plugin_id,
                self.total_max
            );
            return Err(StorageError::Quota {
                size: new_total,
                limit: self.total_max,
            });
        }
        let previous = st.map.insert(key.to_string(), value.to_string());
        match self.persist(&mut st) {
            Ok(()) => {
                st.total = new_total;
                Ok(())
            }
            Err(e) => {
                match previous {
                    Some(v) => st.map.insert(key.to_string(), v),
                    None => st.map.remove(key),
                };
                log::error!("[plugin:{}] Failed to save storage: {e}", self.plugin_id);
                Err(e)
            }
        }
    }

    /// Delete and persist. Deleting an absent key changes nothing (and writes nothing).
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        let mut st = self.lock_state();
        if cfg!(feature = "sys") && !self.dir.exists() {
            // Nothing was ever stored here; do not create the directory for a no-op.
            st.set_empty();
            return Ok(());
        }
        self.create_dir()?;
        let _flock = self.lock_file()?;
        self.refresh(&mut st, true)?;
        let Some(previous) = st.map.remove(key) else {
            return Ok(());
        };
        match self.persist(&mut st) {
            Ok(()) => {
                st.total = total_size(&st.map);
                Ok(())
            }
            Err(e) => {
                st.map.insert(key.to_string(), previous);
                log::error!("[plugin:{}] Failed to save storage: {e}", self.plugin_id);
                Err(e)
            }
        }
    }

    /// All keys, sorted.
    pub fn list_keys(&self) -> Result<Vec<String>, StorageError> {
        let mut st = self.lock_state();
        self.refresh_for_read(&mut st)?;
        Ok(st.map.keys().cloned().collect())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic mid-operation: distrust the snapshot and reload from disk.
                let mut g = poisoned.into_inner();
                g.loaded = false;
                g.stamp = None;
                g.checked = None;
                g
            }
        }
    }

    #[cfg(feature = "sys")]
    fn create_dir(&self) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, "create directory", e))
    }

    #[cfg(feature = "sys")]
    /// The exclusive cross-process lock; released when the returned file is dropped.
    fn lock_file(&self) -> Result<File, StorageError> {
        let f = open_no_follow(&self.lock_path, true)
            .map_err(|e| io_err(&self.lock_path, "open lock file", link_text(e)))?;
        f.lock().map_err(|e| io_err(&self.lock_path, "lock", e))?;
        Ok(f)
    }

    /// Largest storage file we read: generous room for JSON escaping over the quota.
    fn read_cap(&self) -> u64 {
        let cap = self.total_max.saturating_mul(8).saturating_add(1 << 20);
        u64::try_from(cap).unwrap_or(u64::MAX)
    }

    #[cfg(feature = "sys")]
    /// Before a read: the snapshot as is when it was checked less than
    /// [`RECHECK_INTERVAL`] ago and no store of this process wrote since, else
    /// [`Store::refresh`].
    fn refresh_for_read(&self, st: &mut State) -> Result<(), StorageError> {
        if st.fresh() {
            return Ok(());
        }
        self.refresh(st, false)
    }

    #[cfg(feature = "sys")]
    /// Bring the snapshot up to date with the file. `locked`: we hold the file lock.
    fn refresh(&self, st: &mut State, locked: bool) -> Result<(), StorageError> {
        // Read before the stat: a write committed after this is caught by the next read.
        let generation = WRITE_GENERATION.load(Ordering::Acquire);
        let now = Instant::now();
        self.refresh_inner(st, locked)?;
        st.checked = Some((now, generation));
        Ok(())
    }

    fn refresh_inner(&self, st: &mut State, locked: bool) -> Result<(), StorageError> {
        let meta = match std::fs::metadata(&self.file) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                st.set_empty();
                return Ok(());
            }
            Err(e) => return Err(io_err(&self.file, "stat", e)),
        };
        if st.loaded && st.stamp == Some(Stamp::of(&meta)) {
            return Ok(());
        }
        match self.load()? {
            Loaded::Missing => st.set_empty(),
            Loaded::Map { map, stamp, handle } => {
                st.total = total_size(&map);
                st.map = map;
                st.loaded = true;
                st.stamp = Some(stamp);
                st._handle = Some(handle);
            }
            Loaded::Corrupt(reason) => {
                if !locked {
                    // Re-check under the lock before declaring it corrupt.
                    let _flock = self.lock_file()?;
                    return self.refresh_inner(st, true);
                }
                self.move_aside(&reason)?;
                st.set_empty();
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<Loaded, StorageError> {
        let mut handle = match open_no_follow(&self.file, false) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => return Err(io_err(&self.file, "open", link_text(e))),
        };
        let meta = handle
            .metadata()
            .map_err(|e| io_err(&self.file, "stat", e))?;
        let stamp = Stamp::of(&meta);
        let cap = self.read_cap();
        if meta.len() > cap {
            return Err(io_err(
                &self.file,
                "read",
                format!("file is {} bytes, larger than {cap}", meta.len()),
            ));
        }
        let mut bytes = Vec::new();
        (&mut handle)
            .take(cap.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_err(&self.file, "read", e))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap {
            return Err(io_err(
                &self.file,
                "read",
                "file grew beyond the size limit",
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Loaded::Map {
                map: BTreeMap::new(),
                stamp,
                handle,
            });
        }
        match serde_json::from_slice::<BTreeMap<String, String>>(&bytes) {
            Ok(map) => Ok(Loaded::Map { map, stamp, handle }),
            Err(e) => Ok(Loaded::Corrupt(e.to_string())),
        }
    }

    /// Move a corrupt `storage.json` aside without replacing any existing file.
    fn move_aside(&self, reason: &str) -> Result<(), StorageError> {
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for n in 0u32..1000 {
            let name = if n == 0 {
                format!("{STORAGE_FILE}.corrupt-{ts}")
            } else {
                format!("{STORAGE_FILE}.corrupt-{ts}-{n}")
            };
            let aside = self.dir.join(name);
            // hard_link fails if the target exists: no file is ever replaced.
            let moved = match std::fs::hard_link(&self.file, &aside) {
                Ok(()) => std::fs::remove_file(&self.file)
                    .map_err(|e| {
                        io_err(&self.file, "remove corrupt file after linking it aside", e)
                    })
                    .map(|()| true)?,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                Err(_) if !aside.exists() => {
                    // No hard links on this file system: rename (we hold the lock).
                    std::fs::rename(&self.file, &aside)
                        .map_err(|e| io_err(&self.file, "move corrupt file aside", e))?;
                    true
                }
                Err(_) => false,
            };
            if moved {
                log::error!(
                    "[plugin:{}] storage file {} is corrupt ({reason}); moved it to {} and starting with empty storage",
                    self.plugin_id,
                    self.file.display(),
                    aside.display()
                );
                return Ok(());
            }
        }
        Err(io_err(
            &self.file,
            "move corrupt file aside",
            "no free name for the corrupt copy",
        ))
    }

    #[cfg(feature = "sys")]
    /// Write the snapshot's map atomically; on success record the new file's stamp.
    fn persist(&self, st: &mut State) -> Result<(), StorageError> {
        let json =
            serde_json::to_vec_pretty(&st.map).map_err(|e| io_err(&self.file, "serialize", e))?;
        let tmp = fsutil::tmp_sibling(&self.file);
        let write = AtomicWrite {
            target: &self.file,
            tmp: &tmp,
            mode: None,
        };
        let before_rename = || {
            #[cfg(test)]
            if self
                .fail_next_rename
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(std::io::Error::other("injected failure"));
            }
            Ok(())
        };
        let committed = write
            .write_checked(&[&json], before_rename)
            .map_err(|e| match e.step {
                WriteStep::Create => io_err(&tmp, "create temporary file", e.error),
                WriteStep::Write => io_err(&tmp, "write", e.error),
                WriteStep::Sync => io_err(&tmp, "fsync", e.error),
                WriteStep::Rename => io_err(&self.file, "rename temporary file", e.error),
            })?;
        let f = committed.file;
        // The new content is committed (visible) from here on; memory follows it, and
        // the other stores of this process check the file on their next read.
        let generation = WRITE_GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
        if let Err(e) = committed.dir_sync {
            log::warn!(
                "[plugin:{}] storage: fsync of {} failed: {e}",
                self.plugin_id,
                self.dir.display()
            );
        }
        match f.metadata() {
            Ok(meta) => {
                st.stamp = Some(Stamp::of(&meta));
                st._handle = Some(f);
            }
            Err(_) => {
                // Unknown stamp: force a reload on the next access.
                st.stamp = None;
                st._handle = None;
            }
        }
        st.loaded = true;
        st.checked = Some((Instant::now(), generation));
        Ok(())
    }
}

/// The JS backend's store: memory only (a wasm32 host has no file system), with the same
/// value limit and quota; the embedder keeps it across runs with [`Store::snapshot`] and
/// [`Store::restore`] (`JsHost.exportStorage` / `importStorage`).
#[cfg(not(feature = "sys"))]
impl Store {
    fn create_dir(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn lock_file(&self) -> Result<(), StorageError> {
        Ok(())
    }

    fn refresh_for_read(&self, st: &mut State) -> Result<(), StorageError> {
        self.refresh(st, false)
    }

    /// Memory is the only copy: nothing to reload.
    fn refresh(&self, st: &mut State, _locked: bool) -> Result<(), StorageError> {
        st.loaded = true;
        Ok(())
    }

    /// Memory is the only copy: nothing to write.
    fn persist(&self, st: &mut State) -> Result<(), StorageError> {
        st.loaded = true;
        Ok(())
    }

    /// Every key and value (for the embedder to keep).
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.lock_state().map.clone()
    }

    /// Replace the contents with `map` (what [`Store::snapshot`] gave earlier); refused
    /// when it is over the quota.
    pub fn restore(&self, map: BTreeMap<String, String>) -> Result<(), StorageError> {
        let total = total_size(&map);
        if total > self.total_max {
            return Err(StorageError::Quota {
                size: total,
                limit: self.total_max,
            });
        }
        let mut st = self.lock_state();
        st.map = map;
        st.total = total;
        st.loaded = true;
        Ok(())
    }
}

/// Open a storage file without following a symlink in its last component: a
/// `storage.json` or `.storage.lock` planted as a link to a file outside the data
/// directory is refused (ELOOP), never read or created through (tests/redteam.rs,
/// `storage_files_that_are_symlinks_are_refused`). `create`: read-write, created if
/// missing (the lock file).
fn open_no_follow(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    if create {
        options.write(true).create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.open(path)
}

/// ELOOP from [`open_no_follow`] said in words.
fn link_text(e: std::io::Error) -> String {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP) {
        return "it is a symbolic link; storage files are never followed through links".into();
    }
    e.to_string()
}

/// Opens each data directory's store once: every instance of a plugin (and every
/// plugin pointing at the same directory) shares one [`Store`]. Entries are weak: a
/// store no context uses any more is dropped, and the next open reloads it from disk
/// (which always holds the committed state). The first opener's plugin id and quota
/// apply to a shared store.
#[derive(Default)]
pub struct StoreRegistry {
    stores: Mutex<HashMap<PathBuf, Weak<Store>>>,
}

impl StoreRegistry {
    /// The shared store of `data_dir` (opened on first use). The directory is keyed by
    /// its canonical form (missing tail components appended lexically) and is not
    /// created until the first write.
    pub fn open(
        &self,
        data_dir: &Path,
        plugin_id: &str,
        total_max: usize,
    ) -> Result<Arc<Store>, StorageError> {
        // The JS backend's wasm32 host has no current directory (and `is_absolute` is
        // false for every path there): its data directories are names only.
        let abs = if data_dir.is_absolute() || !cfg!(feature = "sys") {
            data_dir.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| io_err(data_dir, "current directory", e))?
                .join(data_dir)
        };
        let key = match std::fs::canonicalize(&abs) {
            Ok(c) => c,
            Err(_) => crate::policy::resolve_partially(&abs),
        };
        let mut stores = match self.stores.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(existing) = stores.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        stores.retain(|_, w| w.strong_count() > 0);
        let store = Arc::new(Store::new(key.clone(), plugin_id, total_max));
        stores.insert(key, Arc::downgrade(&store));
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;

    const MAX: usize = 1 << 20;

    fn open(reg: &StoreRegistry, dir: &Path) -> Arc<Store> {
        reg.open(dir, "t", MAX).unwrap()
    }

    /// Let the read window pass, so the next read checks the file (edits made behind
    /// the store's back, as another process would).
    fn past_recheck_interval() {
        std::thread::sleep(RECHECK_INTERVAL + Duration::from_millis(5));
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn roundtrip_and_persistence_across_registries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let a = StoreRegistry::default();
        let s = open(&a, &dir);
        // Opening does not create the directory; reads and no-op deletes neither.
        assert!(!dir.exists());
        assert_eq!(s.get("k", MAX).unwrap(), None);
        s.delete("absent").unwrap();
        assert!(!dir.exists());
        s.set("k", "v1").unwrap();
        s.set("a", "x").unwrap();
        s.set("k", "v2").unwrap();
        assert_eq!(s.get("k", MAX).unwrap().as_deref(), Some("v2"));
        assert_eq!(
            s.list_keys().unwrap(),
            vec!["a".to_string(), "k".to_string()]
        );
        // Same registry: the same store.
        assert!(Arc::ptr_eq(&s, &open(&a, &dir)));
        // A second registry (as another process would) reads the file.
        let b = StoreRegistry::default();
        let s2 = open(&b, &dir);
        assert!(!Arc::ptr_eq(&s, &s2));
        assert_eq!(s2.get("k", MAX).unwrap().as_deref(), Some("v2"));
        s2.delete("a").unwrap();
        assert_eq!(s.list_keys().unwrap(), vec!["k".to_string()]);
    }

    #[test]
    fn writes_from_another_store_are_seen_without_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (StoreRegistry::default(), StoreRegistry::default());
        let s1 = open(&a, tmp.path());
        let s2 = open(&b, tmp.path());
        s1.set("one", "1").unwrap();
        assert_eq!(s2.get("one", MAX).unwrap().as_deref(), Some("1"));
        s2.set("two", "2").unwrap();
        // s1 must not lose s2's key when it writes next.
        s1.set("three", "3").unwrap();
        for s in [&s1, &s2] {
            assert_eq!(
                s.list_keys().unwrap(),
                vec!["one".to_string(), "three".to_string(), "two".to_string()]
            );
        }
        // Same length rewrite is also seen.
        s2.set("one", "9").unwrap();
        assert_eq!(s1.get("one", MAX).unwrap().as_deref(), Some("9"));
        // A deleted file (e.g. tark's logout) reads as empty.
        std::fs::remove_file(tmp.path().join(STORAGE_FILE)).unwrap();
        past_recheck_interval();
        assert_eq!(s1.get("one", MAX).unwrap(), None);
        assert!(s2.list_keys().unwrap().is_empty());
    }

    #[test]
    fn in_place_external_edit_is_seen() {
        // tark rewrites the file in place (same inode).
        let tmp = tempfile::tempdir().unwrap();
        let reg = StoreRegistry::default();
        let s = open(&reg, tmp.path());
        s.set("k", "short").unwrap();
        std::fs::write(
            tmp.path().join(STORAGE_FILE),
            "{\n  \"k\": \"much longer\"\n}",
        )
        .unwrap();
        past_recheck_interval();
        assert_eq!(s.get("k", MAX).unwrap().as_deref(), Some("much longer"));
    }

    #[test]
    fn concurrent_writers_lose_no_update() {
        let tmp = tempfile::tempdir().unwrap();
        let regs = [StoreRegistry::default(), StoreRegistry::default()];
        let stores: Vec<Arc<Store>> = regs.iter().map(|r| open(r, tmp.path())).collect();
        let shared = open(&regs[0], tmp.path());
        std::thread::scope(|scope| {
            for (t, store) in stores.iter().enumerate() {
                scope.spawn(move || {
                    for i in 0..30 {
                        store.set(&format!("t{t}-{i}"), &format!("{i}")).unwrap();
                    }
                });
            }
            // A third writer on the first registry's store (same Arc as stores[0]).
            let shared = &shared;
            scope.spawn(move || {
                for i in 0..30 {
                    shared.set(&format!("s-{i}"), "x").unwrap();
                }
            });
        });
        let fresh = open(&StoreRegistry::default(), tmp.path());
        assert_eq!(fresh.list_keys().unwrap().len(), 90);
        for s in &stores {
            assert_eq!(s.list_keys().unwrap().len(), 90);
        }
        let on_disk: HashMap<String, String> =
            serde_json::from_slice(&std::fs::read(tmp.path().join(STORAGE_FILE)).unwrap()).unwrap();
        assert_eq!(on_disk.len(), 90);
        assert_eq!(on_disk.get("t1-29").map(String::as_str), Some("29"));
        // No temporary files left behind.
        assert_eq!(
            dir_names(tmp.path()),
            vec![LOCK_FILE.to_string(), STORAGE_FILE.to_string()]
        );
    }

    #[test]
    fn file_format_is_tark_compatible() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = StoreRegistry::default();
        let s = open(&reg, tmp.path());
        s.set("b", "2").unwrap();
        s.set("a", "quote \" and \u{e9}").unwrap();
        let text = std::fs::read_to_string(tmp.path().join(STORAGE_FILE)).unwrap();
        assert_eq!(
            text,
            "{\n  \"a\": \"quote \\\" and \u{e9}\",\n  \"b\": \"2\"\n}"
        );
        let parsed: HashMap<String, String> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed.get("a").map(String::as_str),
            Some("quote \" and \u{e9}")
        );
        s.delete("a").unwrap();
        s.delete("b").unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(STORAGE_FILE)).unwrap(),
            "{}"
        );
        // A file written by tark (any order, any spacing) is read.
        std::fs::write(tmp.path().join(STORAGE_FILE), "{\"z\":\"1\",\"y\":\"2\"}").unwrap();
        past_recheck_interval();
        assert_eq!(
            s.list_keys().unwrap(),
            vec!["y".to_string(), "z".to_string()]
        );
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_overwritten() {
        for bad in ["{not json", "{\"a\": 1}", "[\"a\"]", "\u{0}\u{ff}"] {
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join(STORAGE_FILE);
            std::fs::write(&file, bad).unwrap();
            // Pre-existing aside file with the name we would pick first must survive.
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            for t in [ts, ts + 1] {
                std::fs::write(
                    tmp.path().join(format!("{STORAGE_FILE}.corrupt-{t}")),
                    "older",
                )
                .unwrap();
            }
            let reg = StoreRegistry::default();
            let s = open(&reg, tmp.path());
            assert_eq!(s.get("a", MAX).unwrap(), None, "{bad}");
            assert!(!file.exists());
            let asides: Vec<String> = dir_names(tmp.path())
                .into_iter()
                .filter(|n| n.starts_with("storage.json.corrupt-"))
                .collect();
            assert_eq!(asides.len(), 3, "{asides:?}");
            let contents: Vec<String> = asides
                .iter()
                .map(|n| std::fs::read_to_string(tmp.path().join(n)).unwrap_or_default())
                .collect();
            assert_eq!(contents.iter().filter(|c| c.as_str() == "older").count(), 2);
            assert_eq!(
                asides
                    .iter()
                    .filter(|n| std::fs::read(tmp.path().join(n)).unwrap() == bad.as_bytes())
                    .count(),
                1
            );
            // The store starts empty and works.
            s.set("a", "fresh").unwrap();
            assert_eq!(s.get("a", MAX).unwrap().as_deref(), Some("fresh"));
        }
    }

    #[test]
    fn blank_file_is_empty_map() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(STORAGE_FILE), "  \n").unwrap();
        let s = open(&StoreRegistry::default(), tmp.path());
        assert!(s.list_keys().unwrap().is_empty());
        assert_eq!(dir_names(tmp.path()), vec![STORAGE_FILE.to_string()]);
    }

    #[test]
    fn value_limit_and_quota() {
        let tmp = tempfile::tempdir().unwrap();
        let s = StoreRegistry::default().open(tmp.path(), "t", 20).unwrap();
        s.set("k", "0123456789").unwrap(); // 11 bytes
        assert!(matches!(
            s.get("k", 5),
            Err(StorageError::ValueTooLarge { size: 10, limit: 5 })
        ));
        assert_eq!(s.get("k", 10).unwrap().as_deref(), Some("0123456789"));
        // 11 + 2 + 8 = 21 > 20: refused, nothing changes.
        assert!(matches!(
            s.set("k2", "abcdefgh"),
            Err(StorageError::Quota {
                size: 21,
                limit: 20
            })
        ));
        assert_eq!(s.list_keys().unwrap(), vec!["k".to_string()]);
        let fresh = open(&StoreRegistry::default(), tmp.path());
        assert_eq!(fresh.list_keys().unwrap(), vec!["k".to_string()]);
        // Replacing a value counts the old one out.
        s.set("k", "0123456789012345678").unwrap(); // 20
        assert!(s.set("k", "01234567890123456789").is_err());
        s.delete("k").unwrap();
        s.set("k2", "abcdefgh").unwrap();
    }

    #[test]
    fn over_quota_store_may_shrink() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(STORAGE_FILE), "{\"big\": \"0123456789\"}").unwrap();
        let s = StoreRegistry::default().open(tmp.path(), "t", 5).unwrap();
        assert!(matches!(s.set("x", "y"), Err(StorageError::Quota { .. })));
        s.set("big", "0").unwrap();
        assert_eq!(s.get("big", MAX).unwrap().as_deref(), Some("0"));
    }

    #[test]
    fn failed_write_leaves_memory_equal_to_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let s = open(&StoreRegistry::default(), &dir);
        s.set("k", "old").unwrap();
        s.set("gone", "x").unwrap();
        let before = std::fs::read(dir.join(STORAGE_FILE)).unwrap();
        s.fail_next_rename.store(true, Ordering::SeqCst);
        assert!(matches!(s.set("k", "new"), Err(StorageError::Io { .. })));
        s.fail_next_rename.store(true, Ordering::SeqCst);
        assert!(matches!(s.set("other", "v"), Err(StorageError::Io { .. })));
        s.fail_next_rename.store(true, Ordering::SeqCst);
        assert!(matches!(s.delete("gone"), Err(StorageError::Io { .. })));
        assert_eq!(s.get("k", MAX).unwrap().as_deref(), Some("old"));
        assert_eq!(
            s.list_keys().unwrap(),
            vec!["gone".to_string(), "k".to_string()]
        );
        assert_eq!(std::fs::read(dir.join(STORAGE_FILE)).unwrap(), before);
        // Temporary files of failed writes are removed.
        assert_eq!(
            dir_names(&dir),
            vec![LOCK_FILE.to_string(), STORAGE_FILE.to_string()]
        );
        // And the quota accounting was not disturbed: the next write works normally.
        s.set("k", "new").unwrap();
        assert_eq!(
            open(&StoreRegistry::default(), &dir)
                .get("k", MAX)
                .unwrap()
                .as_deref(),
            Some("new")
        );
    }

    #[test]
    fn registry_keys_by_canonical_dir_and_drops_unused() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = StoreRegistry::default();
        let a = open(&reg, tmp.path());
        let b = open(&reg, &tmp.path().join("x/.."));
        assert!(Arc::ptr_eq(&a, &b));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
        let c = open(&reg, tmp.path());
        c.set("k", "v").unwrap();
        assert_eq!(c.get("k", MAX).unwrap().as_deref(), Some("v"));
    }
}
