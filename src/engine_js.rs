//! The engine of the JS backend (`engine` when built with `js`): the JavaScript engine's
//! own WebAssembly compiles and runs plugins, so there is no compiler choice, no
//! metering middleware and no artifact cache (the JS engine keeps its own code caches).
//! What stays the same as native: components are refused, the static shape bounds of
//! [`bounds`] are checked before compiling (a compile-time bomb costs a JS engine as much
//! as wasmer), and compiled modules are shared by the hash of their bytes.

#[path = "engine/bounds.rs"]
pub mod bounds;
#[path = "engine/module.rs"]
mod module;

pub use module::{custom_section_names, is_component, CompiledModule};

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmer::{Module, Store};

/// Compiling a module failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bytes are a component, not a core module.
    #[error("{0} is a WebAssembly component; tark plugins are core modules (build for wasm32-wasip1 without componentizing)")]
    Component(String),
    /// The module's shape is outside the static bounds of [`bounds`].
    #[error("Refusing to compile WASM: {what}: {message}")]
    TooComplex {
        /// What was compiled (plugin id).
        what: String,
        /// Which bound, the module's value and the limit.
        message: String,
    },
    /// The bytes are not a valid module or the JS engine refused them.
    #[error("Failed to compile WASM: {what}: {message}")]
    Compile {
        /// What was compiled (plugin id).
        what: String,
        /// The JS engine's message.
        message: String,
    },
}

/// The JS engine, seen as a wasmer engine: stores and compiled modules.
#[derive(Default)]
pub struct WasmEngine {
    modules: Mutex<HashMap<[u8; 32], Module>>,
}

impl WasmEngine {
    /// A new engine (the JS engine is shared; this keeps compiled modules by hash).
    pub fn new() -> Self {
        Self::default()
    }

    /// A store for one instance.
    pub fn new_store(&self) -> Store {
        Store::default()
    }

    /// Compile `wasm` (or return the module compiled earlier from the same bytes).
    pub fn compile(&self, what: &str, wasm: &[u8]) -> Result<CompiledModule, EngineError> {
        if is_component(wasm) {
            return Err(EngineError::Component(what.to_string()));
        }
        module::check_bounds(what, wasm)?;
        let hash: [u8; 32] = Sha256::digest(wasm).into();
        let custom_sections = custom_section_names(wasm);
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let module = match modules.get(&hash) {
            Some(m) => m.clone(),
            None => {
                let store = Store::default();
                let m = Module::new(&store, wasm).map_err(|e| EngineError::Compile {
                    what: what.to_string(),
                    message: e.to_string(),
                })?;
                modules.insert(hash, m.clone());
                m
            }
        };
        Ok(CompiledModule {
            module,
            hash,
            wasm_size: wasm.len(),
            custom_sections,
        })
    }
}
