//! What the engines of both backends share (`engine.rs`, and `engine_js.rs` through a
//! `#[path]`): the compiled-module type and the checks on a module's bytes before any
//! compiler sees them. `EngineError` is each backend's own (same variant names).

use wasmer::Module;

use super::{bounds, EngineError};

/// A compiled module with its content hash.
#[derive(Clone)]
pub struct CompiledModule {
    /// The module.
    pub module: Module,
    /// SHA-256 of the wasm bytes.
    pub hash: [u8; 32],
    /// Size of the wasm bytes.
    pub wasm_size: usize,
    /// Names of the module's custom sections (world detection reads them).
    pub custom_sections: Vec<String>,
}

/// Refuse a module whose shape is outside the static bounds of [`bounds`] (checked before
/// compiling: a compile-time bomb costs every compiler).
pub(super) fn check_bounds(what: &str, wasm: &[u8]) -> Result<(), EngineError> {
    if let Err(e @ bounds::BoundsError::TooComplex { .. }) = bounds::check_module_bounds(wasm) {
        return Err(EngineError::TooComplex {
            what: what.to_string(),
            message: e.to_string(),
        });
    }
    Ok(())
}

/// Names of the custom sections of a core module (empty for anything unparsable).
pub fn custom_section_names(wasm: &[u8]) -> Vec<String> {
    fn leb(bytes: &[u8], pos: &mut usize) -> Option<u32> {
        let mut result: u32 = 0;
        for shift in (0..35).step_by(7) {
            let b = *bytes.get(*pos)?;
            *pos += 1;
            result |= u32::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(result);
            }
        }
        None
    }
    let mut names = Vec::new();
    if !wasm.starts_with(b"\0asm") {
        return names;
    }
    let mut pos = 8usize;
    while pos < wasm.len() {
        let Some(&id) = wasm.get(pos) else { break };
        pos += 1;
        let Some(size) = leb(wasm, &mut pos) else {
            break;
        };
        let Some(end) = pos.checked_add(size as usize).filter(|e| *e <= wasm.len()) else {
            break;
        };
        if id == 0 {
            let mut p = pos;
            if let Some(n) = leb(wasm, &mut p) {
                if let Some(name) = p
                    .checked_add(n as usize)
                    .filter(|e| *e <= end)
                    .and_then(|e| wasm.get(p..e))
                {
                    names.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        pos = end;
    }
    names
}

/// Is this a component-model binary (layer 1) rather than a core module?
pub fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm.get(6..8) == Some(&[1, 0])
}
