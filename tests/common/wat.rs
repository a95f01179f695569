//! WAT building blocks for hand-written guests with the contract's core signatures
//! (tests/canonical_hostile.rs, tests/canonical_typed.rs), and the errors they provoke.

use tark_wasmer::lowlevel::{AbiError, Contract};
use tark_wasmer::{CallError, GuestMemoryError};

#[path = "../fuzz/harness/wat.rs"]
mod sigs;
pub use sigs::{wat_sig as sig, wat_types};

/// `"\xx\xx\xx\xx"`: a little-endian u32 as a WAT data string.
pub fn le(v: u32) -> String {
    v.to_le_bytes()
        .iter()
        .map(|b| format!("\\{b:02x}"))
        .collect()
}

/// A `(ptr, len)` pair as WAT data.
pub fn pair(ptr: u32, len: u32) -> String {
    format!("{}{}", le(ptr), le(len))
}

pub fn func_sig(iface: &str, func: &str) -> &'static tark_wasmer::lowlevel::FuncSig {
    Contract::get()
        .func(iface, func)
        .unwrap_or_else(|| panic!("{iface}.{func} is not in the contract"))
}

/// An export `tark:plugin/<iface>#<func>` with the contract's core signature.
pub fn export(iface: &str, func: &str, body: &str) -> String {
    format!(
        "(func (export \"tark:plugin/{iface}#{func}\") {} {body})",
        sig(&func_sig(iface, func).export_signature())
    )
}

/// Its post-return function (does nothing).
pub fn post(iface: &str, func: &str) -> String {
    let results = func_sig(iface, func).export_signature();
    format!(
        "(func (export \"cabi_post_tark:plugin/{iface}#{func}\") {})",
        wat_types("param", results.results())
    )
}

/// An export with its post-return function.
pub fn export_post(iface: &str, func: &str, body: &str) -> String {
    format!("{}\n{}", export(iface, func, body), post(iface, func))
}

/// An import of `tark:plugin/<iface>` `<func>` named `$<name>`, with the contract's signature.
pub fn import(iface: &str, func: &str, name: &str) -> String {
    format!(
        "(import \"tark:plugin/{iface}\" \"{func}\" (func ${name} {}))",
        sig(&func_sig(iface, func).import_signature())
    )
}

/// A correct bump allocator from 32768 (aligns as asked).
pub const REALLOC_OK: &str = r#"
  (global $heap (mut i32) (i32.const 32768))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))"#;

/// `cabi_realloc` that always answers `ret`.
pub fn realloc_returning(ret: i32) -> String {
    format!(
        "(func (export \"cabi_realloc\") (param i32 i32 i32 i32) (result i32) (i32.const {ret}))"
    )
}

/// `cabi_realloc` that traps.
pub const REALLOC_TRAP: &str =
    r#"(func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable)"#;

/// `cabi_realloc` that is correct for alignment 1 and answers 1025 for alignment 4.
pub const REALLOC_MISALIGNED: &str = r#"
  (global $heap (mut i32) (i32.const 32768))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
    (local $p i32)
    (if (i32.eq (local.get $align) (i32.const 4)) (then (return (i32.const 1025))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))"#;

/// The error a call of `function` ends with when the guest breaks the ABI.
pub fn abi(function: &str, e: impl Into<AbiError>) -> CallError {
    CallError::Abi {
        function: function.to_string(),
        message: e.into().to_string(),
    }
}

/// A guest range outside the memory.
pub fn oob(ptr: u64, len: u64, size: u64) -> GuestMemoryError {
    GuestMemoryError::OutOfBounds { ptr, len, size }
}

/// [`REALLOC_MISALIGNED`]'s answer (1025) to a request for a list of strings' 8 bytes.
pub fn realloc_misaligned() -> AbiError {
    AbiError::Realloc {
        align: 4,
        size: 8,
        ptr: 1025,
        detail: GuestMemoryError::Misaligned {
            ptr: 1025,
            align: 4,
        }
        .to_string(),
    }
}
