//! Compilers and compiled modules: one wasmer engine per compiler and code-affecting
//! settings ([`EngineSettings`]) per process, shared by every plugin, and an in-process
//! module cache keyed by the module's hash so a plugin is compiled once however many
//! instances it gets (and loaded plugins' modules are kept for the process's lifetime).

pub mod bounds;
pub mod metering;
mod module;

pub use module::{custom_section_names, is_component, CompiledModule};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use wasmer::{Engine, Module, Store};

use crate::cache::{ArtifactCache, CacheKey, CacheOutcome, FileStamp};
use crate::limits::Limits;

/// The code generator that turns wasm into native code.
///
/// The default is cranelift, chosen from the benches (README, "Benchmarks"): with the
/// artifact cache on (the default) a plugin is compiled once per install, and after that
/// cranelift wins every warm start (its artifacts are half the size) and runs guest code
/// 1.1-2.9x faster. Singlepass compiles 9-11x faster: pick it when the cache is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compiler {
    /// One-pass compiler: compiles several times faster, code runs slower.
    Singlepass,
    /// Optimising compiler: slower to compile, faster code.
    #[default]
    Cranelift,
}

impl Compiler {
    /// Every compiler built into this binary.
    pub fn available() -> Vec<Compiler> {
        let mut v = Vec::new();
        if cfg!(feature = "singlepass") {
            v.push(Compiler::Singlepass);
        }
        if cfg!(feature = "cranelift") {
            v.push(Compiler::Cranelift);
        }
        v
    }

    /// The lower-case name used on the command line and in cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Compiler::Singlepass => "singlepass",
            Compiler::Cranelift => "cranelift",
        }
    }
}

impl fmt::Display for Compiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compiler {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "singlepass" => Ok(Compiler::Singlepass),
            "cranelift" => Ok(Compiler::Cranelift),
            other => Err(EngineError::UnknownCompiler(other.to_string())),
        }
    }
}

/// Compiling or loading a module failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The compiler name is not one we know.
    #[error("unknown compiler '{0}': use 'singlepass' or 'cranelift'")]
    UnknownCompiler(String),
    /// The compiler was left out of this build.
    #[error("compiler '{0}' is not built into this binary (cargo feature '{0}' is off)")]
    CompilerNotBuilt(Compiler),
    /// The wasm file could not be read.
    #[error("Failed to read WASM: {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The bytes are a component, not a core module.
    #[error("{0} is a WebAssembly component; tark plugins are core modules (build for wasm32-wasip1 without componentizing)")]
    Component(String),
    /// The module's shape is outside the static bounds that keep compiling fast
    /// ([`bounds`]); it is refused before any compiler runs.
    #[error("Refusing to compile WASM: {what}: {message}")]
    TooComplex {
        /// What was compiled (plugin id or path).
        what: String,
        /// Which bound, the module's value and the limit.
        message: String,
    },
    /// The bytes are not a valid module or do not compile.
    #[error("Failed to compile WASM: {what}: {message}")]
    Compile {
        /// What was compiled (plugin id or path).
        what: String,
        /// Compiler message.
        message: String,
    },
}

/// Engine settings that change the generated machine code. Engines (and cached
/// artifacts) are keyed by them; everything else (budgets, deadlines, memory caps) is
/// applied per store and call, so one compiled module serves every plugin setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EngineSettings {
    /// Compile with operator metering (the CPU budget of [`Limits::cpu_time`]).
    pub metering: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings::from_limits(&Limits::default())
    }
}

impl EngineSettings {
    /// The code-affecting part of a plugin's limits.
    pub fn from_limits(limits: &Limits) -> Self {
        EngineSettings {
            metering: limits.cpu_metering,
        }
    }
}

/// One engine (compiler + settings) and the modules it has compiled in this process.
pub struct WasmEngine {
    engine: Engine,
    compiler: Compiler,
    settings: EngineSettings,
    modules: Mutex<HashMap<[u8; 32], Module>>,
    /// Disk cache used by [`WasmEngine::compile`] (none by default).
    cache: RwLock<Option<Arc<ArtifactCache>>>,
}

impl fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmEngine")
            .field("compiler", &self.compiler)
            .field("settings", &self.settings)
            .finish()
    }
}

impl WasmEngine {
    /// Build a new engine for `compiler` with the default settings. Prefer
    /// [`WasmEngine::shared`]: engines are costly and modules compiled by one engine are
    /// only usable with it.
    pub fn new(compiler: Compiler) -> Result<Self, EngineError> {
        Self::with_settings(compiler, EngineSettings::default())
    }

    /// Build a new engine for `compiler` with explicit code-affecting settings.
    pub fn with_settings(
        compiler: Compiler,
        settings: EngineSettings,
    ) -> Result<Self, EngineError> {
        #[allow(unused_imports)]
        use wasmer::sys::CompilerConfig;
        let engine: Engine = match compiler {
            #[cfg(feature = "singlepass")]
            Compiler::Singlepass => {
                let mut config = wasmer::sys::Singlepass::default();
                config.push_middleware(metering::metering_middleware(compiler));
                config.into()
            }
            #[cfg(feature = "cranelift")]
            Compiler::Cranelift => {
                let mut config = wasmer::sys::Cranelift::default();
                config.push_middleware(metering::metering_middleware(compiler));
                config.into()
            }
            #[allow(unreachable_patterns)]
            other => return Err(EngineError::CompilerNotBuilt(other)),
        };
        Ok(WasmEngine {
            engine,
            compiler,
            settings,
            modules: Mutex::new(HashMap::new()),
            cache: RwLock::new(None),
        })
    }

    /// The process-wide engine for `compiler` with the default settings.
    pub fn shared(compiler: Compiler) -> Result<Arc<WasmEngine>, EngineError> {
        Self::shared_with(compiler, EngineSettings::default())
    }

    /// The process-wide engine for `compiler` and `settings` (one per combination).
    pub fn shared_with(
        compiler: Compiler,
        settings: EngineSettings,
    ) -> Result<Arc<WasmEngine>, EngineError> {
        type Engines = Mutex<HashMap<(Compiler, EngineSettings), Arc<WasmEngine>>>;
        static ENGINES: OnceLock<Engines> = OnceLock::new();
        let mut engines = ENGINES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = engines.get(&(compiler, settings)) {
            return Ok(e.clone());
        }
        let engine = Arc::new(WasmEngine::with_settings(compiler, settings)?);
        engines.insert((compiler, settings), engine.clone());
        Ok(engine)
    }

    /// The compiler this engine uses.
    pub fn compiler(&self) -> Compiler {
        self.compiler
    }

    /// The code-affecting settings of this engine.
    pub fn settings(&self) -> EngineSettings {
        self.settings
    }

    /// The underlying wasmer engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A new store on this engine (one per instance).
    pub fn new_store(&self) -> Store {
        Store::new(self.engine.clone())
    }

    /// Use `cache` (or none) for [`WasmEngine::compile`] on this engine.
    pub fn with_cache(self, cache: Option<Arc<ArtifactCache>>) -> Self {
        self.set_cache(cache);
        self
    }

    /// Set the disk cache [`WasmEngine::compile`] uses (shared engines: affects every user;
    /// per-host caches go through [`WasmEngine::compile_cached`] instead).
    pub fn set_cache(&self, cache: Option<Arc<ArtifactCache>>) {
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = cache;
    }

    /// The disk cache [`WasmEngine::compile`] uses.
    pub fn cache(&self) -> Option<Arc<ArtifactCache>> {
        self.cache.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every engine setting that changes generated code, as text for the disk cache key
    /// (compiler, metering, memory limits/tunables, ...). Two engines with equal
    /// fingerprints must produce interchangeable artifacts.
    ///
    /// Today: the compiler and the metering scheme, e.g.
    /// `singlepass;metering=region3/200/2300/400000/6000000:5000000000000` or
    /// `cranelift;metering=off:region3/...` (the
    /// deadline's charge points are compiled in even without metering). The memory
    /// limit is not part of it: it lives in per-store tunables whose memory style (the
    /// only code-affecting part) is wasmer's default. CPU budgets and deadlines are set
    /// per call and affect no code.
    pub fn settings_fingerprint(&self) -> String {
        let metering = metering::metering_fingerprint(self.compiler, self.settings.metering);
        format!("{};metering={metering}", self.compiler.as_str())
    }

    /// The disk cache key of the module with SHA-256 `module_hash` on this engine.
    pub fn cache_key(&self, module_hash: &[u8; 32]) -> CacheKey {
        CacheKey::new(&self.engine, &self.settings_fingerprint(), module_hash)
    }

    /// Compile `wasm` (or return the module compiled earlier from the same bytes), through
    /// the disk cache set with [`WasmEngine::set_cache`] if any.
    pub fn compile(&self, what: &str, wasm: &[u8]) -> Result<CompiledModule, EngineError> {
        let cache = self.cache();
        self.compile_cached(what, wasm, cache.as_deref())
            .map(|(m, _)| m)
    }

    /// Compile `wasm`: in-process map, then the disk `cache` (if any), then the compiler
    /// (storing the artifact in `cache`). Says where the module came from.
    pub fn compile_cached(
        &self,
        what: &str,
        wasm: &[u8],
        cache: Option<&ArtifactCache>,
    ) -> Result<(CompiledModule, CacheOutcome), EngineError> {
        self.compile_with_hash(what, wasm, None, cache)
    }

    /// [`WasmEngine::compile_cached`] with the module's SHA-256 when the caller knows it
    /// (from the cache's record of an unchanged wasm file).
    fn compile_with_hash(
        &self,
        what: &str,
        wasm: &[u8],
        known_hash: Option<[u8; 32]>,
        cache: Option<&ArtifactCache>,
    ) -> Result<(CompiledModule, CacheOutcome), EngineError> {
        if is_component(wasm) {
            return Err(EngineError::Component(what.to_string()));
        }
        let hash: [u8; 32] = match known_hash {
            Some(h) => h,
            None => Sha256::digest(wasm).into(),
        };
        let custom_sections = custom_section_names(wasm);
        let done = |module: Module| CompiledModule {
            module,
            hash,
            wasm_size: wasm.len(),
            custom_sections,
        };
        if let Some(module) = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
        {
            return Ok((done(module.clone()), CacheOutcome::Memory));
        }
        let compile = || {
            module::check_bounds(what, wasm)?;
            Module::new(&self.engine, wasm).map_err(|e| EngineError::Compile {
                what: what.to_string(),
                message: e.to_string(),
            })
        };
        let (module, outcome) = match cache {
            Some(c) => c.load_or_compile(what, &self.cache_key(&hash), &self.engine, compile)?,
            None => (compile()?, CacheOutcome::Uncached),
        };
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, module.clone());
        Ok((done(module), outcome))
    }

    /// Read and compile a wasm file through the disk `cache` (if any). With a cache, the
    /// file is hashed only when its (device, inode, size, times) differ from the ones
    /// recorded with its hash (the cache's trust rule 3, `src/cache.rs`).
    pub fn compile_file_cached(
        &self,
        what: &str,
        path: &Path,
        cache: Option<&ArtifactCache>,
    ) -> Result<(CompiledModule, CacheOutcome), EngineError> {
        let read_err = |e: std::io::Error| EngineError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        // The stamp of the bytes read: taken from the open file, before reading.
        let stamp = file.metadata().ok().as_ref().and_then(FileStamp::of);
        let mut wasm = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut wasm).map_err(read_err)?;
        let known = match (cache, &stamp) {
            (Some(c), Some(s)) => c.known_wasm_hash(path, s),
            _ => None,
        };
        let (module, outcome) = self.compile_with_hash(what, &wasm, known, cache)?;
        if known.is_none() {
            if let (Some(c), Some(s)) = (cache, &stamp) {
                // Only if the file did not change while it was read.
                let after = std::fs::metadata(path)
                    .ok()
                    .as_ref()
                    .and_then(FileStamp::of);
                if after.as_ref() == Some(s) {
                    c.remember_wasm_hash(path, s, &module.hash);
                }
            }
        }
        Ok((module, outcome))
    }

    /// Read and compile a wasm file.
    pub fn compile_file(&self, what: &str, path: &Path) -> Result<CompiledModule, EngineError> {
        let wasm = std::fs::read(path).map_err(|e| EngineError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.compile(what, &wasm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiler_names_round_trip() {
        for c in [Compiler::Singlepass, Compiler::Cranelift] {
            assert_eq!(c.as_str().parse::<Compiler>().ok(), Some(c));
        }
        let err = "llvm".parse::<Compiler>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown compiler 'llvm': use 'singlepass' or 'cranelift'")
        );
    }

    #[test]
    fn reads_custom_section_names() {
        let wasm =
            wat::parse_str(r#"(module (@custom "component-type:x" "data") (@custom "other" ""))"#)
                .expect("wat");
        assert_eq!(
            custom_section_names(&wasm),
            vec!["component-type:x", "other"]
        );
        assert!(custom_section_names(b"\0asm\x01\0\0\0\0\xff\xff").is_empty());
        assert!(custom_section_names(b"junk").is_empty());
    }

    #[test]
    fn detects_components() {
        assert!(is_component(b"\0asm\x0d\x00\x01\x00"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00"));
        assert!(!is_component(b"\0as"));
    }

    #[test]
    fn compiles_once_per_engine_and_both_compilers_work() {
        let wasm = wat::parse_str("(module (func (export \"f\") (result i32) i32.const 7))")
            .expect("valid wat");
        for c in Compiler::available() {
            let engine = WasmEngine::new(c).expect("engine");
            let a = engine.compile("t", &wasm).expect("compiles");
            let b = engine.compile("t", &wasm).expect("compiles");
            assert_eq!(a.hash, b.hash);
            assert_eq!(engine.modules.lock().map(|m| m.len()).unwrap_or(0), 1);
            let mut store = engine.new_store();
            let instance = wasmer::Instance::new(&mut store, &a.module, &wasmer::imports! {})
                .expect("instantiates");
            let f = instance
                .exports
                .get_typed_function::<(), i32>(&store, "f")
                .expect("export");
            assert_eq!(f.call(&mut store).expect("call"), 7);
        }
        let bad = WasmEngine::new(Compiler::Singlepass)
            .expect("engine")
            .compile("bad", b"\0asm\x01\0\0\0\x05")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.starts_with("Failed to compile WASM: bad:"), "{bad}");
    }
}
