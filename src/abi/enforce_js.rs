//! Limit enforcement in the JS backend (`abi::enforce` when built with `js`). The
//! JavaScript engine compiles and runs the guest, so the native host's mechanisms do not
//! exist here: no metering middleware (no CPU budget), no watchdog (no wall-clock limit:
//! JavaScript cannot interrupt WebAssembly running on its own thread), no tunables (no
//! memory cap: a module's own memory grows up to its own declared maximum). What remains
//! of the memory limit: a module whose initial memory is above it is refused
//! (`abi::instance`), and a failed call with memory at or over it is reported as
//! [`Breach::Memory`]. A CPU budget or wall-clock limit in force logs once that it is not
//! enforced; nothing pretends to enforce it (README "Platforms").

use std::sync::atomic::{AtomicBool, Ordering};

use wasmer::{Imports, Instance, InstantiationError, Memory, Module, Store};

use crate::limits::{Limits, WASM_PAGE_BYTES};

#[path = "enforce/breach.rs"]
mod breach;

use breach::memory_breach;
pub use breach::Breach;

/// Held for the duration of a call; in the JS backend it arms nothing.
pub struct DeadlineGuard;

/// The limits of one instance: the memory cap it was given.
pub struct InstanceLimits {
    memory_max_bytes: u64,
}

/// Nothing to set on the store: the JS engine owns memories. The cap is checked by
/// [`InstanceLimits::classify`] against the memory's size.
pub fn apply_memory_limit(_store: &mut Store, limits: &Limits) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if (limits.cpu_metering || limits.call_time_limit.is_some())
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        log::warn!(
            "the JS backend enforces no CPU budget and no wall-clock limit (the JavaScript \
             engine runs the guest; run untrusted plugins in a worker the embedder can terminate)"
        );
    }
}

impl InstanceLimits {
    /// Instantiate `module` in `store` under `limits` (memory limit only).
    #[allow(clippy::result_large_err)]
    pub fn instantiate(
        store: &mut Store,
        module: &Module,
        imports: &Imports,
        limits: &Limits,
    ) -> Result<(Instance, InstanceLimits), (InstantiationError, Option<Breach>)> {
        let instance = Instance::new(store, module, imports).map_err(|e| (e, None))?;
        Ok((
            instance,
            InstanceLimits {
                memory_max_bytes: u64::from(limits.memory_max_pages())
                    .saturating_mul(WASM_PAGE_BYTES),
            },
        ))
    }

    /// Start an export call (nothing to arm).
    pub fn begin(&self, _store: &mut Store) -> DeadlineGuard {
        DeadlineGuard
    }

    /// No metering in the JS backend.
    pub fn remaining_points(&self, _store: &mut Store) -> Option<u64> {
        None
    }

    /// After a failed call: memory at (or, for an allocation of `needed` bytes, over)
    /// the plugin's limit is [`Breach::Memory`]; nothing else is detectable here.
    pub fn classify(
        &self,
        store: &mut Store,
        _guard: &DeadlineGuard,
        memory: Option<&Memory>,
        needed: u64,
    ) -> Option<Breach> {
        let memory = memory?;
        memory_breach(
            memory.view(&*store).data_size(),
            needed,
            self.memory_max_bytes,
        )
    }
}
