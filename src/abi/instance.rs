//! The ABI-neutral core of a plugin instance, shared by the legacy and canonical adapters:
//! store set-up with the memory limit, the import and initial-memory checks, WASI (and its
//! tokio context, only for modules that import WASI), instantiation under the plugin's
//! limits, `_initialize`, the exported memory, the owner id whose WebSockets close with the
//! instance, and the mapping of a failed call to the limit that caused it. The adapters
//! (`legacy/instance.rs`, `canonical/instance.rs`) add only their host-function
//! environments and calling conventions.

use std::sync::Arc;

use wasmer::{ExternType, FunctionType, Imports, Instance, Memory, Module, RuntimeError, Store};

use super::enforce::{self, Breach, DeadlineGuard, InstanceLimits};
use super::wasi::{self, WasiState};
use super::{check_imports, CallError, LinkError};
use crate::host::{next_owner_id, OwnerId, PluginContext};
use crate::limits::Limits;

/// Instantiating a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum InstantiateError {
    /// The module imports something the host does not provide.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// WASI could not be set up.
    #[error(transparent)]
    Wasi(#[from] wasi::WasiSetupError),
    /// wasmer refused to instantiate (or the start function trapped).
    #[error("Failed to instantiate plugin: {0}")]
    Instantiate(String),
    /// The module does not export `memory`.
    #[error("Plugin has no memory export")]
    NoMemory,
    /// The module's initial linear memory is above the plugin's memory limit.
    #[error("plugin {plugin} declares an initial linear memory of {pages} pages ({} MiB), above its memory limit of {} MiB", u64::from(*pages) / 16, u64::from(*limit_pages) / 16)]
    MemoryTooLarge {
        /// Plugin id.
        plugin: String,
        /// Declared initial size in 64 KiB pages.
        pages: u32,
        /// The limit in pages.
        limit_pages: u32,
    },
    /// The start function or `_initialize` broke a CPU or time limit.
    #[error("Failed to instantiate plugin: {0}")]
    Limit(CallError),
}

/// The text of a trap: wasmer's message, or the whole error when it has none.
pub(crate) fn trap_message(e: &RuntimeError) -> String {
    let msg = e.message();
    if msg.is_empty() {
        e.to_string()
    } else {
        msg
    }
}

/// The instance's owner id. WebSocket handles belong to the instance that opened them:
/// dropping this (with the instance, or when instantiation fails) closes them.
struct Owner {
    ctx: Arc<PluginContext>,
    id: OwnerId,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.ctx.ws_close_all(self.id);
    }
}

/// A store prepared for one instance: imports checked, initial memory checked, memory cap
/// set, owner id assigned. The adapter builds its host-function environment and imports
/// on [`Linker::store_mut`] with [`Linker::owner`], then calls [`Linker::instantiate`].
pub(crate) struct Linker {
    store: Store,
    owner: Owner,
}

/// What instantiation produced: the adapter keeps store, instance and memory next to its
/// calling conventions, and the [`InstanceCore`] for limits, WASI and the owner.
pub(crate) struct Instantiated {
    pub(crate) store: Store,
    pub(crate) instance: Instance,
    pub(crate) memory: Memory,
    pub(crate) core: InstanceCore,
}

impl Linker {
    /// Check `module` against the host functions the adapter `provided` (WASI aside) and
    /// against the memory limit, and give `store` the plugin's memory cap.
    pub(crate) fn new(
        mut store: Store,
        module: &Module,
        ctx: Arc<PluginContext>,
        provided: &dyn Fn(&str, &str) -> Option<FunctionType>,
    ) -> Result<Self, InstantiateError> {
        check_imports(module, provided)?;
        check_initial_memory(module, &ctx.plugin_id, &ctx.limits)?;
        enforce::apply_memory_limit(&mut store, &ctx.limits);
        Ok(Linker {
            store,
            owner: Owner {
                ctx,
                id: next_owner_id(),
            },
        })
    }

    /// The store, for building host functions.
    pub(crate) fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The new instance's owner id.
    pub(crate) fn owner(&self) -> OwnerId {
        self.owner.id
    }

    /// Add WASI when the module imports it, instantiate under the plugin's limits, let
    /// the adapter `bind` its environment to the instance and memory, bind WASI, and run
    /// `_initialize` once (reactor modules expect it; tark's plugins export none).
    pub(crate) fn instantiate(
        self,
        module: &Module,
        mut imports: Imports,
        bind: impl FnOnce(&mut Store, &Instance, &Memory),
    ) -> Result<Instantiated, InstantiateError> {
        let Linker { mut store, owner } = self;
        let ctx = owner.ctx.clone();
        let mut wasi_state = None;
        if wasi::imports_wasi(module) {
            let (state, wasi_imports) = WasiState::new(&mut store, module, &ctx)?;
            imports.extend(&wasi_imports);
            wasi_state = Some(state);
        }
        // wasmer-wasix needs its tokio context while a WASI module starts; others do not.
        let _rt = match wasi_state {
            Some(_) => Some(wasi::tokio_runtime()?.enter()),
            None => None,
        };
        let (instance, limits) = instantiate_limited(&mut store, module, &imports, &ctx)?;
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|_| InstantiateError::NoMemory)?
            .clone();
        bind(&mut store, &instance, &memory);
        if let Some(state) = wasi_state.as_mut() {
            state.initialize(&mut store, &instance)?;
        }
        run_initialize(&mut store, &instance, &memory, &limits, &ctx.plugin_id)?;
        Ok(Instantiated {
            store,
            instance,
            memory: memory.clone(),
            core: InstanceCore {
                owner,
                limits,
                memory,
                wasi: wasi_state,
            },
        })
    }
}

/// The ABI-neutral state of a live instance: its plugin context and owner id, its limits,
/// its memory (for the memory-limit check) and its WASI state.
pub(crate) struct InstanceCore {
    owner: Owner,
    limits: InstanceLimits,
    memory: Memory,
    wasi: Option<WasiState>,
}

impl InstanceCore {
    /// The plugin context this instance serves.
    pub(crate) fn ctx(&self) -> &Arc<PluginContext> {
        &self.owner.ctx
    }

    /// The owner id of this instance (its WebSockets, its typed exports).
    pub(crate) fn owner(&self) -> OwnerId {
        self.owner.id
    }

    /// Metering points left of the last call's CPU budget (None when not metered).
    pub(crate) fn remaining_points(&self, store: &mut Store) -> Option<u64> {
        self.limits.remaining_points(store)
    }

    /// Start an export call: one CPU budget and one deadline for everything until the
    /// guard is dropped (the adapter's `alloc`/`dealloc`/post-return calls included).
    pub(crate) fn begin_call(&self, store: &mut Store) -> DeadlineGuard {
        self.limits.begin(store)
    }

    /// The tokio context wasmer-wasix's system calls need, entered for modules that
    /// import WASI (None for the others). Keep it for the duration of the call.
    pub(crate) fn enter_wasi(&self) -> Result<Option<wasi::RuntimeGuard>, CallError> {
        match &self.wasi {
            Some(_) => Ok(Some(
                wasi::tokio_runtime()
                    .map_err(|e| CallError::Runtime(e.to_string()))?
                    .enter(),
            )),
            None => Ok(None),
        }
    }

    /// After export `function` failed with `e`: the error of the limit that caused it
    /// (logged as a warning), or `e` unchanged.
    pub(crate) fn limit_error(
        &self,
        store: &mut Store,
        guard: &DeadlineGuard,
        function: &str,
        e: CallError,
    ) -> CallError {
        let plugin = &self.owner.ctx.plugin_id;
        let e = limit_error(
            &self.limits,
            store,
            guard,
            Some(&self.memory),
            plugin,
            function,
            e,
        );
        if e.is_limit() {
            log::warn!("[plugin:{plugin}] {e}");
        }
        e
    }
}

/// Map the failure `e` of `function` to the limit that caused it, if any: a trap (or
/// canonical ABI fault) with the budget exhausted is [`CallError::CpuBudget`], one after
/// the deadline fired is [`CallError::TimeLimit`], a trap or failed allocation with memory
/// at its maximum is [`CallError::MemoryLimit`]. Anything else is returned unchanged.
fn limit_error(
    limits: &InstanceLimits,
    store: &mut Store,
    guard: &DeadlineGuard,
    memory: Option<&Memory>,
    plugin: &str,
    function: &str,
    e: CallError,
) -> CallError {
    let trap_like = matches!(e, CallError::Trap { .. } | CallError::Abi { .. });
    let needed = match &e {
        CallError::AllocFailed { size, .. } => *size,
        _ if trap_like => 0,
        _ => return e,
    };
    match limits.classify(store, guard, memory, needed) {
        Some(breach @ Breach::Memory { .. }) => {
            CallError::from_breach(breach, plugin, function, e.to_string())
        }
        Some(breach) if trap_like => {
            CallError::from_breach(breach, plugin, function, e.to_string())
        }
        _ => e,
    }
}

/// Refuse, with a clear error, a module whose exported memory starts above the limit
/// (memories it does not export are still capped by the store's tunables).
fn check_initial_memory(
    module: &Module,
    plugin: &str,
    limits: &Limits,
) -> Result<(), InstantiateError> {
    let limit_pages = limits.memory_max_pages();
    for export in module.exports() {
        if let ExternType::Memory(ty) = export.ty() {
            if ty.minimum.0 > limit_pages {
                return Err(InstantiateError::MemoryTooLarge {
                    plugin: plugin.to_string(),
                    pages: ty.minimum.0,
                    limit_pages,
                });
            }
        }
    }
    Ok(())
}

/// Instantiate under the plugin's wall-clock limit (the start function runs inside
/// `Instance::new`; its CPU budget is the compiled-in `INITIAL_POINTS` of
/// `src/engine/metering.rs`, the default CPU time). A deadline or CPU breach becomes
/// [`InstantiateError::Limit`].
fn instantiate_limited(
    store: &mut Store,
    module: &Module,
    imports: &Imports,
    ctx: &PluginContext,
) -> Result<(Instance, InstanceLimits), InstantiateError> {
    InstanceLimits::instantiate(store, module, imports, &ctx.limits).map_err(|(e, breach)| {
        match breach {
            Some(breach @ (Breach::Time(_) | Breach::Cpu(_))) => InstantiateError::Limit(
                CallError::from_breach(breach, &ctx.plugin_id, "start", e.to_string()),
            ),
            _ => InstantiateError::Instantiate(format!("{}: {e}", ctx.plugin_id)),
        }
    })
}

/// Run the module's `_initialize` (reactor modules) under the plugin's limits.
fn run_initialize(
    store: &mut Store,
    instance: &Instance,
    memory: &Memory,
    limits: &InstanceLimits,
    plugin: &str,
) -> Result<(), InstantiateError> {
    let Ok(init) = instance
        .exports
        .get_typed_function::<(), ()>(&*store, "_initialize")
    else {
        return Ok(());
    };
    let guard = limits.begin(store);
    let r = init.call(store);
    r.map_err(|e| {
        let err = CallError::Trap {
            function: "_initialize".into(),
            message: trap_message(&e),
        };
        match limit_error(
            limits,
            store,
            &guard,
            Some(memory),
            plugin,
            "_initialize",
            err,
        ) {
            CallError::Trap { message, .. } => {
                InstantiateError::Instantiate(format!("{plugin}: _initialize trapped: {message}"))
            }
            other => InstantiateError::Limit(other),
        }
    })
}
