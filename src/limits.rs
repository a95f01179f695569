//! Size and time limits applied to everything a plugin can make the host do: plain
//! configuration ([`Limits`], the defaults and their calibration), no wasmer in it.
//!
//! Who enforces what:
//!
//! - **CPU budget**, in seconds of guest execution ([`Limits::cpu_time`]): region metering
//!   compiled into every module by the engine (`src/engine/metering.rs`: points for the
//!   operators on the longest path of each loop-free region, for each charge point and for
//!   each host call, charged at loop entries and back-edges, calls and function exits,
//!   weighted per compiler so that a point is a picosecond of the cheapest code per point);
//!   the budget is reset before each export call and an exhausted budget stops the guest.
//!   Time spent blocked in host functions (HTTP, `ws.recv`) costs no points.
//! - **Wall-clock limit** ([`Limits::call_time_limit`]): a per-call deadline enforced by one
//!   process-wide watchdog thread, which makes the guest trap at its next charge point (the
//!   same points, compiled in even without metering). It also stops calls that spend too
//!   long in host functions, once those return to wasm. Both work on every platform and
//!   both compilers.
//! - **Memory limit**: per-store tunables cap every linear memory's maximum (the one the
//!   module declares, and with it every `memory.grow`).
//!
//! The last two, and the per-call bookkeeping, live in `src/abi/enforce.rs`, which reports
//! a breach that the ABI layer turns into its error. The host services (`src/host/`) apply
//! the size limits of their own answers.
//!
//! Defaults are chosen so that plugins that work under tark keep working (README,
//! "Limits and their defaults"), while no plugin can make the host buffer or write
//! unbounded data, spin for more than seconds or take all memory. A plugin may ask for
//! other CPU, wall-clock and memory limits in its `plugin.toml`, up to the host's
//! [`Limits::plugin_max`] ([`Limits::for_plugin`]).

use std::time::Duration;

/// Metering points per second of guest execution: a point is a picosecond of the
/// cheapest code per point (a tight loop) on the reference machine, whatever the
/// compiler. `src/engine/metering.rs` weighs operators, charge points and host calls per
/// compiler so that this holds ([`Weights`](crate::engine::metering::Weights) has the
/// calibration), and code that does more per point (branchy code, hashing, calls) runs
/// shorter than its budget in seconds.
pub const POINTS_PER_SECOND: u64 = 1_000_000_000_000;

/// Default CPU budget per export call: 5 s of guest execution. Small enough that every
/// runaway plugin (a `loop br 0`, a loop around a cheap import, a loop in `alloc` or in
/// a start function) ends with a clear error within 10 s even on a machine twice slower
/// than the reference, large enough for any real hook, tool or channel call (tark's own
/// plugins use milliseconds of CPU per call; JSON-heavy code does 2-3 times more work per
/// point than a tight loop, so 5 s is 10-15 s of it).
pub const DEFAULT_CPU_TIME: Duration = Duration::from_secs(5);

/// Default largest CPU budget a plugin may ask for in its `plugin.toml`.
pub const DEFAULT_MAX_CPU_TIME: Duration = Duration::from_secs(60);

/// Default largest wall-clock limit a plugin may ask for in its `plugin.toml`.
pub const DEFAULT_MAX_CALL_TIME: Duration = Duration::from_secs(600);

/// Default largest linear memory a plugin may ask for in its `plugin.toml`: 1 GiB.
pub const DEFAULT_MAX_MEMORY: u64 = 1024 * 1024 * 1024;

/// Default wall-clock limit per call: several slow HTTP requests (30 s each at most,
/// [`Limits::http_timeout`]) must fit, so this is a backstop against calls stuck in host
/// functions and against runaway guests when metering is off, not the CPU limit. A call
/// blocked in a host function is not interrupted by it: the host function's own timeout
/// ends the wait (an HTTP read: `http_timeout`, 30 s; `ws.recv`: at most
/// `ws_recv_wait_max`), and the call then fails at the guest's next charge point.
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
    /// Compile the plugin with operator metering, which [`Limits::cpu_time`] needs.
    /// On by default: it is the only limit that works on every platform and ignores time
    /// blocked in host functions. Turning it off makes guest code faster but leaves only
    /// the wall-clock limit. It changes the compiled code, so plugins
    /// with different settings use different engines (see
    /// `WasmEngine::settings_fingerprint` in `src/engine.rs`).
    pub cpu_metering: bool,
    /// CPU budget of one export call (including the host's `alloc`/`cabi_realloc` and
    /// `dealloc` calls around it), in seconds of guest execution: converted to metering
    /// points at [`POINTS_PER_SECOND`] ([`Limits::cpu_points`]). Time blocked in host
    /// functions (HTTP, `ws.recv`) costs nothing. [`Duration::MAX`] means unlimited.
    pub cpu_time: Duration,
    /// Wall-clock limit of one export call, host-function time included; None for none.
    pub call_time_limit: Option<Duration>,
    /// Largest linear memory of one instance, in bytes (rounded down to 64 KiB pages):
    /// `memory.grow` past it returns -1, and a module whose initial memory is larger
    /// does not instantiate.
    pub memory_max: u64,
    /// The most a plugin may ask for in the `[limits]` section of its `plugin.toml`
    /// ([`Limits::for_plugin`]). Per-plugin limits set by the host itself
    /// (`HostOptions::plugin_limits`) are the host's decision and are not capped.
    pub plugin_max: PluginMax,
}

/// Ceilings on what a plugin's own `plugin.toml` may ask for: a plugin may lower any
/// limit, and raise one only up to these.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMax {
    /// Largest `cpu_seconds`.
    pub cpu_time: Duration,
    /// Largest `wall_clock_seconds`.
    pub call_time_limit: Duration,
    /// Largest `memory_mb`, in bytes.
    pub memory_max: u64,
}

impl Default for PluginMax {
    fn default() -> Self {
        PluginMax {
            cpu_time: DEFAULT_MAX_CPU_TIME,
            call_time_limit: DEFAULT_MAX_CALL_TIME,
            memory_max: DEFAULT_MAX_MEMORY,
        }
    }
}

/// What a plugin asks for in the `[limits]` section of its `plugin.toml` (already
/// validated by the manifest parser: positive, finite).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitRequest {
    /// `cpu_seconds`.
    pub cpu_time: Option<Duration>,
    /// `wall_clock_seconds`.
    pub call_time_limit: Option<Duration>,
    /// `memory_mb`, in bytes.
    pub memory_max: Option<u64>,
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
            cpu_time: DEFAULT_CPU_TIME,
            call_time_limit: Some(DEFAULT_CALL_TIME_LIMIT),
            memory_max: DEFAULT_MEMORY_MAX,
            plugin_max: PluginMax::default(),
        }
    }
}

impl Limits {
    /// [`Limits::cpu_time`] in metering points (saturating: a huge time is unlimited).
    pub fn cpu_points(&self) -> u64 {
        let secs = u128::from(self.cpu_time.as_secs()) * u128::from(POINTS_PER_SECOND);
        let frac = u128::from(self.cpu_time.subsec_nanos()) * u128::from(POINTS_PER_SECOND)
            / 1_000_000_000;
        u64::try_from(secs + frac).unwrap_or(u64::MAX)
    }

    /// The limits of plugin `id` whose `plugin.toml` asks for `request`: each requested
    /// value replaces this host's, capped at [`Limits::plugin_max`] (a plugin may lower a
    /// limit freely, and raise it only up to the ceiling). Returns the limits and one
    /// message per capped value, saying what was asked, what applies and how to get more.
    pub fn for_plugin(&self, id: &str, request: &LimitRequest) -> (Limits, Vec<String>) {
        let mut limits = self.clone();
        let mut notes = Vec::new();
        let max = &self.plugin_max;
        if let Some(asked) = request.cpu_time {
            if asked > max.cpu_time {
                notes.push(format!(
                    "plugin {id} asks for [limits] cpu_seconds = {} in its plugin.toml, above \
                     this host's maximum of {} s: using {} s (lower cpu_seconds, or raise the \
                     host's maximum, Limits::plugin_max.cpu_time)",
                    format_secs(asked),
                    format_secs(max.cpu_time),
                    format_secs(max.cpu_time)
                ));
            }
            limits.cpu_time = asked.min(max.cpu_time);
        }
        if let Some(asked) = request.call_time_limit {
            if asked > max.call_time_limit {
                notes.push(format!(
                    "plugin {id} asks for [limits] wall_clock_seconds = {} in its plugin.toml, \
                     above this host's maximum of {} s: using {} s (lower wall_clock_seconds, \
                     or raise the host's maximum, Limits::plugin_max.call_time_limit)",
                    format_secs(asked),
                    format_secs(max.call_time_limit),
                    format_secs(max.call_time_limit)
                ));
            }
            limits.call_time_limit = Some(asked.min(max.call_time_limit));
        }
        if let Some(asked) = request.memory_max {
            if asked > max.memory_max {
                notes.push(format!(
                    "plugin {id} asks for [limits] memory_mb = {} in its plugin.toml, above \
                     this host's maximum of {} MiB: using {} MiB (lower memory_mb, or raise \
                     the host's maximum, Limits::plugin_max.memory_max)",
                    asked / (1024 * 1024),
                    max.memory_max / (1024 * 1024),
                    max.memory_max / (1024 * 1024)
                ));
            }
            limits.memory_max = asked.min(max.memory_max);
        }
        (limits, notes)
    }

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
        assert_eq!(l.cpu_time, Duration::from_secs(5));
        assert_eq!(l.cpu_points(), 5 * POINTS_PER_SECOND);
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
    fn cpu_time_converts_to_points_and_saturates() {
        let l = |t| Limits {
            cpu_time: t,
            ..Limits::default()
        };
        assert_eq!(l(Duration::from_micros(1)).cpu_points(), 1_000_000);
        assert_eq!(
            l(Duration::from_millis(1500)).cpu_points(),
            1_500_000_000_000
        );
        assert_eq!(l(Duration::MAX).cpu_points(), u64::MAX);
    }

    #[test]
    fn a_plugin_may_lower_limits_and_raise_them_up_to_the_host_maximum() {
        let host = Limits::default();
        let lower = LimitRequest {
            cpu_time: Some(Duration::from_secs(1)),
            call_time_limit: Some(Duration::from_secs(10)),
            memory_max: Some(64 << 20),
        };
        let (l, notes) = host.for_plugin("p", &lower);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(l.cpu_time, Duration::from_secs(1));
        assert_eq!(l.call_time_limit, Some(Duration::from_secs(10)));
        assert_eq!(l.memory_max, 64 << 20);
        // Raising within the maximum is allowed.
        let raise = LimitRequest {
            cpu_time: Some(Duration::from_secs(30)),
            ..LimitRequest::default()
        };
        let (l, notes) = host.for_plugin("p", &raise);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(l.cpu_time, Duration::from_secs(30));
        assert_eq!(
            l.memory_max, host.memory_max,
            "unrequested values stay the host's"
        );
        // Above the maximum: capped, with a message naming the key, the values and the fix.
        let greedy = LimitRequest {
            cpu_time: Some(Duration::from_secs(3600)),
            call_time_limit: Some(Duration::from_secs(7200)),
            memory_max: Some(8 << 30),
        };
        let (l, notes) = host.for_plugin("greedy", &greedy);
        assert_eq!(l.cpu_time, DEFAULT_MAX_CPU_TIME);
        assert_eq!(l.call_time_limit, Some(DEFAULT_MAX_CALL_TIME));
        assert_eq!(l.memory_max, DEFAULT_MAX_MEMORY);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes[0].contains("plugin greedy asks for [limits] cpu_seconds = 3600")
                && notes[0].contains("maximum of 60 s: using 60 s")
                && notes[0].contains("Limits::plugin_max.cpu_time"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("wall_clock_seconds = 7200"),
            "{}",
            notes[1]
        );
        assert!(notes[2].contains("memory_mb = 8192") && notes[2].contains("using 1024 MiB"));
        // A host with a lower maximum caps a request the default host would allow.
        let strict = Limits {
            plugin_max: PluginMax {
                cpu_time: Duration::from_secs(2),
                ..PluginMax::default()
            },
            ..Limits::default()
        };
        let (l, notes) = strict.for_plugin("p", &raise);
        assert_eq!(l.cpu_time, Duration::from_secs(2));
        assert_eq!(notes.len(), 1);
    }

    #[test]
    fn seconds_are_formatted_for_messages() {
        assert_eq!(format_secs(Duration::from_secs(120)), "120");
        assert_eq!(format_secs(Duration::from_secs(1)), "1");
        assert_eq!(format_secs(Duration::from_millis(500)), "0.5");
        assert_eq!(format_secs(Duration::from_millis(1250)), "1.25");
    }
}
