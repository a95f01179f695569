//! What both backends' limit enforcement shares (`abi/enforce.rs`, and
//! `abi/enforce_js.rs` through a `#[path]`): the kinds of breach and the memory rule.

use std::time::Duration;

/// Which limit stopped a failed call (the ABI layer turns it into its error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// The CPU budget (in seconds of guest execution) ran out (never reported by the JS
    /// backend: no metering).
    Cpu(Duration),
    /// The wall-clock deadline passed (never reported by the JS backend: no watchdog).
    Time(Duration),
    /// Linear memory is at its maximum (`max_bytes`).
    Memory {
        /// The effective maximum of the instance's memory, in bytes.
        max_bytes: u64,
    },
}

/// After a failed call, memory of `size` bytes at the cap `max_bytes` (or, for an
/// allocation of `needed` bytes, over it) is [`Breach::Memory`].
pub(super) fn memory_breach(size: u64, needed: u64, max_bytes: u64) -> Option<Breach> {
    let at_limit = if needed == 0 {
        size >= max_bytes
    } else {
        size.saturating_add(needed) > max_bytes
    };
    at_limit.then_some(Breach::Memory { max_bytes })
}
