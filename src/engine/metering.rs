//! CPU metering compiled into every module: the `wasmer_middlewares::Metering` wrapper
//! the engines push onto their compiler configuration, its cost function and the
//! fingerprint that keys cached artifacts. The per-call budget is set and read by
//! `src/abi/enforce.rs` through the globals this middleware exports.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::Operator;
use wasmer::{LocalFunctionIndex, ModuleInfo};
use wasmer_middlewares::Metering;

use crate::limits::DEFAULT_CPU_BUDGET;

/// Version of the metering cost function. Part of the engine settings fingerprint
/// ([`metering_fingerprint`]): change it whenever [`operator_cost`] changes, so cached
/// artifacts compiled with the old scheme are not reused.
pub const METERING_SCHEME: &str = "ops1";

/// Everything about metering that is compiled into the code (cost function version and
/// [`INITIAL_POINTS`]), for cache keys: `ops1:200000000000`.
pub fn metering_fingerprint() -> String {
    format!("{METERING_SCHEME}:{INITIAL_POINTS}")
}

/// Points the metering globals hold when an instance is created, before the host sets
/// the plugin's budget: they bound the module's start function. Baked into the compiled
/// code, hence a constant (tark's plugins have no start function).
pub const INITIAL_POINTS: u64 = DEFAULT_CPU_BUDGET;

/// Every operator costs one point: simple, and proportional enough to run time for a
/// budget whose purpose is to stop runaway loops, not to bill.
fn operator_cost(_operator: &Operator<'_>) -> u64 {
    1
}

type CostFn = fn(&Operator<'_>) -> u64;

/// `wasmer_middlewares::Metering` for an engine that compiles many modules.
///
/// `Metering` records the global indexes of the first module it transforms and panics on
/// a second one ("Attempting to use a `Metering` middleware from multiple modules"),
/// which rules out one shared engine per compiler. This wrapper creates a fresh
/// `Metering` for each module in `transform_module_info` and hands out that module's
/// function middlewares until the next module. That is sound because wasmer 7.4 compiles
/// a module entirely under the engine's inner lock (`Artifact::new` holds
/// `engine.inner_mut()` from module transform to the last function), so the function
/// middlewares of one compilation never see another module's state.
#[derive(Default)]
pub struct SharedMetering {
    current: Mutex<Option<Arc<Metering<CostFn>>>>,
}

impl fmt::Debug for SharedMetering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMetering")
            .field("scheme", &METERING_SCHEME)
            .finish()
    }
}

/// The metering middleware to push onto a compiler configuration.
pub fn metering_middleware() -> Arc<dyn ModuleMiddleware> {
    Arc::new(SharedMetering::default())
}

impl ModuleMiddleware for SharedMetering {
    fn generate_function_middleware<'a>(
        &self,
        local_function_index: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match current {
            Some(m) => m.generate_function_middleware(local_function_index),
            // Cannot happen (wasmer transforms the module first); fail the compile
            // rather than produce unmetered code.
            None => Box::new(MissingMetering),
        }
    }

    fn transform_module_info(&self, module_info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let metering = Arc::new(Metering::new(INITIAL_POINTS, operator_cost as CostFn));
        metering.transform_module_info(module_info)?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(metering);
        Ok(())
    }
}

/// Fails the compilation: metering state was missing for a function.
#[derive(Debug)]
struct MissingMetering;

impl<'a> FunctionMiddleware<'a> for MissingMetering {
    fn feed(
        &mut self,
        _operator: Operator<'a>,
        _state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        Err(MiddlewareError::new(
            "metering",
            "no metering state for this module",
        ))
    }
}
