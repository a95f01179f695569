//! The two ways a guest reaches the host services: tark's legacy host-function ABI
//! (JSON over pointer/length pairs) and the canonical ABI of wit-bindgen plugins, over
//! one ABI-neutral instance core ([`instance`]) and the enforcement of the guest-side
//! limits ([`enforce`]). Only code under this module touches guest memory.

pub mod canonical;
#[cfg(feature = "sys")]
pub mod enforce;
/// The JS backend's limits: the memory cap only (the JavaScript engine compiles; no metering).
#[cfg(not(feature = "sys"))]
#[path = "enforce_js.rs"]
pub mod enforce;
pub mod instance;
pub mod legacy;
pub mod memory;
#[cfg(feature = "sys")]
pub mod wasi;
/// The JS backend's WASI preview1: the calls tark's plugins make, without wasmer-wasix.
#[cfg(not(feature = "sys"))]
#[path = "wasi_js.rs"]
pub mod wasi;

use std::any::Any;
use std::fmt;

use wasmer::{ExternType, FunctionType, Module, Type};

pub use enforce::Breach;
pub use instance::InstantiateError;
pub use memory::GuestMemoryError;

/// The text of a caught panic (`catch_unwind` payload): its `&str` or `String`
/// message, else `panic`.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

/// Which ABI a module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbiKind {
    /// tark's host-function ABI (`tark:storage`, `provider_info`, ...).
    Legacy,
    /// The component model's canonical ABI as lowered by wit-bindgen (`tark:plugin/...`).
    Canonical,
}

impl AbiKind {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiKind::Legacy => "legacy",
            AbiKind::Canonical => "canonical",
        }
    }
}

impl fmt::Display for AbiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A module that cannot be linked against this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// An import the host does not provide.
    #[error("unknown import {module}::{name} with signature {found}: the host provides no such function")]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// Its type.
        found: String,
    },
    /// An import with the right name but another signature.
    #[error("import {module}::{name} has signature {found}, expected {expected} (built against another tark ABI?)")]
    SignatureMismatch {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// Signature the host provides.
        expected: String,
        /// Signature the module declares.
        found: String,
    },
    /// An import that is not a function (memory, table, global).
    #[error("unsupported import {module}::{name}: {kind} imports are not provided (plugins must define and export their own memory)")]
    NonFunctionImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
        /// What kind it is.
        kind: String,
    },
}

/// Render a function type as `(i32, i32) -> i32`.
pub fn signature_string(ty: &FunctionType) -> String {
    fn list(ts: &[Type]) -> String {
        ts.iter()
            .map(|t| t.to_string().to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    }
    let results = ty.results();
    let res = match results.len() {
        0 => "()".to_string(),
        1 => list(results),
        _ => format!("({})", list(results)),
    };
    format!("({}) -> {}", list(ty.params()), res)
}

/// Check every import of `module` against a table of host functions, WASI aside.
pub fn check_imports(
    module: &Module,
    provided: &dyn Fn(&str, &str) -> Option<FunctionType>,
) -> Result<(), LinkError> {
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        let ty = match import.ty() {
            ExternType::Function(f) => f.clone(),
            other => {
                let kind = match other {
                    ExternType::Memory(_) => "memory",
                    ExternType::Table(_) => "table",
                    ExternType::Global(_) => "global",
                    _ => "non-function",
                };
                return Err(LinkError::NonFunctionImport {
                    module: m.to_string(),
                    name: n.to_string(),
                    kind: kind.to_string(),
                });
            }
        };
        if m == "wasi_snapshot_preview1" {
            continue;
        }
        match provided(m, n) {
            Some(expected) if expected == ty => {}
            Some(expected) => {
                return Err(LinkError::SignatureMismatch {
                    module: m.to_string(),
                    name: n.to_string(),
                    expected: signature_string(&expected),
                    found: signature_string(&ty),
                })
            }
            None => {
                return Err(LinkError::UnknownImport {
                    module: m.to_string(),
                    name: n.to_string(),
                    found: signature_string(&ty),
                })
            }
        }
    }
    Ok(())
}

/// A call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The export is missing or has another type (tark's wording: it looks exports up by
    /// name and type).
    #[error("Plugin does not export '{0}' function")]
    MissingExport(String),
    /// A canonical export exists but its core signature is not the contract's.
    #[error("export {export} has signature {found}, expected {expected} (built against another tark.wit?)")]
    ExportSignature {
        /// The export's full name (`tark:plugin/<iface>#<func>`).
        export: String,
        /// Core signature the contract asks for.
        expected: String,
        /// Core signature the module defines.
        found: String,
    },
    /// The caller passed another number of arguments than the function takes.
    #[error("{function}: expected {expected} arguments, got {given}")]
    ArgumentCount {
        /// The export.
        function: String,
        /// Parameters of the function.
        expected: usize,
        /// Arguments passed.
        given: usize,
    },
    /// The host could not provide what the call needs to run (the WASI tokio runtime).
    #[error("{0}")]
    Runtime(String),
    /// The guest trapped (panic, out-of-bounds access, unreachable, host-function fault).
    #[error("plugin trapped in '{function}': {message}")]
    Trap {
        /// The export being called.
        function: String,
        /// The trap text.
        message: String,
    },
    /// The guest returned a negative code (with its `{"error": ...}` text when it wrote one).
    #[error("{}", match message { Some(m) => format!("{function} failed: {m} (code {code})"), None => format!("Function {function} returned error code: {code}") })]
    GuestError {
        /// The export.
        function: String,
        /// The negative return code.
        code: i32,
        /// The guest's error text, when it wrote `{"error": "..."}`.
        message: Option<String>,
    },
    /// The guest claims to have written more than the host's buffer holds.
    #[error("{function}: result exceeds output buffer: {len} > {size}")]
    OutputOverflow {
        /// The export.
        function: String,
        /// Returned length.
        len: u64,
        /// Buffer size.
        size: u64,
    },
    /// `alloc` / `cabi_realloc` returned 0 or a range outside memory.
    #[error("{function}: guest allocation of {size} bytes failed: {detail}")]
    AllocFailed {
        /// The export being prepared.
        function: String,
        /// Requested size.
        size: u64,
        /// What was wrong.
        detail: String,
    },
    /// A guest pointer, length or string was invalid.
    #[error("{function}: {error}")]
    Memory {
        /// The export.
        function: String,
        /// What was wrong.
        error: GuestMemoryError,
    },
    /// A canonical-ABI value from the guest was invalid (pointer, alignment,
    /// discriminant, char, UTF-8, allocation, size).
    #[error("{function}: {message}")]
    Abi {
        /// The export or import.
        function: String,
        /// What was wrong.
        message: String,
    },
    /// A canonical plugin returned `err(text)` from a `result<_, string>` function.
    #[error("{function}: {message}")]
    PluginError {
        /// The function.
        function: String,
        /// The plugin's error text.
        message: String,
    },
    /// The export returns guest memory but the module has no `cabi_post_` function for it.
    #[error("{0}: the plugin exports no post-return function `cabi_post_{0}` for a result that owns guest memory")]
    MissingPostReturn(String),
    /// The guest's answer is not valid UTF-8.
    #[error("Invalid UTF-8 in result of {0}")]
    InvalidUtf8(String),
    /// The guest's answer does not have the expected shape.
    #[error("Failed to parse {what} JSON: {message}")]
    BadResult {
        /// What was being parsed (`provider info`, `models`, ...).
        what: String,
        /// Parser message.
        message: String,
    },
    /// Something the plugin must provide is missing or unusable (a function, a result it
    /// did not produce). Prefer a precise variant where one fits.
    #[error("{0}")]
    Missing(String),
    /// A Rust type used for a typed canonical call does not match the function's WIT
    /// signature (a host-side bug, found once when the export is resolved).
    #[error("{function}: Rust types do not match the WIT contract: {message}")]
    TypeMismatch {
        /// The export.
        function: String,
        /// Which parameter, field or case differs, and how.
        message: String,
    },
    /// The function is not available through this ABI.
    #[error("'{function}' is not available for {abi} plugins")]
    Unsupported {
        /// The function.
        function: String,
        /// The ABI.
        abi: AbiKind,
    },
    /// The call used up its CPU budget ([`Limits::cpu_time`](crate::limits::Limits::cpu_time)).
    #[error("plugin {plugin} exceeded its CPU budget of {} s in {function}", crate::limits::format_secs(*limit))]
    CpuBudget {
        /// Plugin id.
        plugin: String,
        /// The export.
        function: String,
        /// The budget, in seconds of guest execution.
        limit: std::time::Duration,
    },
    /// The call ran past its wall-clock limit ([`Limits::call_time_limit`](crate::limits::Limits::call_time_limit)).
    #[error("plugin {plugin} exceeded its time limit of {} s in {function}", crate::limits::format_secs(*limit))]
    TimeLimit {
        /// Plugin id.
        plugin: String,
        /// The export.
        function: String,
        /// The limit.
        limit: std::time::Duration,
    },
    /// The call failed with linear memory at its maximum ([`Limits::memory_max`](crate::limits::Limits::memory_max)).
    #[error("plugin {plugin} reached its memory limit of {} MiB in {function}: {message}", max_bytes / (1024 * 1024))]
    MemoryLimit {
        /// Plugin id.
        plugin: String,
        /// The export.
        function: String,
        /// The memory's maximum in bytes.
        max_bytes: u64,
        /// How the call failed (the trap or allocation failure).
        message: String,
    },
}

impl CallError {
    /// The error for a limit `breach` in `function` of `plugin`; `message` says how the
    /// call failed (kept for the memory limit, where it is the guest's own failure).
    pub fn from_breach(breach: Breach, plugin: &str, function: &str, message: String) -> Self {
        match breach {
            Breach::Cpu(limit) => CallError::CpuBudget {
                plugin: plugin.to_string(),
                function: function.to_string(),
                limit,
            },
            Breach::Time(limit) => CallError::TimeLimit {
                plugin: plugin.to_string(),
                function: function.to_string(),
                limit,
            },
            Breach::Memory { max_bytes } => CallError::MemoryLimit {
                plugin: plugin.to_string(),
                function: function.to_string(),
                max_bytes,
                message,
            },
        }
    }

    /// Did a CPU, time or memory limit stop the call?
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CallError::CpuBudget { .. }
                | CallError::TimeLimit { .. }
                | CallError::MemoryLimit { .. }
        )
    }

    /// Must the instance be discarded after this error? (Its state may be corrupt.)
    pub fn poisons_instance(&self) -> bool {
        matches!(
            self,
            CallError::Trap { .. }
                | CallError::OutputOverflow { .. }
                | CallError::AllocFailed { .. }
                | CallError::Memory { .. }
                | CallError::Abi { .. }
                | CallError::CpuBudget { .. }
                | CallError::TimeLimit { .. }
                | CallError::MemoryLimit { .. }
        )
    }
}

/// The world a plugin of this manifest type is built for.
pub fn world_for_type(ty: crate::manifest::PluginType) -> &'static str {
    use crate::manifest::PluginType;
    match ty {
        PluginType::Auth => "auth-world",
        PluginType::Tool => "tool-world",
        PluginType::Provider => "provider-world",
        PluginType::Channel => "channel-world",
        PluginType::Hook => "hook-world",
    }
}
