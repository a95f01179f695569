//! On-disk cache of compiled artifacts, so a plugin is compiled once per machine rather
//! than once per process (loading a verified artifact is 10-100x cheaper than compiling).
//!
//! Loading an artifact means mapping native code into the process, so nothing is
//! deserialized unless it is provably a file this host wrote for exactly this key:
//!
//! - Key: the module's SHA-256, tark-wasmer's version, wasmer's version, the engine's
//!   compiler id, target triple and CPU features, the enabled wasm features and the
//!   engine's settings fingerprint ([`crate::engine::WasmEngine::settings_fingerprint`]).
//!   The entry's file name is the SHA-256 of the key text.
//! - File: an 88-byte header (magic, format version, reserved zero, key digest, payload
//!   length, payload SHA-256) followed by the payload (`Module::serialize`). Every header
//!   byte is checked, the file length must match exactly and the payload hash is verified
//!   before `Module::deserialize` is called. Anything else is a [`Rejection`]: the module
//!   is recompiled and the entry overwritten.
//! - Writes go to a temporary file in the same directory, are fsynced and renamed into
//!   place, so concurrent processes only ever see complete files.
//! - On unix the directory must not be writable by group or others and entries must be
//!   owned by the directory's owner (a shared directory would let another user plant
//!   native code).
//! - Size is bounded: after each store, least-recently-used entries (by mtime; a hit
//!   touches the mtime when it is older than [`TOUCH_INTERVAL`]) are removed until the
//!   total fits the limit.
//!
//! Trust rules for a warm start (what lets a start skip hashing; red-team tests cite
//! these):
//!
//! 1. The directory's and every file's owner/mode checks above are the security
//!    boundary: only the directory's owner can write there, and that user is trusted
//!    (they can run any code as themselves anyway). Everything below is about integrity
//!    against accidents, never against that owner.
//! 2. An entry's payload digest is verified the first time a process loads it; the
//!    loader then records the entry's identity and version, its [`FileStamp`] (device,
//!    inode, length, modification and change times), in a sidecar `<entry>.ok` next to
//!    it (same owner/mode checks). A later load whose entry still has exactly that stamp
//!    skips the digest; any rewrite, rename, copy or touch of the entry changes the
//!    stamp (the change time cannot be set back by a user), so it is verified again.
//!    Header, key and length are checked on every load.
//! 3. The wasm file of a plugin is hashed (SHA-256, the module's identity in the key)
//!    when its stamp is unknown or changed; [`ArtifactCache::remember_wasm_hash`]
//!    records `(stamp, hash)` in `<sha256 of its path>.wasmid`, and a start whose wasm
//!    has the same stamp takes the recorded hash ([`ArtifactCache::known_wasm_hash`]).
//!    A same-size rewrite within the file system's timestamp granularity that also keeps
//!    the inode is the one change this does not notice; `plugin add`/`update` replace
//!    the file (new inode), so installs are always noticed.
//! 4. Entries are read into memory once (no mmap): wasmer's `Module::deserialize`
//!    copies the code into its own executable mapping anyway, and a mapped file could
//!    change under the loader after verification.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmer::sys::NativeEngineExt;
use wasmer::{Engine, Module};

use crate::fsutil::{AtomicWrite, WriteStep};

/// Environment variable naming the cache directory (same as `--cache-dir`).
pub const CACHE_DIR_ENV: &str = "TARK_WASMER_CACHE_DIR";
/// Environment variable with the cache size limit, e.g. `512M` (same as `--cache-max-size`).
pub const CACHE_MAX_SIZE_ENV: &str = "TARK_WASMER_CACHE_MAX_SIZE";
/// Default size limit: enough for a few hundred plugins under both compilers.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Magic bytes at the start of every entry.
const MAGIC: [u8; 8] = *b"TWASMART";
/// Entry format version; bump when the header or key text changes.
const FORMAT_VERSION: u32 = 2;
/// Header length: magic 8, version 4, reserved 4, key 32, payload length 8, payload hash 32.
pub const HEADER_LEN: usize = 88;
/// Extension of entry files (`<64 hex digits>.art`).
const ENTRY_EXT: &str = ".art";
/// Prefix of temporary files being written.
const TMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this are leftovers of a crashed writer.
const STALE_TMP_AGE: Duration = Duration::from_secs(3600);
/// Extension of an entry's verification record (`<entry>.ok`, trust rule 2).
const VERIFIED_EXT: &str = ".ok";
/// Extension of a wasm file's hash record (trust rule 3).
const WASM_ID_EXT: &str = ".wasmid";
/// Largest record file read.
const RECORD_MAX: u64 = 4096;
/// A hit touches the entry's mtime (for LRU eviction) only when it is older than this,
/// so the entry's stamp stays stable between starts (trust rule 2).
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(3600);

/// A file's identity and version: what the records of trust rules 2 and 3 vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// The stamp of `meta` (None where the platform has no inode and change time: there
    /// every load verifies).
    pub fn of(meta: &fs::Metadata) -> Option<FileStamp> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {}.{} {}.{}",
            self.dev, self.ino, self.len, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }
}

/// Where and how big the cache is; resolved against the environment by [`CacheConfig::open`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheConfig {
    /// Neither read nor write the disk cache (`--no-cache`).
    pub disabled: bool,
    /// Directory (default: `TARK_WASMER_CACHE_DIR`, then `<user cache dir>/tark-wasmer/artifacts`).
    pub dir: Option<PathBuf>,
    /// Size limit in bytes (default: `TARK_WASMER_CACHE_MAX_SIZE`, then [`DEFAULT_MAX_BYTES`]).
    pub max_bytes: Option<u64>,
}

impl CacheConfig {
    /// The directory this configuration names (even when disabled, so `cache stats` and
    /// `cache clear` can still report on it); `None` when the platform has no cache dir.
    pub fn resolve_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.dir {
            return Some(d.clone());
        }
        if let Some(d) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(d));
        }
        dirs::cache_dir().map(|d| d.join("tark-wasmer").join("artifacts"))
    }

    /// The size limit this configuration names.
    pub fn resolve_max_bytes(&self) -> Result<u64, CacheError> {
        if let Some(m) = self.max_bytes {
            return Ok(m);
        }
        match std::env::var(CACHE_MAX_SIZE_ENV) {
            Ok(v) if !v.trim().is_empty() => parse_size(&v).map_err(|message| CacheError::Config {
                message: format!("invalid {CACHE_MAX_SIZE_ENV} value '{v}': {message}"),
            }),
            _ => Ok(DEFAULT_MAX_BYTES),
        }
    }

    /// The cache to use, or `None` when disabled or when there is no cache directory.
    pub fn open(&self) -> Result<Option<ArtifactCache>, CacheError> {
        if self.disabled {
            return Ok(None);
        }
        let max = self.resolve_max_bytes()?;
        match self.resolve_dir() {
            Some(dir) => Ok(Some(ArtifactCache::new(dir, max))),
            None => {
                log::debug!("artifact cache: no user cache directory; caching disabled");
                Ok(None)
            }
        }
    }
}

/// Parse a size such as `1048576`, `512K`, `512M`, `2G`, `2GiB` (binary units, case
/// insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err("expected a number of bytes, optionally with K, M, G or T".into());
    }
    let n: u64 = digits.parse().map_err(|_| "number too large".to_string())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("unknown unit '{other}' (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "size too large".to_string())
}

/// Cache management failed (configuration, `stats`, `clear`). Loads and stores never
/// return this to plugin loading: a failing cache only costs a compile.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A setting is invalid.
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// A file operation on the cache failed.
    #[error("artifact cache: {what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The directory is not safe to load native code from.
    #[error("artifact cache: {0}")]
    Unsafe(String),
    /// The module could not be serialized.
    #[error("artifact cache: serializing failed: {0}")]
    Serialize(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Everything that decides whether a compiled artifact fits this engine and module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    text: String,
    digest: [u8; 32],
}

impl CacheKey {
    /// The key for `module_hash` compiled by `engine` with `settings` (the engine's
    /// settings fingerprint: compiler, metering, memory limits, ...).
    pub fn new(engine: &Engine, settings: &str, module_hash: &[u8; 32]) -> Self {
        let target = engine.target();
        let cpu: Vec<String> = target
            .cpu_features()
            .iter()
            .map(|f| format!("{f:?}"))
            .collect();
        let wasm_features = format!("{:?}", engine.as_sys().inner().features());
        let text = format!(
            "tark-wasmer artifact cache format {FORMAT_VERSION}\n\
             tark-wasmer {}\n\
             wasmer {}\n\
             engine {}\n\
             target {}\n\
             cpu-features {}\n\
             wasm-features {wasm_features}\n\
             settings {settings}\n\
             module {}\n",
            env!("CARGO_PKG_VERSION"),
            wasmer::sys::vm::VERSION,
            engine.deterministic_id(),
            target.triple(),
            cpu.join(","),
            hex(module_hash),
        );
        let digest = Sha256::digest(text.as_bytes()).into();
        CacheKey { text, digest }
    }

    /// The full key text (one `name value` per line).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the key text: the entry's name and the header's key field.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The digest as 64 lower-case hex digits.
    pub fn hex(&self) -> String {
        hex(&self.digest)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Why a cache file was not loaded (it is recompiled and overwritten instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Shorter than the header.
    Truncated {
        /// File length.
        len: u64,
    },
    /// Does not start with the magic bytes.
    BadMagic,
    /// Written by another format version.
    UnsupportedFormat(u32),
    /// A reserved header field is not zero.
    BadHeader,
    /// The header names another key (a file renamed or copied into place).
    WrongKey,
    /// Header payload length and file length disagree.
    LengthMismatch {
        /// Length the header says.
        header: u64,
        /// Length the file has.
        actual: u64,
    },
    /// Larger than the cache's size limit.
    TooLarge(u64),
    /// The payload's SHA-256 differs from the header's.
    HashMismatch,
    /// The file or directory could be changed by someone else (unix permissions/owner).
    NotPrivate(String),
    /// Reading the file failed.
    Io(String),
    /// wasmer refused the verified payload (e.g. incompatible artifact).
    Deserialize(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Truncated { len } => write!(f, "truncated ({len} bytes)"),
            Rejection::BadMagic => f.write_str("not a tark-wasmer artifact (bad magic)"),
            Rejection::UnsupportedFormat(v) => write!(f, "unsupported format version {v}"),
            Rejection::BadHeader => f.write_str("corrupt header (reserved field not zero)"),
            Rejection::WrongKey => f.write_str("header is for another key"),
            Rejection::LengthMismatch { header, actual } => write!(
                f,
                "payload length {actual} differs from the header's {header}"
            ),
            Rejection::TooLarge(len) => write!(f, "file of {len} bytes exceeds the cache limit"),
            Rejection::HashMismatch => f.write_str("payload SHA-256 mismatch (corrupt)"),
            Rejection::NotPrivate(why) => write!(f, "not private: {why}"),
            Rejection::Io(e) => write!(f, "read failed: {e}"),
            Rejection::Deserialize(e) => write!(f, "deserialize failed: {e}"),
        }
    }
}

/// How a module was obtained, so callers and tests can tell hits from misses without timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Already compiled in this process (the engine's in-process map).
    Memory,
    /// Loaded from a verified cache file.
    DiskHit,
    /// No cache file: compiled; `stored` says whether the artifact was written.
    Miss {
        /// The artifact was written to the cache.
        stored: bool,
    },
    /// A cache file was rejected: compiled and (if `stored`) overwritten.
    Rejected {
        /// Why the file was not loaded.
        reason: Rejection,
        /// The artifact was written to the cache.
        stored: bool,
    },
    /// No disk cache in use: compiled.
    Uncached,
}

impl CacheOutcome {
    /// Whether the module was compiled (rather than reused).
    pub fn compiled(&self) -> bool {
        matches!(
            self,
            CacheOutcome::Miss { .. } | CacheOutcome::Rejected { .. } | CacheOutcome::Uncached
        )
    }
}

/// Per-cache event counts since it was opened (this process only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Verified files loaded.
    pub hits: u64,
    /// Lookups that found no file.
    pub misses: u64,
    /// Files rejected (corrupt, foreign, undeserializable).
    pub rejected: u64,
    /// Artifacts written.
    pub stored: u64,
    /// Writes that failed or were skipped as too large.
    pub store_failures: u64,
    /// Entries removed by eviction.
    pub evicted: u64,
}

#[derive(Default)]
struct AtomicCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    stored: AtomicU64,
    store_failures: AtomicU64,
    evicted: AtomicU64,
}

/// What `stats` reports about a cache directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// The directory.
    pub dir: PathBuf,
    /// Number of entries.
    pub entries: u64,
    /// Total size of the entries in bytes.
    pub total_bytes: u64,
    /// The size limit in bytes.
    pub limit_bytes: u64,
}

/// What `clear` or eviction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Entries removed.
    pub entries: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// A cache directory of compiled artifacts. Cheap to create (no I/O until used); safe to
/// share between threads and processes.
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    counters: AtomicCounters,
    warned: AtomicBool,
}

impl fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactCache")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

/// One entry (or temporary) file found in the directory.
struct Entry {
    path: PathBuf,
    len: u64,
    mtime: SystemTime,
}

impl ArtifactCache {
    /// A cache in `dir` (created on first store) holding at most `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        ArtifactCache {
            dir: dir.into(),
            max_bytes,
            counters: AtomicCounters::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file that holds (or would hold) the entry for `key`.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}{ENTRY_EXT}", key.hex()))
    }

    /// Event counts of this cache object.
    pub fn counters(&self) -> CacheCounters {
        let c = &self.counters;
        CacheCounters {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            stored: c.stored.load(Ordering::Relaxed),
            store_failures: c.store_failures.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
        }
    }

    /// Load the module for `key` from disk, or compile it with `compile` and store it.
    /// Cache problems are logged and never fail the load; `compile`'s error is returned.
    pub fn load_or_compile<E>(
        &self,
        what: &str,
        key: &CacheKey,
        engine: &Engine,
        compile: impl FnOnce() -> Result<Module, E>,
    ) -> Result<(Module, CacheOutcome), E> {
        let started = Instant::now();
        let rejection = match self.load(key, engine) {
            Ok(Some(module)) => {
                log::debug!(
                    "artifact cache hit: {what} from {} in {} us",
                    self.entry_path(key).display(),
                    started.elapsed().as_micros()
                );
                return Ok((module, CacheOutcome::DiskHit));
            }
            Ok(None) => {
                log::debug!("artifact cache miss: {what} (key {})", key.hex());
                None
            }
            Err(reason) => {
                let path = self.entry_path(key);
                log::warn!(
                    "artifact cache: rejected {} for {what}: {reason}; recompiling",
                    path.display()
                );
                // Our own damaged file goes (the store below rewrites it); a file failing
                // the ownership checks, or one we could not read, is left alone.
                if !matches!(reason, Rejection::NotPrivate(_) | Rejection::Io(_)) {
                    let _ = fs::remove_file(&path);
                    let _ = fs::remove_file(verified_path(&path));
                }
                Some(reason)
            }
        };
        let module = compile()?;
        let stored = match self.store(key, &module) {
            Ok(stored) => stored,
            Err(e) => {
                self.counters.store_failures.fetch_add(1, Ordering::Relaxed);
                if self.warned.swap(true, Ordering::Relaxed) {
                    log::debug!("{e}");
                } else {
                    log::warn!("{e} (compiled artifacts will not be cached)");
                }
                false
            }
        };
        let outcome = match rejection {
            Some(reason) => CacheOutcome::Rejected { reason, stored },
            None => CacheOutcome::Miss { stored },
        };
        Ok((module, outcome))
    }

    /// The verified module for `key`: `Ok(None)` when there is no entry, `Err` when there is
    /// one that must not (or cannot) be loaded.
    pub fn load(&self, key: &CacheKey, engine: &Engine) -> Result<Option<Module>, Rejection> {
        let result = self.load_inner(key, engine);
        let counter = match &result {
            Ok(Some(_)) => &self.counters.hits,
            Ok(None) => &self.counters.misses,
            Err(_) => &self.counters.rejected,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn load_inner(&self, key: &CacheKey, engine: &Engine) -> Result<Option<Module>, Rejection> {
        let path = self.entry_path(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Rejection::Io(e.to_string())),
        };
        let (payload, stamp) = self.read_verified(&mut file, key, &path)?;
        // SAFETY: `Module::deserialize` maps the payload as native code. The payload is
        // exactly the bytes `Module::serialize` produced in a process whose engine had this
        // key (same tark-wasmer and wasmer versions, compiler, target, CPU features, wasm
        // features and settings): `read_verified` checked the magic, format, key digest,
        // length and SHA-256 over the whole payload, and (unix) that the file and directory
        // are writable only by their owner. Files we did not write, truncated or corrupted
        // files and files for other keys never get here. (In wasmer 7.4.2 the "checked"
        // `Module::deserialize` forwards to `deserialize_unchecked`, so this verification is
        // the real guard.) Any error wasmer still reports is treated as a miss.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
            Module::deserialize(engine, payload)
        }));
        match loaded {
            Ok(Ok(module)) => {
                // Touch for LRU eviction (rarely, so the stamp stays stable); failure
                // only makes eviction less accurate. The record follows the new stamp:
                // the bytes were just verified (or vouched for) through this handle.
                let now = SystemTime::now();
                let old = stamp.map(|(_, mtime)| mtime);
                if old.is_none_or(|m| now.duration_since(m).is_ok_and(|a| a > TOUCH_INTERVAL))
                    && file.set_modified(now).is_ok()
                {
                    if let Some(new) = file.metadata().ok().as_ref().and_then(FileStamp::of) {
                        self.write_record(&verified_path(&path), &new.text());
                    }
                }
                Ok(Some(module))
            }
            Ok(Err(e)) => Err(Rejection::Deserialize(e.to_string())),
            Err(_) => Err(Rejection::Deserialize("wasmer panicked".into())),
        }
    }

    /// Read `file` (the entry for `key`) and return its payload if every check passes.
    /// Also returns the entry's stamp and mtime (None where there are no stamps).
    #[allow(clippy::type_complexity)]
    fn read_verified(
        &self,
        file: &mut File,
        key: &CacheKey,
        path: &Path,
    ) -> Result<(Vec<u8>, Option<(FileStamp, SystemTime)>), Rejection> {
        let io = |e: io::Error| Rejection::Io(e.to_string());
        let meta = file.metadata().map_err(io)?;
        check_private(&self.dir, &meta)?;
        let stamp =
            FileStamp::of(&meta).map(|s| (s, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        let len = meta.len();
        if len < HEADER_LEN as u64 {
            return Err(Rejection::Truncated { len });
        }
        if len > self.max_bytes {
            return Err(Rejection::TooLarge(len));
        }
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header).map_err(io)?;
        let fields = Header::parse(&header);
        if fields.magic != MAGIC {
            return Err(Rejection::BadMagic);
        }
        if fields.version != FORMAT_VERSION {
            return Err(Rejection::UnsupportedFormat(fields.version));
        }
        if fields.reserved != 0 {
            return Err(Rejection::BadHeader);
        }
        if fields.key != *key.digest() {
            return Err(Rejection::WrongKey);
        }
        let actual = len - HEADER_LEN as u64;
        if fields.payload_len != actual {
            return Err(Rejection::LengthMismatch {
                header: fields.payload_len,
                actual,
            });
        }
        let want = usize::try_from(actual).map_err(|_| Rejection::TooLarge(len))?;
        let mut payload = Vec::with_capacity(want);
        file.take(actual).read_to_end(&mut payload).map_err(io)?;
        if payload.len() != want {
            return Err(Rejection::LengthMismatch {
                header: fields.payload_len,
                actual: payload.len() as u64,
            });
        }
        // Trust rule 2: the digest is skipped only for exactly the file verified before.
        let record = verified_path(path);
        let vouched = stamp
            .as_ref()
            .is_some_and(|(s, _)| self.read_record(&record).as_deref() == Some(&s.text()));
        if !vouched {
            let digest = payload_digest(&payload);
            if digest != fields.payload_sha256 {
                return Err(Rejection::HashMismatch);
            }
            if let Some((s, _)) = &stamp {
                self.write_record(&record, &s.text());
            }
        }
        Ok((payload, stamp))
    }

    /// The text of a record file (trust rules 2 and 3), if it exists, is small and
    /// passes the owner/mode checks.
    fn read_record(&self, path: &Path) -> Option<String> {
        let mut f = File::open(path).ok()?;
        let meta = f.metadata().ok()?;
        check_private(&self.dir, &meta).ok()?;
        if meta.len() > RECORD_MAX {
            return None;
        }
        let mut text = String::new();
        f.read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// Replace a record file atomically (temp + rename, mode 0600, no fsync: a lost
    /// record only costs one more hash). Failures are ignored for the same reason.
    fn write_record(&self, path: &Path, text: &str) {
        use std::io::Write;
        let Some(stem) = path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let tmp = self.temp_path(stem);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// The record file of the wasm at `wasm_path` (trust rule 3).
    fn wasm_id_path(&self, wasm_path: &Path) -> PathBuf {
        let digest: [u8; 32] = Sha256::digest(wasm_path.as_os_str().as_encoded_bytes()).into();
        self.dir.join(format!("{}{WASM_ID_EXT}", hex(&digest)))
    }

    /// The SHA-256 recorded for the wasm at `wasm_path` when the file still has `stamp`
    /// (trust rule 3), so a start need not hash it again.
    pub fn known_wasm_hash(&self, wasm_path: &Path, stamp: &FileStamp) -> Option<[u8; 32]> {
        let text = self.read_record(&self.wasm_id_path(wasm_path))?;
        let (recorded, hash) = text.rsplit_once(' ')?;
        if recorded != stamp.text() || hash.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hash.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }

    /// Record that the wasm at `wasm_path`, with `stamp`, has SHA-256 `hash`. Needs the
    /// directory (created private if missing); failures only cost a hash next time.
    pub fn remember_wasm_hash(&self, wasm_path: &Path, stamp: &FileStamp, hash: &[u8; 32]) {
        if self.ensure_dir().is_ok() {
            let text = format!("{} {}", stamp.text(), hex(hash));
            self.write_record(&self.wasm_id_path(wasm_path), &text);
        }
    }

    /// Serialize `module` and write it as the entry for `key` (atomically), then evict down
    /// to the limit. `Ok(false)` when the artifact alone exceeds the limit.
    pub fn store(&self, key: &CacheKey, module: &Module) -> Result<bool, CacheError> {
        let payload = module
            .serialize()
            .map_err(|e| CacheError::Serialize(e.to_string()))?;
        let total = (payload.len() as u64).saturating_add(HEADER_LEN as u64);
        if total > self.max_bytes {
            self.counters.store_failures.fetch_add(1, Ordering::Relaxed);
            log::debug!(
                "artifact cache: artifact of {total} bytes exceeds the limit of {}; not stored",
                self.max_bytes
            );
            return Ok(false);
        }
        self.ensure_dir()?;
        let header = Header {
            magic: MAGIC,
            version: FORMAT_VERSION,
            reserved: 0,
            key: *key.digest(),
            payload_len: payload.len() as u64,
            payload_sha256: payload_digest(&payload),
        }
        .encode();
        let target = self.entry_path(key);
        let tmp = self.temp_path(&key.hex());
        let write = AtomicWrite {
            target: &target,
            tmp: &tmp,
            mode: Some(0o600),
        };
        // The directory fsync is best effort: the rename is what makes the entry visible.
        if let Err(e) = write.write(&[&header, &payload]) {
            if e.step == WriteStep::Create {
                return Err(io_err("creating", &tmp)(e.error));
            }
            return Err(CacheError::Io {
                what: "writing",
                path: target,
                source: e.error,
            });
        }
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "artifact cache: stored {} ({total} bytes)",
            target.display()
        );
        if let Err(e) = self.evict() {
            log::debug!("artifact cache: eviction failed: {e}");
        }
        Ok(true)
    }

    /// Create the directory (private on unix) and check it is safe to use.
    fn ensure_dir(&self) -> Result<(), CacheError> {
        if !self.dir.is_dir() {
            if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            let mut builder = fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating", &self.dir)(e)),
            }
        }
        let meta = fs::metadata(&self.dir).map_err(io_err("reading", &self.dir))?;
        dir_is_private(&self.dir, &meta).map_err(CacheError::Unsafe)
    }

    /// A fresh temporary path in the cache directory (same file system, so rename is
    /// atomic); its prefix lets [`Self::evict`] sweep stale ones.
    fn temp_path(&self, stem: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{TMP_PREFIX}{stem}-{}-{nanos}-{n}",
            std::process::id()
        ))
    }

    /// Entries in the directory (none when it does not exist).
    fn entries(&self) -> Result<(Vec<Entry>, Vec<Entry>), CacheError> {
        let mut entries = Vec::new();
        let mut temps = Vec::new();
        let read = match fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((entries, temps)),
            Err(e) => return Err(io_err("listing", &self.dir)(e)),
        };
        for item in read {
            let item = item.map_err(io_err("listing", &self.dir))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let entry = Entry {
                path: item.path(),
                len: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            };
            if is_entry_name(name) {
                entries.push(entry);
            } else if name.starts_with(TMP_PREFIX) || is_record_name(name) {
                // Temporaries and records: not entries (not counted, never loaded).
                temps.push(entry);
            }
        }
        Ok((entries, temps))
    }

    /// Number and total size of the entries.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let (entries, _) = self.entries()?;
        Ok(CacheStats {
            dir: self.dir.clone(),
            entries: entries.len() as u64,
            total_bytes: entries.iter().fold(0u64, |a, e| a.saturating_add(e.len)),
            limit_bytes: self.max_bytes,
        })
    }

    /// Remove every entry and temporary file (only files this cache names; the directory
    /// and anything else in it stay).
    pub fn clear(&self) -> Result<Removed, CacheError> {
        let (entries, temps) = self.entries()?;
        let mut removed = Removed::default();
        for e in entries {
            match fs::remove_file(&e.path) {
                Ok(()) => {
                    removed.entries += 1;
                    removed.bytes = removed.bytes.saturating_add(e.len);
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(io_err("removing", &e.path)(err)),
            }
        }
        for t in temps {
            let _ = fs::remove_file(t.path);
        }
        Ok(removed)
    }

    /// Remove least-recently-used entries until the total fits the limit, and temporary
    /// files left by crashed writers.
    pub fn evict(&self) -> Result<Removed, CacheError> {
        let (mut entries, temps) = self.entries()?;
        let now = SystemTime::now();
        for t in temps {
            let is_tmp = t
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(TMP_PREFIX));
            if is_tmp
                && now
                    .duration_since(t.mtime)
                    .is_ok_and(|age| age > STALE_TMP_AGE)
            {
                let _ = fs::remove_file(t.path);
            }
        }
        let mut total = entries.iter().fold(0u64, |a, e| a.saturating_add(e.len));
        let mut removed = Removed::default();
        if total <= self.max_bytes {
            return Ok(removed);
        }
        entries.sort_by_key(|e| e.mtime);
        for e in entries {
            if total <= self.max_bytes {
                break;
            }
            match fs::remove_file(&e.path) {
                Ok(()) => {
                    let _ = fs::remove_file(verified_path(&e.path));
                    removed.entries += 1;
                    removed.bytes = removed.bytes.saturating_add(e.len);
                    log::debug!("artifact cache: evicted {}", e.path.display());
                }
                // Another process evicted it first: it is gone either way.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    log::debug!("artifact cache: evicting {}: {err}", e.path.display());
                    continue;
                }
            }
            total = total.saturating_sub(e.len);
        }
        self.counters
            .evicted
            .fetch_add(removed.entries, Ordering::Relaxed);
        Ok(removed)
    }
}

/// Integrity digest of a payload (SHA-256). This is the dominant cost of a hit (about
/// 2 GB/s with SHA-NI); changing the algorithm needs a [`FORMAT_VERSION`] bump.
fn payload_digest(payload: &[u8]) -> [u8; 32] {
    // BLAKE3: ~5x SHA-256's throughput here (10 GB/s vs 2 GB/s), and it is hashing
    // megabytes of native code on every warm start.
    blake3::hash(payload).into()
}

/// The verification record of the entry at `entry` (trust rule 2).
fn verified_path(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(VERIFIED_EXT);
    PathBuf::from(name)
}

/// `<64 hex digits>.art.ok` or `<64 hex digits>.wasmid`.
fn is_record_name(name: &str) -> bool {
    name.strip_suffix(VERIFIED_EXT).is_some_and(is_entry_name)
        || name.strip_suffix(WASM_ID_EXT).is_some_and(|stem| {
            stem.len() == 64
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// `<64 hex digits>.art`.
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(ENTRY_EXT).is_some_and(|stem| {
        stem.len() == 64
            && stem
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The fixed-size header of an entry.
struct Header {
    magic: [u8; 8],
    version: u32,
    reserved: u32,
    key: [u8; 32],
    payload_len: u64,
    payload_sha256: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&self.magic);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        h[16..48].copy_from_slice(&self.key);
        h[48..56].copy_from_slice(&self.payload_len.to_le_bytes());
        h[56..88].copy_from_slice(&self.payload_sha256);
        h
    }

    fn parse(h: &[u8; HEADER_LEN]) -> Header {
        // Fixed-size array sub-slices: infallible copies.
        fn arr<const N: usize>(h: &[u8; HEADER_LEN], at: usize) -> [u8; N] {
            let mut a = [0u8; N];
            a.copy_from_slice(&h[at..at + N]);
            a
        }
        Header {
            magic: arr::<8>(h, 0),
            version: u32::from_le_bytes(arr::<4>(h, 8)),
            reserved: u32::from_le_bytes(arr::<4>(h, 12)),
            key: arr::<32>(h, 16),
            payload_len: u64::from_le_bytes(arr::<8>(h, 48)),
            payload_sha256: arr::<32>(h, 56),
        }
    }
}

/// Unix: the directory must not be writable by group or others.
#[cfg(unix)]
fn dir_is_private(dir: &Path, meta: &fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); not using it for native code",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn dir_is_private(dir: &Path, meta: &fs::Metadata) -> Result<(), String> {
    if meta.is_dir() {
        Ok(())
    } else {
        Err(format!("{} is not a directory", dir.display()))
    }
}

/// Unix: the directory is private and the file is a regular file owned by the directory's
/// owner and not writable by group or others.
#[cfg(unix)]
fn check_private(dir: &Path, file: &fs::Metadata) -> Result<(), Rejection> {
    use std::os::unix::fs::MetadataExt;
    let dmeta = fs::metadata(dir).map_err(|e| Rejection::Io(e.to_string()))?;
    dir_is_private(dir, &dmeta).map_err(Rejection::NotPrivate)?;
    if !file.is_file() {
        return Err(Rejection::NotPrivate("not a regular file".into()));
    }
    if file.uid() != dmeta.uid() {
        return Err(Rejection::NotPrivate(format!(
            "owned by uid {}, the directory by uid {}",
            file.uid(),
            dmeta.uid()
        )));
    }
    if file.mode() & 0o022 != 0 {
        return Err(Rejection::NotPrivate(format!(
            "writable by group or others (mode {:o})",
            file.mode() & 0o7777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path, file: &fs::Metadata) -> Result<(), Rejection> {
    if file.is_file() {
        Ok(())
    } else {
        Err(Rejection::NotPrivate("not a regular file".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        wasmer::sys::Singlepass::default().into()
    }

    fn module_for(engine: &Engine, n: i32) -> (Module, [u8; 32]) {
        let wat = format!("(module (func (export \"f\") (result i32) i32.const {n}))");
        let wasm = wat::parse_str(&wat).expect("wat");
        let hash: [u8; 32] = Sha256::digest(&wasm).into();
        (Module::new(engine, &wasm).expect("compiles"), hash)
    }

    fn call_f(engine: &Engine, module: &Module) -> i32 {
        let mut store = wasmer::Store::new(engine.clone());
        let instance =
            wasmer::Instance::new(&mut store, module, &wasmer::imports! {}).expect("instantiates");
        let f = instance
            .exports
            .get_typed_function::<(), i32>(&store, "f")
            .expect("export");
        f.call(&mut store).expect("call")
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("100000000T").is_err());
    }

    #[test]
    fn header_round_trips_and_entry_names_are_strict() {
        let h = Header {
            magic: MAGIC,
            version: 7,
            reserved: 0,
            key: [3; 32],
            payload_len: 0x0102_0304_0506,
            payload_sha256: [9; 32],
        };
        let p = Header::parse(&h.encode());
        assert_eq!(p.magic, MAGIC);
        assert_eq!(p.version, 7);
        assert_eq!(p.key, [3; 32]);
        assert_eq!(p.payload_len, 0x0102_0304_0506);
        assert_eq!(p.payload_sha256, [9; 32]);
        assert!(is_entry_name(&format!("{}.art", "a".repeat(64))));
        assert!(!is_entry_name(&format!("{}.art", "A".repeat(64))));
        assert!(!is_entry_name(&format!("{}.art", "a".repeat(63))));
        assert!(!is_entry_name(&format!("{}.bin", "a".repeat(64))));
        assert!(!is_entry_name(".tmp-x"));
        assert_eq!(hex(&[0x00, 0xff, 0x1a]), "00ff1a");
    }

    #[test]
    fn keys_differ_by_settings_module_and_compiler() {
        let sp = engine();
        let k1 = CacheKey::new(&sp, "singlepass", &[1; 32]);
        assert_eq!(k1, CacheKey::new(&sp, "singlepass", &[1; 32]));
        assert_ne!(
            k1.digest(),
            CacheKey::new(&sp, "singlepass", &[2; 32]).digest()
        );
        assert_ne!(
            k1.digest(),
            CacheKey::new(&sp, "singlepass;metering=1000", &[1; 32]).digest()
        );
        let cl: Engine = wasmer::sys::Cranelift::default().into();
        assert_ne!(
            k1.digest(),
            CacheKey::new(&cl, "singlepass", &[1; 32]).digest()
        );
        for line in [
            "wasmer 7.",
            "target ",
            "cpu-features ",
            "settings singlepass",
        ] {
            assert!(k1.text().contains(line), "{line} missing in {}", k1.text());
        }
        assert_eq!(k1.hex().len(), 64);
    }

    #[test]
    fn store_then_load_hits_and_every_header_byte_is_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path().join("a/b"), DEFAULT_MAX_BYTES);
        let e = engine();
        let (m, hash) = module_for(&e, 41);
        let key = CacheKey::new(&e, "singlepass", &hash);
        assert_eq!(cache.load(&key, &e).map(|m| m.is_some()), Ok(false));
        assert_eq!(cache.store(&key, &m).ok(), Some(true));
        let loaded = cache.load(&key, &e).expect("verifies").expect("present");
        assert_eq!(call_f(&e, &loaded), 41);
        let path = cache.entry_path(&key);
        let good = fs::read(&path).expect("entry");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode(&path).ok(), Some(0o600));
            assert_eq!(mode(cache.dir()).ok(), Some(0o700));
        }
        for i in 0..HEADER_LEN {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            fs::write(&path, &bad).expect("write");
            let r = cache.load(&key, &e);
            assert!(r.is_err(), "flipped header byte {i} was accepted");
        }
        // Payload: first, middle and last byte.
        for i in [HEADER_LEN, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x80;
            fs::write(&path, &bad).expect("write");
            assert_eq!(cache.load(&key, &e).err(), Some(Rejection::HashMismatch));
        }
        fs::write(&path, &good[..good.len() - 1]).expect("write");
        assert!(matches!(
            cache.load(&key, &e).err(),
            Some(Rejection::LengthMismatch { .. })
        ));
        fs::write(&path, &good[..10]).expect("write");
        assert_eq!(
            cache.load(&key, &e).err(),
            Some(Rejection::Truncated { len: 10 })
        );
        let mut longer = good.clone();
        longer.push(0);
        fs::write(&path, &longer).expect("write");
        assert!(matches!(
            cache.load(&key, &e).err(),
            Some(Rejection::LengthMismatch { .. })
        ));
        let c = cache.counters();
        assert_eq!((c.hits, c.misses, c.stored), (1, 1, 1));
        assert_eq!(c.rejected, HEADER_LEN as u64 + 6);
    }

    #[test]
    fn rejected_file_is_recompiled_and_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path(), DEFAULT_MAX_BYTES);
        let e = engine();
        let (m, hash) = module_for(&e, 5);
        let key = CacheKey::new(&e, "singlepass", &hash);
        fs::write(cache.entry_path(&key), b"").expect("write");
        let (module, outcome) = cache
            .load_or_compile::<()>("t", &key, &e, || Ok(m.clone()))
            .expect("compiles");
        assert_eq!(
            outcome,
            CacheOutcome::Rejected {
                reason: Rejection::Truncated { len: 0 },
                stored: true
            }
        );
        assert_eq!(call_f(&e, &module), 5);
        let (again, outcome) = cache
            .load_or_compile::<()>("t", &key, &e, || Err(()))
            .expect("hit, no compile");
        assert_eq!(outcome, CacheOutcome::DiskHit);
        assert_eq!(call_f(&e, &again), 5);
    }

    #[test]
    fn rejected_file_is_removed_even_when_nothing_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path(), 100);
        let e = engine();
        let (m, hash) = module_for(&e, 6);
        let key = CacheKey::new(&e, "singlepass", &hash);
        fs::write(cache.entry_path(&key), [0u8; 50]).expect("write");
        let (_, outcome) = cache
            .load_or_compile::<()>("t", &key, &e, || Ok(m.clone()))
            .expect("compiles");
        assert_eq!(
            outcome,
            CacheOutcome::Rejected {
                reason: Rejection::Truncated { len: 50 },
                stored: false
            }
        );
        assert!(!cache.entry_path(&key).exists());
        assert_eq!(cache.counters().store_failures, 1);
    }

    #[cfg(unix)]
    #[test]
    fn group_writable_directory_and_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path(), DEFAULT_MAX_BYTES);
        let e = engine();
        let (m, hash) = module_for(&e, 1);
        let key = CacheKey::new(&e, "singlepass", &hash);
        assert_eq!(cache.store(&key, &m).ok(), Some(true));
        let path = cache.entry_path(&key);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            cache.load(&key, &e).err(),
            Some(Rejection::NotPrivate(_))
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(cache.load(&key, &e).is_ok_and(|m| m.is_some()));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            cache.load(&key, &e).err(),
            Some(Rejection::NotPrivate(_))
        ));
        assert!(matches!(cache.store(&key, &m), Err(CacheError::Unsafe(_))));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    }

    #[test]
    fn eviction_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = engine();
        let modules: Vec<(Module, CacheKey)> = (0..4)
            .map(|n| {
                let (m, h) = module_for(&e, n);
                (m, CacheKey::new(&e, "singlepass", &h))
            })
            .collect();
        let big = ArtifactCache::new(dir.path(), DEFAULT_MAX_BYTES);
        for (m, k) in &modules {
            assert_eq!(big.store(k, m).ok(), Some(true));
        }
        let sizes: Vec<u64> = modules
            .iter()
            .map(|(_, k)| {
                fs::metadata(big.entry_path(k))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .collect();
        // Oldest first: 0, 1, 2, 3 an hour apart; then a hit on 0 makes it the newest.
        let base = SystemTime::now() - Duration::from_secs(10 * 3600);
        for (i, (_, k)) in modules.iter().enumerate() {
            let f = File::options()
                .write(true)
                .open(big.entry_path(k))
                .expect("open");
            f.set_modified(base + Duration::from_secs(3600 * i as u64))
                .expect("set mtime");
        }
        assert!(big.load(&modules[0].1, &e).is_ok_and(|m| m.is_some()));
        // Room for two entries: 1 and 2 (least recently used) go.
        let limit = sizes[0] + sizes[3] + 10;
        let small = ArtifactCache::new(dir.path(), limit);
        let removed = small.evict().expect("evicts");
        assert_eq!(removed.entries, 2);
        let present: Vec<bool> = modules
            .iter()
            .map(|(_, k)| small.entry_path(k).exists())
            .collect();
        assert_eq!(present, vec![true, false, false, true]);
        let stats = small.stats().expect("stats");
        assert_eq!(stats.entries, 2);
        assert!(stats.total_bytes <= limit);
        assert_eq!(small.counters().evicted, 2);
        // An artifact larger than the whole limit is not stored.
        let tiny = ArtifactCache::new(dir.path(), 100);
        assert_eq!(tiny.store(&modules[1].1, &modules[1].0).ok(), Some(false));
        assert!(!tiny.entry_path(&modules[1].1).exists());
    }

    #[test]
    fn clear_removes_only_cache_files_and_stale_temps_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = ArtifactCache::new(dir.path(), DEFAULT_MAX_BYTES);
        let e = engine();
        let (m, h) = module_for(&e, 3);
        let key = CacheKey::new(&e, "singlepass", &h);
        assert_eq!(cache.store(&key, &m).ok(), Some(true));
        let stale = dir.path().join(".tmp-stale");
        fs::write(&stale, b"partial").expect("write");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
            .expect("age");
        let fresh = dir.path().join(".tmp-fresh");
        fs::write(&fresh, b"partial").expect("write");
        cache.evict().expect("evict");
        assert!(!stale.exists());
        assert!(fresh.exists(), "a temp file being written must survive");
        fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
        let size = fs::metadata(cache.entry_path(&key)).map(|m| m.len()).ok();
        let removed = cache.clear().expect("clear");
        assert_eq!(removed.entries, 1);
        assert_eq!(Some(removed.bytes), size);
        assert!(dir.path().join("notes.txt").exists());
        assert!(!fresh.exists());
        assert_eq!(cache.stats().map(|s| s.entries).ok(), Some(0));
        let missing = ArtifactCache::new(dir.path().join("nope"), 1);
        assert_eq!(missing.stats().map(|s| s.entries).ok(), Some(0));
    }

    #[test]
    fn config_resolves_explicit_values_and_disabled() {
        let c = CacheConfig {
            disabled: true,
            ..Default::default()
        };
        assert!(c.open().ok().is_some_and(|o| o.is_none()));
        let c = CacheConfig {
            disabled: false,
            dir: Some(PathBuf::from("/x/y")),
            max_bytes: Some(7),
        };
        let cache = c.open().ok().flatten().expect("cache");
        assert_eq!(cache.dir(), Path::new("/x/y"));
        assert_eq!(cache.max_bytes(), 7);
    }
}
