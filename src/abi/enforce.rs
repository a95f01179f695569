//! Enforcement of the guest-side limits of [`Limits`]: the memory cap (per-store
//! tunables), the per-call CPU budget (reset and read through the metering globals that
//! `src/engine/metering.rs` compiles in) and the wall-clock deadline (one watchdog thread
//! per process). Enforcement only reports a [`Breach`]; the ABI layer
//! (`src/abi/instance.rs`) turns it into its error.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmer::sys::vm::{VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{
    Global, Instance, MemoryError, MemoryStyle, MemoryType, Pages, Store, TableStyle, TableType,
    Value,
};

#[cfg(not(unix))]
use crate::limits::format_secs;
use crate::limits::{Limits, WASM_PAGE_BYTES};

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
}

/// Give `store` (a fresh store of one instance) the memory cap of `limits`.
pub fn apply_memory_limit(store: &mut Store, limits: &Limits) {
    use wasmer::sys::NativeEngineExt;
    store
        .engine_mut()
        .set_tunables(LimitingTunables::new(limits.memory_max_pages()));
}

// ---------------------------------------------------------------------------------------
// CPU: the metering globals of one instance
// ---------------------------------------------------------------------------------------

/// The metering globals of one instance (exported by the middleware).
#[derive(Clone)]
struct Meter {
    remaining: Global,
    exhausted: Global,
}

impl Meter {
    fn of(instance: &Instance) -> Option<Meter> {
        let remaining = instance
            .exports
            .get_global("wasmer_metering_remaining_points")
            .ok()?
            .clone();
        let exhausted = instance
            .exports
            .get_global("wasmer_metering_points_exhausted")
            .ok()?
            .clone();
        Some(Meter {
            remaining,
            exhausted,
        })
    }

    fn reset(&self, store: &mut Store, budget: u64) {
        // The middleware compares the global as unsigned: store the u64's bits.
        let bits = i64::from_ne_bytes(budget.to_ne_bytes());
        if let Err(e) = self.remaining.set(store, Value::I64(bits)) {
            log::error!("cannot reset the CPU budget: {e}");
        }
        if let Err(e) = self.exhausted.set(store, Value::I32(0)) {
            log::error!("cannot reset the CPU budget: {e}");
        }
    }

    fn is_exhausted(&self, store: &mut Store) -> bool {
        matches!(self.exhausted.get(store), Value::I32(v) if v != 0)
    }

    fn remaining(&self, store: &mut Store) -> Option<u64> {
        match self.remaining.get(store) {
            Value::I64(v) => Some(u64::from_ne_bytes(v.to_ne_bytes())),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wall clock: one watchdog thread per process
// ---------------------------------------------------------------------------------------

#[cfg(unix)]
mod watchdog {
    //! One thread for the whole process: it sleeps until the earliest armed deadline and
    //! interrupts that store (wasmer's `Store::interrupter()`, a signal to the thread
    //! running it).

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
    use std::time::{Duration, Instant};

    /// How often the watchdog repeats an interrupt while the call is still running: an
    /// interrupt is lost when it lands between two wasm calls of one export call, and it
    /// only takes effect when a host function returns to wasm.
    const INTERRUPT_RETRY: Duration = Duration::from_millis(100);

    struct Entry {
        next_fire: Instant,
        interrupter: wasmer::Interrupter,
        fired: Arc<AtomicBool>,
    }

    #[derive(Default)]
    struct State {
        entries: HashMap<u64, Entry>,
        /// When the watchdog thread wakes up next (None: only when notified). Arming a
        /// later deadline needs no wake-up, which keeps the per-call cost to a map
        /// insert and remove.
        next_wake: Option<Instant>,
    }

    pub(super) struct Watchdog {
        state: Mutex<State>,
        wake: Condvar,
        next_id: AtomicU64,
    }

    impl Watchdog {
        /// The process-wide watchdog (its thread starts on first use); None if the
        /// thread could not be started.
        pub(super) fn get() -> Option<&'static Watchdog> {
            static WATCHDOG: OnceLock<Option<&'static Watchdog>> = OnceLock::new();
            *WATCHDOG.get_or_init(|| {
                let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
                    state: Mutex::new(State::default()),
                    wake: Condvar::new(),
                    next_id: AtomicU64::new(1),
                }));
                match std::thread::Builder::new()
                    .name("tark-wasmer-watchdog".into())
                    .spawn(move || dog.run())
                {
                    Ok(_) => Some(dog),
                    Err(e) => {
                        log::error!(
                            "cannot start the call watchdog thread (no wall-clock limit): {e}"
                        );
                        None
                    }
                }
            })
        }

        /// Interrupt `interrupter`'s store at `deadline` (and every
        /// [`INTERRUPT_RETRY`] after) until [`Watchdog::disarm`]; `fired` is set when it
        /// does. Returns the entry's id.
        pub(super) fn arm(
            &self,
            deadline: Instant,
            interrupter: wasmer::Interrupter,
            fired: Arc<AtomicBool>,
        ) -> u64 {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.entries.insert(
                id,
                Entry {
                    next_fire: deadline,
                    interrupter,
                    fired,
                },
            );
            if state.next_wake.is_none_or(|w| deadline < w) {
                state.next_wake = Some(deadline);
                self.wake.notify_one();
            }
            id
        }

        /// Forget entry `id`: its store is never interrupted again once this returns.
        pub(super) fn disarm(&self, id: u64) {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entries
                .remove(&id);
        }

        fn run(&self) {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                let now = Instant::now();
                let mut earliest: Option<Instant> = None;
                for entry in state.entries.values_mut() {
                    if entry.next_fire <= now {
                        entry.fired.store(true, Ordering::SeqCst);
                        // Under the lock, so that `disarm` waits for it.
                        entry.interrupter.interrupt();
                        entry.next_fire = now + INTERRUPT_RETRY;
                    }
                    earliest = Some(earliest.map_or(entry.next_fire, |e| e.min(entry.next_fire)));
                }
                state.next_wake = earliest;
                state = match earliest {
                    None => self
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner),
                    Some(t) => {
                        self.wake
                            .wait_timeout(state, t.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
            }
        }
    }
}

/// An armed per-call deadline; disarmed when dropped.
pub struct DeadlineGuard {
    #[cfg(unix)]
    id: Option<u64>,
    fired: Arc<AtomicBool>,
}

impl DeadlineGuard {
    fn disarmed() -> Self {
        DeadlineGuard {
            #[cfg(unix)]
            id: None,
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Did the deadline pass (and the watchdog interrupt the call)?
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let (Some(id), Some(dog)) = (self.id, watchdog::Watchdog::get()) {
            dog.disarm(id);
        }
    }
}

/// The handle the watchdog uses to stop a store's running wasm.
#[derive(Clone)]
struct StoreInterrupter {
    #[cfg(unix)]
    inner: wasmer::Interrupter,
}

impl StoreInterrupter {
    fn of(store: &Store) -> Self {
        #[cfg(not(unix))]
        let _ = store;
        StoreInterrupter {
            #[cfg(unix)]
            inner: store.interrupter(),
        }
    }

    /// Arm a deadline `limit` from now.
    fn arm(&self, limit: Duration) -> DeadlineGuard {
        #[cfg(unix)]
        {
            let Some(dog) = watchdog::Watchdog::get() else {
                return DeadlineGuard::disarmed();
            };
            let Some(deadline) = std::time::Instant::now().checked_add(limit) else {
                return DeadlineGuard::disarmed();
            };
            let fired = Arc::new(AtomicBool::new(false));
            let id = dog.arm(deadline, self.inner.clone(), fired.clone());
            DeadlineGuard {
                id: Some(id),
                fired,
            }
        }
        #[cfg(not(unix))]
        {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "wall-clock call limits ({} s) need wasmer's host interrupts, which this platform lacks; only the CPU budget applies",
                    format_secs(limit)
                );
            }
            DeadlineGuard::disarmed()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Per instance: what the call paths use
// ---------------------------------------------------------------------------------------

/// The guest-side limits of one instance: its metering globals, its interrupter and
/// the plugin's budget and deadline. The ABI adapters call [`InstanceLimits::begin`]
/// before each export call and [`InstanceLimits::classify`] on its failure (which
/// `src/abi/instance.rs` maps to a [`CallError`](crate::abi::CallError)).
pub struct InstanceLimits {
    meter: Option<Meter>,
    interrupter: StoreInterrupter,
    cpu_budget: u64,
    time_limit: Option<Duration>,
}

/// Which limit stopped a failed call (the ABI layer turns it into its error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// The CPU budget ran out.
    Cpu,
    /// The wall-clock deadline passed.
    Time(Duration),
    /// Linear memory is at its maximum (`max_bytes`).
    Memory {
        /// The effective maximum of the instance's memory, in bytes.
        max_bytes: u64,
    },
}

impl InstanceLimits {
    /// Limits for a freshly created `instance` of a plugin with `limits`.
    pub fn new(store: &Store, instance: &Instance, limits: &Limits) -> Self {
        InstanceLimits {
            meter: Meter::of(instance),
            interrupter: StoreInterrupter::of(store),
            cpu_budget: limits.cpu_budget,
            time_limit: limits.call_time_limit,
        }
    }

    /// Limits for a store whose instance does not exist yet (arming a deadline around
    /// instantiation).
    pub fn for_store(store: &Store, limits: &Limits) -> Self {
        InstanceLimits {
            meter: None,
            interrupter: StoreInterrupter::of(store),
            cpu_budget: limits.cpu_budget,
            time_limit: limits.call_time_limit,
        }
    }

    /// Start an export call: reset the CPU budget and arm the wall-clock deadline. Keep
    /// the guard until the call (with its `alloc`/`dealloc` calls) is over.
    pub fn begin(&self, store: &mut Store) -> DeadlineGuard {
        if let Some(meter) = &self.meter {
            meter.reset(store, self.cpu_budget);
        }
        match self.time_limit {
            Some(limit) => self.interrupter.arm(limit),
            None => DeadlineGuard::disarmed(),
        }
    }

    /// Points left of the current call's budget (None when not metered).
    pub fn remaining_points(&self, store: &mut Store) -> Option<u64> {
        self.meter.as_ref().and_then(|m| m.remaining(store))
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
        if self.meter.as_ref().is_some_and(|m| m.is_exhausted(store)) {
            return Some(Breach::Cpu);
        }
        if guard.fired() {
            if let Some(limit) = self.time_limit {
                return Some(Breach::Time(limit));
            }
        }
        let memory = memory?;
        let max_bytes = u64::from(memory.ty(&*store).maximum?.0).saturating_mul(WASM_PAGE_BYTES);
        let size = memory.view(&*store).data_size();
        let at_limit = if needed == 0 {
            size >= max_bytes
        } else {
            size.saturating_add(needed) > max_bytes
        };
        at_limit.then_some(Breach::Memory { max_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
