//! tark-wasmer: a plugin host for [tark](https://github.com/thoughtoinnovate/tark) built on
//! wasmer. It runs tark's WebAssembly plugins (auth, tool, provider, channel and hook
//! plugins) unchanged, whether they speak tark's legacy host-function ABI or the
//! canonical ABI of `wit-bindgen` plugins, on the singlepass or cranelift compiler.
//!
//! # How the pieces meet
//!
//! Data flows one way, and this crate's items are listed in that order below:
//!
//! ```text
//! plugin.toml -> manifest -> registry -> engine (compile, or load from the artifact cache)
//!     -> instance: host services wired through one ABI adapter, under limits
//!     -> typed plugin handle (PluginInstance) -> caller (tark, the CLI, a test)
//! ```
//!
//! - A [`PluginManifest`] is one parsed `plugin.toml` (tark's format and rules).
//! - The [`PluginRegistry`] finds [`InstalledPlugin`]s on tark's on-disk layout and
//!   installs, updates and removes them.
//! - A [`WasmEngine`] per [`Compiler`] compiles modules once per process; the
//!   [`ArtifactCache`] keeps compiled code on disk so a plugin compiles once per machine.
//! - [`PluginHost`] ties it together: it loads plugins and hands out [`PluginInstance`]s,
//!   whose methods carry tark's names (`provider_info`, `channel_poll`, ...) and return
//!   the typed records of tark's interfaces ([`types`]). Every method is a row of
//!   [`plugin::functions`], the one table of plugin functions.
//! - Each call runs under [`Limits`] (CPU budget, wall-clock limit, memory cap); host
//!   services (storage, HTTP, WebSocket, environment, files, log) are granted by the
//!   plugin's capabilities and nothing else.
//! - Failures are typed: [`Error`] says which stage failed for which plugin; a failed
//!   call carries a [`CallError`], and an instance that may be inconsistent afterwards is
//!   discarded (the next call gets a fresh one).
//!
//! [`check`] and [`inspect`] answer "will this plugin work here?" without running it, and
//! [`tark`] is a drop-in for tark's own `crate::plugins` module.
//!
//! ```no_run
//! use tark_wasmer::{Compiler, HostOptions, PluginHost};
//!
//! # fn main() -> tark_wasmer::Result<()> {
//! let mut host = PluginHost::with_options(HostOptions {
//!     compiler: Some(Compiler::Cranelift),
//!     ..Default::default()
//! })?;
//! host.load_id("legacy-provider")?;
//! if let Some(provider) = host.get_mut("legacy-provider") {
//!     let info = provider.provider_info()?; // a typed ProviderInfo
//!     println!("{}", info.display_name);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! `ARCHITECTURE.md` in the repository maps the modules and the rules between them.

// ---- Targets wasmer 7.4 cannot serve: a clear error instead of one deep inside wasmer -----
// wasmer 7.4 stops every native compiler on Windows (singlepass, cranelift and LLVM each
// have a `compile_error!` for `target_os = "windows"`), and its compilers emit code only for
// 64-bit targets (singlepass: x86_64, aarch64, riscv64; cranelift: x86_64, aarch64,
// riscv64). README "Platforms" has the full matrix.
#[cfg(windows)]
compile_error!(
    "tark-wasmer does not build for Windows: wasmer 7.4 supports none of its compilers \
     (singlepass, cranelift, LLVM) there. Use tark's own wasmtime host on Windows \
     (wasmtime supports Windows at Tier 1)."
);
#[cfg(all(target_pointer_width = "32", not(target_family = "wasm")))]
compile_error!(
    "tark-wasmer does not build for 32-bit targets: wasmer 7.4's compilers (singlepass, \
     cranelift) generate code only for x86_64, aarch64 and riscv64. Use tark's own \
     wasmtime host there (wasmtime runs 32-bit targets through its Pulley interpreter)."
);

// ---- Backends: `sys` (native, the default) or `js` (wasm32 in a JavaScript engine) ----------
#[cfg(all(feature = "sys", feature = "js"))]
compile_error!(
    "features `sys` and `js` exclude each other: the JS backend is built with \
     `--no-default-features --features js` for wasm32-unknown-unknown (scripts/js-build.sh)"
);
#[cfg(not(any(feature = "sys", feature = "js")))]
compile_error!(
    "enable one backend: `sys` (the default, native) or `js` (wasm32, Node and browsers)"
);

// ---- 1. Describing and finding plugins -------------------------------------------------
pub mod manifest;
mod policy;
pub mod registry;
pub mod types;

// ---- 2. Compiling -----------------------------------------------------------------------
#[cfg(feature = "sys")]
pub mod cache;
#[cfg(feature = "sys")]
pub mod engine;
/// The JS backend's engine: the JavaScript engine compiles (no compilers, no artifact cache).
#[cfg(not(feature = "sys"))]
#[path = "engine_js.rs"]
pub mod engine;
pub mod limits;

// ---- 3. Host services and the ABI adapters (internal: only `abi` touches guest memory) --
mod abi;
mod host;

// ---- 4. Plugins: typed handles, the function table, checks ------------------------------
#[cfg(feature = "sys")]
pub mod check;
pub mod inspect;
pub mod plugin;

// ---- 5. Faces for other users -----------------------------------------------------------
/// The JS backend's face for JavaScript embedders (wasm-bindgen).
#[cfg(all(feature = "js", not(feature = "sys")))]
pub mod js;
pub mod lowlevel;
#[cfg(feature = "sys")]
pub mod tark;

mod error;
mod fsutil;

pub use abi::{AbiKind, CallError, GuestMemoryError, InstantiateError, LinkError};
#[cfg(feature = "sys")]
pub use cache::{ArtifactCache, CacheConfig, CacheOutcome};
#[cfg(feature = "sys")]
pub use engine::{Compiler, EngineSettings};
pub use engine::{EngineError, WasmEngine};
pub use error::{Error, Result};
pub use host::{HostConfig, HostError, CA_FILE_ENV, TRACE_TARGET};
pub use limits::Limits;
pub use manifest::{PluginCapabilities, PluginManifest, PluginType};
pub use plugin::PluginInstance;
#[cfg(feature = "sys")]
pub use plugin::{HostOptions, PluginHost};
pub use policy::PolicyConfig;
pub use registry::{InstallSource, InstalledPlugin, PluginRegistry};
