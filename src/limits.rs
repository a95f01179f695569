//! Size and time limits applied to everything a plugin can make the host do, and the
//! machinery that enforces the guest-side ones (legacy ABI spec §6.2 items 7-8):
//!
//! - **CPU budget**: operator metering (`wasmer_middlewares::Metering`, one point per wasm
//!   operator) compiled into every module; the budget is reset before each export call and
//!   an exhausted budget stops the guest. Time spent blocked in host functions (HTTP,
//!   `ws.recv`) costs no points. Works on every platform and both compilers.
//! - **Wall-clock limit**: a per-call deadline enforced by one process-wide watchdog
//!   thread through wasmer's `Store::interrupter()` (unix only in wasmer 7.4). It also
//!   stops calls that spend too long in host functions, once those return to wasm.
//! - **Memory limit**: [`LimitingTunables`] caps every linear memory's maximum (the one the
//!   module declares, and with it every `memory.grow`).
//!
//! Defaults are chosen so that plugins that work under tark keep working (see the
//! legacy ABI spec, section 6.1 item 5), while no plugin can make the host buffer or
//! write unbounded data, spin forever or take all memory.

use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmer::sys::vm::{VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{
    BaseTunables, FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware,
    Tunables,
};
use wasmer::wasmparser::Operator;
use wasmer::{
    Global, Instance, LocalFunctionIndex, MemoryError, MemoryStyle, MemoryType, ModuleInfo, Pages,
    Store, TableStyle, TableType, Value,
};
use wasmer_middlewares::Metering;

use crate::abi::CallError;

/// Default CPU budget per export call, in metering points (one point per executed wasm
/// operator).
///
/// Calibrated to roughly tark's intended 30 s of guest execution on the default compiler
/// (singlepass). Points per second of guest execution, measured on the 2-vCPU
/// development machine (release build, best of 10 alternating runs, other builds running):
///
/// | workload | singlepass | cranelift |
/// |---|---|---|
/// | tight loop (`i64` add, compare, `br_if`: 8 operators per iteration) | 10.9 G/s | 17.2 G/s |
/// | call-heavy (recursive `fib(32)`) | 3.9 G/s | 8.1 G/s |
/// | real plugin code (legacy-provider `provider_chat` "echo": serde_json parse and serialize of 265 KB, host copies included) | 6.4 G/s | 15.9 G/s |
/// | real plugin spinning (legacy-provider model "loop", rustc-compiled) | 10.8 G/s | 46 G/s |
///
/// 200 G points therefore last about 31 s of JSON-heavy code on singlepass (18 s of tight
/// loops, 51 s of call-heavy code) and 13 s (4-25 s) on cranelift: tark's 30 s order of
/// magnitude, below the 120 s wall-clock default, and never a hang.
///
/// What metering costs (same runs, metered vs unmetered time): tight loop +60 %
/// (singlepass) / +105 % (cranelift); fib +27 % / +30 %; the JSON call +75 % / +72 %.
/// Per call the budget reset costs about 0.01 µs and arming the deadline about 0.08 µs
/// (a no-op export: 0.19 µs bare, 0.28 µs with both). Plugin calls are dominated by
/// HTTP round trips, so metering stays on by default; hosts that prefer raw speed can
/// set [`Limits::cpu_metering`] to false and rely on the wall-clock limit (unix).
pub const DEFAULT_CPU_BUDGET: u64 = 200_000_000_000;

/// Default wall-clock limit per call: several slow HTTP requests (30 s each at most)
/// must fit, so this is a backstop against calls stuck in host functions and against
/// runaway guests when metering is off, not the primary CPU limit.
pub const DEFAULT_CALL_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Default cap on one instance's linear memory: 256 MiB. Plugins in the wild start at
/// about 20 pages (1.3 MiB) and, with the host freeing its buffers, stay near that.
pub const DEFAULT_MEMORY_MAX: u64 = 256 * 1024 * 1024;

/// Size of a wasm page.
const PAGE: u64 = 65536;

/// Host-side limits. One value per host, optionally overridden per plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest HTTP answer (legacy: the whole JSON envelope; canonical: the body) in bytes.
    pub http_response_max: usize,
    /// Largest file `fs.read` returns, in bytes.
    pub fs_read_max: usize,
    /// Largest single storage value returned by `storage.get`, in bytes.
    pub storage_value_max: usize,
    /// Largest total size of one plugin's storage (sum of key and value bytes).
    pub storage_total_max: usize,
    /// Largest environment value returned by `env.get`, in bytes.
    pub env_value_max: usize,
    /// Largest WebSocket message delivered by `ws.recv` (tark caps at 64 KiB).
    pub ws_message_max: usize,
    /// Inbound messages queued per WebSocket before the connection is dropped.
    pub ws_queue_max: usize,
    /// Largest wait a plugin may ask of `ws.recv`.
    pub ws_recv_wait_max: Duration,
    /// WebSocket handshake timeout.
    pub ws_handshake_timeout: Duration,
    /// HTTP connect timeout (tark: 10 s).
    pub http_connect_timeout: Duration,
    /// HTTP total timeout (tark: 30 s).
    pub http_timeout: Duration,
    /// Largest string or list the host reads from guest memory in one piece.
    pub guest_read_max: usize,
    /// Compile the plugin with operator metering, which [`Limits::cpu_budget`] needs.
    /// On by default: it is the only limit that works on every platform and ignores time
    /// blocked in host functions. Turning it off makes guest code 20-50 % faster (see
    /// [`DEFAULT_CPU_BUDGET`]) but leaves only the wall-clock limit (unix). It changes the compiled code, so plugins
    /// with different settings use different engines (see
    /// [`WasmEngine::settings_fingerprint`](crate::engine::WasmEngine::settings_fingerprint)).
    pub cpu_metering: bool,
    /// CPU budget of one export call (including the host's `alloc`/`dealloc` calls around
    /// it), in metering points: about one per executed wasm operator. `u64::MAX` means
    /// unlimited. See [`DEFAULT_CPU_BUDGET`] for the calibration.
    pub cpu_budget: u64,
    /// Wall-clock limit of one export call, host-function time included; None for none.
    /// Enforced on unix only (wasmer has no interrupt support elsewhere).
    pub call_time_limit: Option<Duration>,
    /// Largest linear memory of one instance, in bytes (rounded down to 64 KiB pages):
    /// `memory.grow` past it returns -1, and a module whose initial memory is larger
    /// does not instantiate.
    pub memory_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_response_max: 256 * 1024,
            fs_read_max: 256 * 1024,
            storage_value_max: 256 * 1024,
            storage_total_max: 16 * 1024 * 1024,
            env_value_max: 512,
            ws_message_max: 64 * 1024,
            ws_queue_max: 1024,
            ws_recv_wait_max: Duration::from_secs(30),
            ws_handshake_timeout: Duration::from_secs(10),
            http_connect_timeout: Duration::from_secs(10),
            http_timeout: Duration::from_secs(30),
            guest_read_max: 64 * 1024 * 1024,
            cpu_metering: true,
            cpu_budget: DEFAULT_CPU_BUDGET,
            call_time_limit: Some(DEFAULT_CALL_TIME_LIMIT),
            memory_max: DEFAULT_MEMORY_MAX,
        }
    }
}

impl Limits {
    /// [`Limits::memory_max`] in wasm pages (at most the 65536 pages of wasm32).
    pub fn memory_max_pages(&self) -> u32 {
        let pages = (self.memory_max / PAGE).min(u64::from(wasmer::WASM_MAX_PAGES));
        u32::try_from(pages).unwrap_or(wasmer::WASM_MAX_PAGES)
    }
}

/// A duration as seconds for messages: `120`, `1`, `0.5`.
pub fn format_secs(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let s = format!("{:.3}", d.as_secs_f64());
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

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
// CPU: metering
// ---------------------------------------------------------------------------------------

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
/// before each export call and [`InstanceLimits::classify`] on its failure.
pub struct InstanceLimits {
    meter: Option<Meter>,
    interrupter: StoreInterrupter,
    cpu_budget: u64,
    time_limit: Option<Duration>,
}

/// What a limit breach turned a failed call into.
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

    /// Is the module metered (compiled by an engine with metering)?
    pub fn metered(&self) -> bool {
        self.meter.is_some()
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
        let max_bytes = u64::from(memory.ty(&*store).maximum?.0).saturating_mul(PAGE);
        let size = memory.view(&*store).data_size();
        let at_limit = if needed == 0 {
            size >= max_bytes
        } else {
            size.saturating_add(needed) > max_bytes
        };
        at_limit.then_some(Breach::Memory { max_bytes })
    }

    /// Map the failure `e` of export `function` to the limit that caused it, if any: a
    /// trap with the budget exhausted is [`CallError::CpuBudget`], a trap after the
    /// deadline fired is [`CallError::TimeLimit`], a trap or failed allocation with
    /// memory at its maximum is [`CallError::MemoryLimit`]. Anything else is returned
    /// unchanged.
    pub fn check(
        &self,
        store: &mut Store,
        guard: &DeadlineGuard,
        memory: Option<&wasmer::Memory>,
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
        match self.classify(store, guard, memory, needed) {
            Some(Breach::Cpu) if trap_like => CallError::CpuBudget {
                plugin: plugin.to_string(),
                function: function.to_string(),
            },
            Some(Breach::Time(limit)) if trap_like => CallError::TimeLimit {
                plugin: plugin.to_string(),
                function: function.to_string(),
                limit,
            },
            Some(Breach::Memory { max_bytes }) => CallError::MemoryLimit {
                plugin: plugin.to_string(),
                function: function.to_string(),
                max_bytes,
                message: e.to_string(),
            },
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values() {
        let l = Limits::default();
        assert!(l.cpu_metering);
        assert_eq!(l.cpu_budget, DEFAULT_CPU_BUDGET);
        assert_eq!(l.call_time_limit, Some(Duration::from_secs(120)));
        assert_eq!(l.memory_max, 256 * 1024 * 1024);
        assert_eq!(l.memory_max_pages(), 4096);
        let huge = Limits {
            memory_max: u64::MAX,
            ..Limits::default()
        };
        assert_eq!(huge.memory_max_pages(), 65536);
    }

    #[test]
    fn seconds_are_formatted_for_messages() {
        assert_eq!(format_secs(Duration::from_secs(120)), "120");
        assert_eq!(format_secs(Duration::from_secs(1)), "1");
        assert_eq!(format_secs(Duration::from_millis(500)), "0.5");
        assert_eq!(format_secs(Duration::from_millis(1250)), "1.25");
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
