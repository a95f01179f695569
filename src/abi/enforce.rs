//! Enforcement of the guest-side limits of [`Limits`]: the memory cap (per-store
//! tunables), the per-call CPU budget and the wall-clock deadline. Both of the last two
//! work through the two globals `src/engine/metering.rs` compiles into every module
//! (`used`, `limit`): the host resets them before each call, and one watchdog thread per
//! process stops a call past its deadline by atomically storing `limit = 0`, so the guest
//! traps at its next charge point (loop back-edge, call, function exit). No signals and
//! nothing platform-specific: it works on every platform and both compilers.
//! Enforcement only reports a [`Breach`]; the ABI layer (`src/abi/instance.rs`) turns it
//! into its error.
//!
//! The globals' addresses inside the instance's `VMContext` are captured by
//! [`LimitingTunables`]' `create_globals` (wasmer calls it on the instantiating thread with
//! each local global's address) while [`InstanceLimits::instantiate`] runs.

use std::cell::RefCell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use wasmer::sys::vm::{
    InternalStoreHandle, StoreObjects, VMGlobal, VMGlobalDefinition, VMMemory, VMMemoryDefinition,
    VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{
    ExportIndex, Imports, Instance, InstantiationError, MemoryError, MemoryStyle, MemoryType,
    Module, ModuleInfo, Pages, Store, TableStyle, TableType,
};
use wasmer_compiler::LinkError;
use wasmer_types::entity::PrimaryMap;
use wasmer_types::LocalGlobalIndex;

use crate::engine::metering::{EXPORT_LIMIT, EXPORT_USED, MAX_LIMIT};
use crate::limits::{Limits, DEFAULT_CPU_TIME, WASM_PAGE_BYTES};

mod breach;

use breach::memory_breach;
pub use breach::Breach;

// ---------------------------------------------------------------------------------------
// Memory: LimitingTunables
// ---------------------------------------------------------------------------------------

/// wasmer `Tunables` that cap the maximum of every linear memory an instance creates
/// (CosmWasm's and wasmer's "LimitingTunables" pattern). The memory *style* (and thus
/// the compiled code) stays wasmer's default, so one compiled module serves stores with
/// different caps: the cap is set per store, i.e. per instance and per plugin.
#[derive(Clone)]
pub struct LimitingTunables {
    max_pages: Pages,
    base: BaseTunables,
}

impl fmt::Debug for LimitingTunables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitingTunables")
            .field("max_pages", &self.max_pages.0)
            .finish()
    }
}

impl LimitingTunables {
    /// Tunables capping memories at `max_pages` 64 KiB pages.
    pub fn new(max_pages: u32) -> Self {
        LimitingTunables {
            max_pages: Pages(max_pages),
            base: BaseTunables::new(),
        }
    }

    /// The memory type actually created: the declared maximum lowered to the cap (a
    /// missing maximum becomes the cap).
    fn adjust(&self, ty: &MemoryType) -> MemoryType {
        let mut adjusted = *ty;
        adjusted.maximum = Some(match ty.maximum {
            Some(m) if m <= self.max_pages => m,
            _ => self.max_pages,
        });
        adjusted
    }

    /// Refuse memories whose initial size is over the cap.
    fn validate(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.max_pages {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: self.max_pages,
            });
        }
        Ok(())
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        // Unchanged, so code compiled by any engine of ours stays valid.
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.validate(ty)?;
        self.base.create_host_memory(&self.adjust(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.validate(ty)?;
        // SAFETY: forwarded unchanged from wasmer's caller, which guarantees the location.
        unsafe {
            self.base
                .create_vm_memory(&self.adjust(ty), style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: forwarded unchanged from wasmer's caller, which guarantees the location.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    /// wasmer's default body, plus: while [`InstanceLimits::instantiate`] runs on this
    /// thread, register the new instance's metering globals with the watchdog and arm the
    /// deadline for its start function.
    fn create_globals(
        &self,
        context: &mut StoreObjects,
        module: &ModuleInfo,
        vm_definition_locations: &[NonNull<VMGlobalDefinition>],
    ) -> Result<PrimaryMap<LocalGlobalIndex, InternalStoreHandle<VMGlobal>>, LinkError> {
        let num_imports = module.num_imported_globals;
        let mut globals =
            PrimaryMap::with_capacity(module.globals.len().saturating_sub(num_imports));
        for (i, &global_type) in module.globals.values().skip(num_imports).enumerate() {
            let location = vm_definition_locations
                .get(i)
                .ok_or_else(|| LinkError::Resource("global definition location missing".into()))?;
            // SAFETY: forwarded unchanged from wasmer's caller, which guarantees the
            // location (this is the trait's default body).
            let global = unsafe { self.create_vm_global(global_type, *location) }
                .map_err(LinkError::Resource)?;
            globals.push(InternalStoreHandle::new(context, global));
        }
        // Last, after every fallible step: once this returns Ok, wasmer always keeps the
        // instance (its `VMContext`) alive in the store, even if the start function traps
        // (`Module::instantiate` in wasmer 7.4 stores the handle on that error too).
        let local = |name: &str| match module.exports.get(name) {
            Some(ExportIndex::Global(g)) => g
                .as_u32()
                .checked_sub(u32::try_from(num_imports).ok()?)
                .and_then(|i| vm_definition_locations.get(i as usize).copied()),
            _ => None,
        };
        if let (Some(used), Some(limit)) = (local(EXPORT_USED), local(EXPORT_LIMIT)) {
            capture(MeterGlobals { used, limit });
        }
        Ok(globals)
    }
}

/// Give `store` (a fresh store of one instance) the memory cap of `limits`.
pub fn apply_memory_limit(store: &mut Store, limits: &Limits) {
    use wasmer::sys::NativeEngineExt;
    store
        .engine_mut()
        .set_tunables(LimitingTunables::new(limits.memory_max_pages()));
}

// ---------------------------------------------------------------------------------------
// The metering globals of one instance
// ---------------------------------------------------------------------------------------

/// Addresses of one instance's metering globals inside its `VMContext`.
#[derive(Clone, Copy, Debug)]
struct MeterGlobals {
    used: NonNull<VMGlobalDefinition>,
    limit: NonNull<VMGlobalDefinition>,
}

// SAFETY: plain addresses. They are dereferenced only through atomics, and only while
// the instance is alive: by the owning thread through its `Meter` (dropped before the
// store, see `InstanceLimits`), and by the watchdog under the registry lock while the
// slot is registered (see `Slot`).
unsafe impl Send for MeterGlobals {}
// SAFETY: as for `Send`; every access is atomic.
unsafe impl Sync for MeterGlobals {}

impl MeterGlobals {
    /// The `used` global as an atomic.
    ///
    /// SAFETY (for callers): the instance owning the global must be alive. The address is
    /// 8-byte aligned (wasmer lays out `VMGlobalDefinition`s with 16-byte alignment) and
    /// the guest accesses it with plain aligned 8-byte loads and stores, which are
    /// single-copy atomic on the targets wasmer supports; JIT code is outside Rust's
    /// memory model.
    unsafe fn used(&self) -> &AtomicI64 {
        // SAFETY: see above.
        unsafe { AtomicI64::from_ptr(self.used.as_ptr().cast()) }
    }

    /// The `limit` global as an atomic (same contract as [`MeterGlobals::used`]).
    unsafe fn limit(&self) -> &AtomicI64 {
        // SAFETY: see `used`.
        unsafe { AtomicI64::from_ptr(self.limit.as_ptr().cast()) }
    }
}

/// What `create_globals` records while [`InstanceLimits::instantiate`] runs on this
/// thread.
struct Pending {
    time_limit: Option<Duration>,
    meter: Option<Meter>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// Clears this thread's [`Pending`] however instantiation ends (panics included).
struct PendingGuard;

impl PendingGuard {
    fn set(time_limit: Option<Duration>) -> Self {
        PENDING.with(|p| {
            *p.borrow_mut() = Some(Pending {
                time_limit,
                meter: None,
            })
        });
        PendingGuard
    }

    fn take(self) -> Option<Meter> {
        PENDING
            .with(|p| p.borrow_mut().take())
            .and_then(|p| p.meter)
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        // `try_with`: the thread-local may already be gone during thread teardown.
        let _ = PENDING.try_with(|p| p.borrow_mut().take());
    }
}

/// Called by `create_globals` with the new instance's globals: register them and arm the
/// deadline for the start function (its budget is the compiled-in initial limit, which
/// wasmer writes right after this).
fn capture(globals: MeterGlobals) {
    PENDING.with(|p| {
        if let Some(pending) = p.borrow_mut().as_mut() {
            let meter = Meter::register(globals, pending.time_limit);
            meter.slot.start();
            pending.meter = Some(meter);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Wall clock: slots and one watchdog thread per process
// ---------------------------------------------------------------------------------------
//
// Each instance with a deadline registers one `Slot` (at instantiation). A call only flips
// the slot's state word (`seq << 32 | tag`): one compare-exchange at its start, one at its
// end, no lock, no allocation, no clock read. Every `TICK` the watchdog stamps the calls
// it has not seen yet (so a deadline is at most one tick late, never early) and poisons
// the calls past their deadline: it stores `limit = 0`, and the guest traps at its next
// charge point. The thread parks when no call has run for a while; `start` unparks it.

/// Slot tags (low 32 bits of the state word).
const IDLE: u64 = 0;
/// Running, not yet seen by the watchdog.
const UNSTAMPED: u64 = 1;
/// Running, start recorded in `start_us`.
const STAMPED: u64 = 2;
/// The watchdog is writing the globals: `start` and `finish` wait.
const FIRING: u64 = 3;
/// Running past its deadline, `limit` poisoned.
const FIRED: u64 = 4;

fn tag(word: u64) -> u64 {
    word & 0xffff_ffff
}

/// The watchdog checks running calls this often: a deadline fires at most about two
/// ticks late (plus the time the thread waits for a CPU).
const TICK: Duration = Duration::from_millis(2);

/// The watchdog parks after this many ticks without a running call.
const IDLE_TICKS_BEFORE_PARK: u32 = 50;

/// One instance's registration with the watchdog.
struct Slot {
    word: AtomicU64,
    globals: MeterGlobals,
    /// The per-call limit in microseconds.
    limit_us: u64,
    /// Start of the running call (µs since the watchdog started) as first seen by the
    /// watchdog; only the watchdog thread touches it.
    start_us: AtomicU64,
    /// The watchdog to wake up (None: no deadline, or no watchdog thread).
    registry: Option<&'static Registry>,
}

impl Slot {
    /// Mark a call running (no-op without a deadline).
    fn start(&self) {
        let Some(registry) = self.registry else {
            return;
        };
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if tag(cur) == FIRING {
                std::hint::spin_loop();
                continue;
            }
            let seq = ((cur >> 32).wrapping_add(1) & 0xffff_ffff) << 32;
            if self
                .word
                .compare_exchange(cur, seq | UNSTAMPED, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        // Dekker with the watchdog's park: the SeqCst exchange above, then this SeqCst
        // load; the watchdog stores `sleeping` and then re-scans, so one side sees the
        // other.
        if registry.sleeping.load(Ordering::SeqCst)
            && registry.sleeping.swap(false, Ordering::SeqCst)
        {
            if let Some(thread) = registry.thread.get() {
                thread.unpark();
            }
        }
    }

    /// Mark the call over; returns whether its deadline fired.
    fn finish(&self) -> bool {
        if self.registry.is_none() {
            return false;
        }
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            match tag(cur) {
                IDLE => return false,
                FIRING => std::hint::spin_loop(),
                t => {
                    if self
                        .word
                        .compare_exchange(
                            cur,
                            cur & !0xffff_ffff,
                            Ordering::SeqCst,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return t == FIRED;
                    }
                }
            }
        }
    }

    /// Has the running call's deadline passed?
    fn fired(&self) -> bool {
        matches!(tag(self.word.load(Ordering::SeqCst)), FIRING | FIRED)
    }
}

/// The process-wide watchdog: the registered slots and its thread.
struct Registry {
    slots: Mutex<Vec<Arc<Slot>>>,
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Registry {
    /// The watchdog (its thread starts on first use); None if the thread could not start.
    fn get() -> Option<&'static Registry> {
        static REGISTRY: OnceLock<Option<&'static Registry>> = OnceLock::new();
        *REGISTRY.get_or_init(|| {
            let registry: &'static Registry = Box::leak(Box::new(Registry {
                slots: Mutex::new(Vec::new()),
                sleeping: AtomicBool::new(false),
                thread: OnceLock::new(),
            }));
            match std::thread::Builder::new()
                .name("tark-wasmer-watchdog".into())
                .spawn(move || registry.run())
            {
                Ok(handle) => {
                    let _ = registry.thread.set(handle.thread().clone());
                    Some(registry)
                }
                Err(e) => {
                    log::error!("cannot start the call watchdog thread (no wall-clock limit): {e}");
                    None
                }
            }
        })
    }

    fn run(&self) {
        let epoch = Instant::now();
        let mut idle_ticks = 0u32;
        loop {
            std::thread::sleep(TICK);
            // Real time: oversleeping makes a deadline late, never early.
            let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            if self.scan(now) {
                idle_ticks = 0;
                continue;
            }
            idle_ticks += 1;
            if idle_ticks >= IDLE_TICKS_BEFORE_PARK {
                self.sleeping.store(true, Ordering::SeqCst);
                // Re-check after announcing sleep (Dekker with `Slot::start`).
                if self.scan(now) {
                    self.sleeping.store(false, Ordering::SeqCst);
                    continue;
                }
                while self.sleeping.load(Ordering::SeqCst) {
                    std::thread::park();
                }
                idle_ticks = 0;
            }
        }
    }

    /// One pass over the slots: stamp new calls, poison expired ones. Returns whether
    /// any call is running.
    fn scan(&self, now: u64) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let mut running = false;
        for slot in slots.iter() {
            let word = slot.word.load(Ordering::SeqCst);
            let seq = word & !0xffff_ffff;
            let expired = match tag(word) {
                IDLE => continue,
                UNSTAMPED => {
                    running = true;
                    // The call started after the previous scan.
                    slot.start_us.store(now, Ordering::Relaxed);
                    let _ = slot.word.compare_exchange(
                        word,
                        seq | STAMPED,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    continue;
                }
                STAMPED => {
                    now.saturating_sub(slot.start_us.load(Ordering::Relaxed)) >= slot.limit_us
                }
                // Poison again every tick: the one store that can overwrite it is
                // wasmer's global initializer during instantiation (the start function
                // runs under a deadline armed before the initializers), or `begin` if
                // the host thread was preempted between its stores for over a tick.
                _ => true,
            };
            running = true;
            if !expired {
                continue;
            }
            // FIRING gives exclusive access to the globals: `start`/`finish` wait for it,
            // so a poison never lands in a later call.
            if slot
                .word
                .compare_exchange(word, seq | FIRING, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            // SAFETY: the slot is registered, so its instance and `VMContext` are alive:
            // `Meter::drop` unregisters under this lock, which we hold, and every `Meter`
            // is dropped before its store (see `InstanceLimits`). The access is atomic;
            // the guest only reads `limit` (plain aligned 8-byte loads).
            unsafe { slot.globals.limit() }.store(0, Ordering::SeqCst);
            slot.word.store(seq | FIRED, Ordering::SeqCst);
        }
        running
    }
}

/// The host side of one instance's globals and watchdog slot.
struct Meter {
    slot: Arc<Slot>,
}

impl Meter {
    /// Register an instance's `globals` (with the watchdog when there is a deadline).
    fn register(globals: MeterGlobals, time_limit: Option<Duration>) -> Meter {
        let registry = time_limit.and_then(|_| Registry::get());
        let limit_us = time_limit
            .map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(u64::MAX);
        let slot = Arc::new(Slot {
            word: AtomicU64::new(IDLE),
            globals,
            limit_us,
            start_us: AtomicU64::new(0),
            registry,
        });
        if let Some(registry) = registry {
            registry
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot.clone());
        }
        Meter { slot }
    }

    /// Start a call with `limit` points: reset the globals, then mark the slot running.
    fn begin(&self, limit: u64) -> DeadlineGuard {
        let limit = i64::try_from(limit.min(MAX_LIMIT)).unwrap_or(i64::MAX);
        // SAFETY: the instance is alive while its `Meter` is (dropped before the store).
        // The previous call's guard marked the slot idle, so the watchdog does not write
        // the globals now (and if it did, both stores are atomic).
        unsafe {
            self.slot.globals.used().store(0, Ordering::Relaxed);
            self.slot.globals.limit().store(limit, Ordering::Relaxed);
        }
        self.slot.start();
        DeadlineGuard {
            slot: self.slot.registry.map(|_| self.slot.clone()),
        }
    }

    /// `(used, limit)` of the current or last call.
    fn points(&self) -> (i64, i64) {
        // SAFETY: as in `begin`; atomic loads.
        unsafe {
            (
                self.slot.globals.used().load(Ordering::Relaxed),
                self.slot.globals.limit().load(Ordering::Relaxed),
            )
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Under the lock: once removed, the watchdog never touches the globals again.
        if let Some(registry) = self.slot.registry {
            registry
                .slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|s| !Arc::ptr_eq(s, &self.slot));
        }
    }
}

/// The armed deadline of one call: keep it until the call (with its `alloc`/`dealloc`
/// calls) is over. Dropping it marks the call over, so a later poison cannot hit the
/// instance's next call.
pub struct DeadlineGuard {
    slot: Option<Arc<Slot>>,
}

impl DeadlineGuard {
    /// A guard for a call without a deadline.
    fn disarmed() -> Self {
        DeadlineGuard { slot: None }
    }

    /// Did the deadline pass (and the watchdog stop the call)?
    pub fn fired(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.fired())
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        if let Some(slot) = &self.slot {
            slot.finish();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per instance: what the call paths use
// ---------------------------------------------------------------------------------------

/// The guest-side limits of one instance: its metering globals and watchdog slot, the
/// plugin's budget and deadline. The ABI adapters call [`InstanceLimits::begin`] before
/// each export call and [`InstanceLimits::classify`] on its failure (which
/// `src/abi/instance.rs` maps to a [`CallError`](crate::abi::CallError)).
///
/// Must be dropped before the instance's store (its globals live in the store's
/// `VMContext`): keep it in a struct field declared before the store.
pub struct InstanceLimits {
    meter: Option<Meter>,
    metered: bool,
    /// The `limit` global's value at the start of each call.
    call_limit: u64,
    /// The budget `call_limit` stands for, for messages.
    cpu_time: Duration,
    time_limit: Option<Duration>,
}

impl InstanceLimits {
    /// Instantiate `module` in `store` (whose tunables must be [`LimitingTunables`], see
    /// [`apply_memory_limit`]) under `limits`: the start function runs under the
    /// deadline and the compiled-in initial budget ([`DEFAULT_CPU_TIME`], whatever the
    /// plugin's own budget: the code is compiled before the plugin's limits are known).
    /// Returns the instance with its limits, or wasmer's error with the breach that caused
    /// it.
    #[allow(clippy::result_large_err)]
    pub fn instantiate(
        store: &mut Store,
        module: &Module,
        imports: &Imports,
        limits: &Limits,
    ) -> Result<(Instance, InstanceLimits), (InstantiationError, Option<Breach>)> {
        let pending = PendingGuard::set(limits.call_time_limit);
        let result = Instance::new(store, module, imports);
        let meter = pending.take();
        let fired = meter.as_ref().is_some_and(|m| m.slot.finish());
        let metered = limits.cpu_metering && meter.is_some();
        let instance_limits = InstanceLimits {
            meter,
            metered,
            call_limit: if metered {
                limits.cpu_points().min(MAX_LIMIT)
            } else {
                MAX_LIMIT
            },
            cpu_time: limits.cpu_time,
            time_limit: limits.call_time_limit,
        };
        match result {
            Ok(instance) => Ok((instance, instance_limits)),
            Err(e) => {
                let breach = match limits.call_time_limit.filter(|_| fired) {
                    Some(limit) => Some(Breach::Time(limit)),
                    // The start function ran out of the compiled-in budget
                    // (`INITIAL_POINTS`: the default CPU time), metered or not.
                    None => instance_limits
                        .meter
                        .as_ref()
                        .filter(|m| {
                            let (used, limit) = m.points();
                            used > limit
                        })
                        .map(|_| Breach::Cpu(DEFAULT_CPU_TIME)),
                };
                Err((e, breach))
            }
        }
    }

    /// Start an export call: reset the CPU budget and arm the wall-clock deadline. Keep
    /// the guard until the call (with its `alloc`/`dealloc` calls) is over.
    pub fn begin(&self, _store: &mut Store) -> DeadlineGuard {
        match &self.meter {
            Some(meter) => meter.begin(self.call_limit),
            None => DeadlineGuard::disarmed(),
        }
    }

    /// Points left of the current call's budget (None when not metered). Taking the
    /// store ensures no call of this instance is running.
    pub fn remaining_points(&self, _store: &mut Store) -> Option<u64> {
        let meter = self.meter.as_ref().filter(|_| self.metered)?;
        let (used, limit) = meter.points();
        Some(u64::try_from(limit.saturating_sub(used)).unwrap_or(0))
    }

    /// After a failed call: which limit (if any) stopped it. `memory` is the instance's
    /// linear memory, checked against its effective maximum: it is at the limit when it
    /// is full, or (for a failed allocation of `needed` bytes) when `needed` more bytes
    /// would not fit.
    pub fn classify(
        &self,
        store: &mut Store,
        guard: &DeadlineGuard,
        memory: Option<&wasmer::Memory>,
        needed: u64,
    ) -> Option<Breach> {
        // The deadline first: the watchdog's `limit = 0` also makes `used > limit`.
        if guard.fired() {
            if let Some(limit) = self.time_limit {
                return Some(Breach::Time(limit));
            }
        }
        if let Some(meter) = self.meter.as_ref().filter(|_| self.metered) {
            let (used, limit) = meter.points();
            if used > limit {
                return Some(Breach::Cpu(self.cpu_time));
            }
        }
        let memory = memory?;
        let max_bytes = u64::from(memory.ty(&*store).maximum?.0).saturating_mul(WASM_PAGE_BYTES);
        memory_breach(memory.view(&*store).data_size(), needed, max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Compiler, WasmEngine};

    /// A loop that counts its iterations in the exported global `n`: 5 operators per
    /// iteration (`global.get`, `i64.const`, `i64.add`, `global.set`, `br`), charged at
    /// the back-edge, plus the `loop` on entry.
    const COUNTER: &str = r#"(module
      (global $n (export "n") (mut i64) (i64.const 0))
      (func (export "run")
        (loop $l
          (global.set $n (i64.add (global.get $n) (i64.const 1)))
          (br $l))))"#;

    /// Endless recursion without loops: each invocation of `$f` counts itself in `n` (4
    /// operators) and calls `$f` again (a charge point: the invocation's first, so
    /// checked).
    const CHAIN: &str = r#"(module
      (global $n (export "n") (mut i64) (i64.const 0))
      (func $f
        (global.set $n (i64.add (global.get $n) (i64.const 1)))
        (call $f))
      (func (export "run") (call $f)))"#;

    /// Run `COUNTER` with `budget` points: the iterations done and the breach reported.
    fn count_until_stopped(compiler: Compiler, budget: u64) -> (u64, Option<Breach>) {
        run_until_stopped(compiler, COUNTER, budget)
    }

    /// Run `wat`'s `run` with `budget` points: the final `n` and the breach reported.
    fn run_until_stopped(compiler: Compiler, wat: &str, budget: u64) -> (u64, Option<Breach>) {
        let engine = WasmEngine::shared(compiler).expect("engine");
        let wasm = wat::parse_str(wat).expect("wat");
        let module = engine.compile("counter", &wasm).expect("compiles").module;
        // Points are picoseconds: whole nanoseconds are multiples of 1000 points.
        assert_eq!(budget % 1000, 0);
        let limits = Limits {
            cpu_time: Duration::from_nanos(budget / 1000),
            call_time_limit: None,
            ..Limits::default()
        };
        assert_eq!(limits.cpu_points(), budget);
        let mut store = engine.new_store();
        apply_memory_limit(&mut store, &limits);
        let (instance, instance_limits) =
            InstanceLimits::instantiate(&mut store, &module, &wasmer::imports! {}, &limits)
                .map_err(|(e, _)| e)
                .expect("instantiates");
        let run = instance
            .exports
            .get_typed_function::<(), ()>(&store, "run")
            .expect("run");
        let guard = instance_limits.begin(&mut store);
        assert!(run.call(&mut store).is_err(), "{compiler}: the loop ended");
        let breach = instance_limits.classify(&mut store, &guard, None, 0);
        drop(guard);
        let n = match instance.exports.get_global("n").expect("n").get(&mut store) {
            wasmer::Value::I64(n) => u64::try_from(n).expect("non-negative"),
            other => panic!("{other:?}"),
        };
        drop(instance_limits);
        (n, breach)
    }

    #[test]
    fn a_budget_is_never_overrun_by_more_than_one_region() {
        for compiler in Compiler::available() {
            let w = crate::engine::metering::Weights::of(compiler);
            let entry = w.op + w.charge;
            let iteration = 5 * w.op + w.charge;
            for budget in [1_000u64, 2_000, 7_000, 13_000, 5_000_000_000] {
                let (n, breach) = count_until_stopped(compiler, budget);
                let limit = Duration::from_nanos(budget / 1000);
                assert_eq!(breach, Some(Breach::Cpu(limit)), "{compiler}");
                if budget < entry {
                    // Stopped at the loop entry, before any iteration.
                    assert_eq!(n, 0, "{compiler} {budget}");
                    continue;
                }
                // Executed: the `loop`, n - 1 full iterations and the last body without
                // its `br`. Charged: entry + (n - 1) iterations <= budget, and the next
                // charge did not fit.
                let executed = 5 * n * w.op;
                let charged = entry + iteration * (n - 1);
                assert!(charged <= budget, "{compiler} {budget}: charged {charged}");
                assert!(
                    charged + iteration > budget,
                    "{compiler} {budget}: stopped early at {n}"
                );
                assert!(
                    executed <= budget + iteration,
                    "{compiler} {budget}: executed {executed}"
                );
            }
        }
    }

    #[test]
    fn a_call_chain_is_stopped_within_one_region_per_check() {
        for compiler in Compiler::available() {
            let w = crate::engine::metering::Weights::of(compiler);
            // `run`: its `call` (1 operator) and the charge; each `$f`: 5 operators and
            // the charge at its call.
            let entry = w.op + w.charge;
            let invocation = 5 * w.op + w.charge;
            for budget in [1_000_000u64, 2_000_000, 3_000_000] {
                let (n, breach) = run_until_stopped(compiler, CHAIN, budget);
                assert_eq!(
                    breach,
                    Some(Breach::Cpu(Duration::from_nanos(budget / 1000))),
                    "{compiler} {budget}: not stopped by the budget"
                );
                // n invocations ran their body; the n-th one's charge failed.
                let passed = entry + invocation * (n - 1);
                assert!(passed <= budget, "{compiler} {budget}: charged {passed}");
                assert!(
                    passed + invocation > budget,
                    "{compiler} {budget}: stopped early at {n}"
                );
                let executed = w.op + 5 * n * w.op;
                assert!(
                    executed <= budget + invocation,
                    "{compiler} {budget}: executed {executed}"
                );
            }
        }
    }

    #[test]
    fn a_module_exporting_the_metering_globals_names_is_refused() {
        for compiler in Compiler::available() {
            let engine = WasmEngine::shared(compiler).expect("engine");
            let wasm = wat::parse_str(
                r#"(module (global (export "tark_meter_limit") (mut i64) (i64.const 0)))"#,
            )
            .expect("wat");
            assert!(engine.compile("m", &wasm).is_err(), "{compiler}");
        }
    }

    #[test]
    fn page_constants_match_wasmer() {
        assert_eq!(crate::limits::WASM_MAX_PAGES, wasmer::WASM_MAX_PAGES);
        assert_eq!(WASM_PAGE_BYTES, wasmer::WASM_PAGE_SIZE as u64);
    }

    #[test]
    fn limiting_tunables_cap_the_maximum_and_refuse_large_minimums() {
        let t = LimitingTunables::new(10);
        let none = MemoryType::new(1, None, false);
        assert_eq!(t.adjust(&none).maximum, Some(Pages(10)));
        let big = MemoryType::new(1, Some(100), false);
        assert_eq!(t.adjust(&big).maximum, Some(Pages(10)));
        let small = MemoryType::new(1, Some(5), false);
        assert_eq!(t.adjust(&small).maximum, Some(Pages(5)));
        assert!(t.validate(&MemoryType::new(10, None, false)).is_ok());
        let err = t
            .validate(&MemoryType::new(11, None, false))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("11 pages"), "{err}");
    }
}
