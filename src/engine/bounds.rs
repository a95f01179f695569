//! Static bounds on a module's shape, checked from its bytes before any compiler sees
//! it: a "compile-time bomb" (a small file whose compile takes minutes or gigabytes)
//! is refused with a clear error at `plugin add`, `plugin check` and load.
//!
//! Compile cost grows with the code the compilers must emit and track, which a few
//! bytes can blow up: a local is declared as `(count, type)`, so 10 000 functions of
//! 50 000 locals each fit in 60 KB and ask cranelift to zero-initialise and track
//! 500 million variables (200 such functions took cranelift 4.4 s); a `br_table` target
//! or a nesting level is one byte each, and cranelift's time grows with the square of
//! the nesting depth (50 000 nested blocks: 25 s for 150 KB). Measured on this machine's
//! debug build with optimised dependencies, wasmer 7.4.2. The
//! bounds below are far above what real plugins use and low enough that the worst module
//! inside them compiles in seconds, not minutes. The largest example plugin (bench-hook,
//! a 438 KB Rust release build) has at most 50 locals and 82 nested blocks in a function,
//! 2 116 locals, 1 112 `br_table` targets and a depth sum of 70 376 in all; scaled to a
//! 30 MB module that is still a tenth of each module-wide bound. `tests/redteam.rs`,
//! `compile_bombs_are_refused_before_compiling`, checks both sides.
//!
//! There is no wall-clock bound on compiling itself: neither compiler can be stopped
//! part-way, so the shape is bounded instead.

use wasmparser::{Operator, Parser, Payload};

/// Largest module accepted (bytes of the whole file).
pub const MAX_MODULE_BYTES: usize = 64 << 20;
/// Largest code section (sum of function bodies, bytes).
pub const MAX_CODE_BYTES: usize = 32 << 20;
/// Largest single function body (bytes).
pub const MAX_FUNCTION_BYTES: usize = 2 << 20;
/// Most functions defined by a module.
pub const MAX_FUNCTIONS: usize = 200_000;
/// Most locals declared by one function (parameters not counted).
pub const MAX_FUNCTION_LOCALS: u64 = 10_000;
/// Most locals declared by all functions together.
pub const MAX_TOTAL_LOCALS: u64 = 1_000_000;
/// Most `br_table` targets in the whole module.
pub const MAX_BR_TABLE_TARGETS: u64 = 1_000_000;
/// Deepest nesting of blocks (`block`, `loop`, `if`, `try_table`) in one function.
pub const MAX_NESTING: u32 = 10_000;
/// Most nesting work in the whole module: the sum over all blocks of their depth.
/// cranelift's cost grows with the square of the depth (one function of 10 000 nested
/// blocks, a sum of 50 million, compiles in about 1 s; 50 000 nested blocks took 25 s),
/// so bounding the depth alone would still let many deep functions add up.
pub const MAX_DEPTH_SUM: u64 = 50_000_000;

/// The module is outside the bounds (or not readable as a module at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    /// One bound is exceeded.
    #[error("module too complex to compile safely: {what} is {found}, the limit is {limit}")]
    TooComplex {
        /// What was measured.
        what: String,
        /// What the module has (at least; counting stops at the first excess).
        found: u64,
        /// The bound.
        limit: u64,
    },
    /// The bytes could not be parsed (the compiler's validation reports details).
    #[error("invalid wasm module: {0}")]
    Invalid(String),
}

fn too(what: impl Into<String>, found: u64, limit: u64) -> BoundsError {
    BoundsError::TooComplex {
        what: what.into(),
        found,
        limit,
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Check `wasm` against the bounds. Parsing only (no validation: the compiler validates);
/// linear in the size of the code.
pub fn check_module_bounds(wasm: &[u8]) -> Result<(), BoundsError> {
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(too(
            "the module size in bytes",
            as_u64(wasm.len()),
            as_u64(MAX_MODULE_BYTES),
        ));
    }
    let invalid = |e: wasmparser::BinaryReaderError| BoundsError::Invalid(e.to_string());
    let mut functions = 0usize;
    let mut total_locals = 0u64;
    let mut br_targets = 0u64;
    let mut depth_sum = 0u64;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::CodeSectionStart { size, .. } => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > MAX_CODE_BYTES {
                    return Err(too(
                        "the code section size in bytes",
                        as_u64(size),
                        as_u64(MAX_CODE_BYTES),
                    ));
                }
            }
            Payload::CodeSectionEntry(body) => {
                functions = functions.saturating_add(1);
                if functions > MAX_FUNCTIONS {
                    return Err(too(
                        "the number of functions",
                        as_u64(functions),
                        as_u64(MAX_FUNCTIONS),
                    ));
                }
                let index = functions - 1;
                let range = body.range();
                let len = range.end.saturating_sub(range.start);
                if len > as_u64(MAX_FUNCTION_BYTES) {
                    return Err(too(
                        format!("the body of function #{index} in bytes"),
                        len,
                        as_u64(MAX_FUNCTION_BYTES),
                    ));
                }
                let mut locals = 0u64;
                for decl in body.get_locals_reader().map_err(invalid)? {
                    let (count, _) = decl.map_err(invalid)?;
                    locals = locals.saturating_add(u64::from(count));
                    if locals > MAX_FUNCTION_LOCALS {
                        return Err(too(
                            format!("the number of locals of function #{index}"),
                            locals,
                            MAX_FUNCTION_LOCALS,
                        ));
                    }
                }
                total_locals = total_locals.saturating_add(locals);
                if total_locals > MAX_TOTAL_LOCALS {
                    return Err(too(
                        "the number of locals of all functions",
                        total_locals,
                        MAX_TOTAL_LOCALS,
                    ));
                }
                let mut depth = 0u32;
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                while !ops.eof() {
                    match ops.read().map_err(invalid)? {
                        Operator::Block { .. }
                        | Operator::Loop { .. }
                        | Operator::If { .. }
                        | Operator::TryTable { .. }
                        | Operator::Try { .. } => {
                            depth = depth.saturating_add(1);
                            if depth > MAX_NESTING {
                                return Err(too(
                                    format!("the block nesting depth of function #{index}"),
                                    u64::from(depth),
                                    u64::from(MAX_NESTING),
                                ));
                            }
                            depth_sum = depth_sum.saturating_add(u64::from(depth));
                            if depth_sum > MAX_DEPTH_SUM {
                                return Err(too(
                                    "the sum of block nesting depths",
                                    depth_sum,
                                    MAX_DEPTH_SUM,
                                ));
                            }
                        }
                        Operator::End => depth = depth.saturating_sub(1),
                        Operator::BrTable { targets } => {
                            br_targets = br_targets.saturating_add(u64::from(targets.len()));
                            if br_targets > MAX_BR_TABLE_TARGETS {
                                return Err(too(
                                    "the number of br_table targets",
                                    br_targets,
                                    MAX_BR_TABLE_TARGETS,
                                ));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_modules_pass_and_each_bound_names_itself() {
        let ok =
            wat::parse_str("(module (func (local i32 i64) (block (loop (br 1)))))").expect("wat");
        assert_eq!(check_module_bounds(&ok), Ok(()));
        let locals = wat::parse_str(format!(
            "(module (func (local {})))",
            "i32 ".repeat(usize::try_from(MAX_FUNCTION_LOCALS).unwrap_or(0) + 1)
        ))
        .expect("wat");
        let e = check_module_bounds(&locals).unwrap_err().to_string();
        assert!(
            e.contains("the number of locals of function #0 is 10001, the limit is 10000"),
            "{e}"
        );
        assert!(matches!(
            check_module_bounds(b"\0asm\x01\0\0\0\x0a\xff"),
            Err(BoundsError::Invalid(_))
        ));
    }
}
