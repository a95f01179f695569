//! Size and time limits applied to everything a plugin can make the host do: plain
//! configuration ([`Limits`], the defaults and their calibration), no wasmer in it.
//!
//! Who enforces what:
//!
//! - **CPU budget**: region metering compiled into every module by the engine
//!   (`src/engine/metering.rs`: about one point per wasm operator on the longest path of
//!   each loop-free region, charged at loop back-edges, calls and function exits); the
//!   budget is reset before each export call and an exhausted budget stops the guest.
//!   Time spent blocked in host functions (HTTP, `ws.recv`) costs no points.
//! - **Wall-clock limit**: a per-call deadline enforced by one process-wide watchdog
//!   thread, which makes the guest trap at its next charge point (the same points, compiled
//!   in even without metering). It also stops calls that spend too long in host
//!   functions, once those return to wasm. Both work on every platform and both compilers.
//! - **Memory limit**: per-store tunables cap every linear memory's maximum (the one the
//!   module declares, and with it every `memory.grow`).
//!
//! The last two, and the per-call bookkeeping, live in `src/abi/enforce.rs`, which reports
//! a breach that the ABI layer turns into its error. The host services (`src/host/`) apply
//! the size limits of their own answers.
//!
//! Defaults are chosen so that plugins that work under tark keep working (README,
//! "Limits and their defaults"), while no plugin can make the host buffer or write
//! unbounded data, spin forever or take all memory.

use std::time::Duration;

/// Default CPU budget per export call, in metering points (about one point per executed
/// wasm operator; `src/engine/metering.rs` has the exact definition).
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
/// set [`Limits::cpu_metering`] to false and rely on the wall-clock limit. (These
/// measurements predate region metering, `METERING_SCHEME` "region2": see the commit
/// that introduced it for the new overheads.)
pub const DEFAULT_CPU_BUDGET: u64 = 200_000_000_000;

/// Default wall-clock limit per call: several slow HTTP requests (30 s each at most)
/// must fit, so this is a backstop against calls stuck in host functions and against
/// runaway guests when metering is off, not the primary CPU limit.
pub const DEFAULT_CALL_TIME_LIMIT: Duration = Duration::from_secs(120);

/// Default cap on one instance's linear memory: 256 MiB. Plugins in the wild start at
/// about 20 pages (1.3 MiB) and, with the host freeing its buffers, stay near that.
pub const DEFAULT_MEMORY_MAX: u64 = 256 * 1024 * 1024;

/// Size of a wasm page in bytes.
pub const WASM_PAGE_BYTES: u64 = 65536;

/// Pages of the largest wasm32 linear memory (4 GiB).
pub const WASM_MAX_PAGES: u32 = 65536;

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
    /// blocked in host functions. Turning it off makes guest code faster but leaves only
    /// the wall-clock limit. It changes the compiled code, so plugins
    /// with different settings use different engines (see
    /// `WasmEngine::settings_fingerprint` in `src/engine.rs`).
    pub cpu_metering: bool,
    /// CPU budget of one export call (including the host's `alloc`/`dealloc` calls around
    /// it), in metering points: about one per executed wasm operator. `u64::MAX` means
    /// unlimited. See [`DEFAULT_CPU_BUDGET`] for the calibration.
    pub cpu_budget: u64,
    /// Wall-clock limit of one export call, host-function time included; None for none.
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
        let pages = (self.memory_max / WASM_PAGE_BYTES).min(u64::from(WASM_MAX_PAGES));
        u32::try_from(pages).unwrap_or(WASM_MAX_PAGES)
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
}
