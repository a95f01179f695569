//! What a wasm module declares, read from its bytes without compiling it: imports,
//! exports with their core function types, custom section names and memory exports;
//! and from those the ABI and tark world it speaks. `plugin info` and `plugin check`
//! use it; [`detect_abi`] / [`detect_world`] answer the same questions for a compiled
//! module (the engine's path).

use wasmer::{FunctionType, Module, Type};
use wasmparser::{CompositeInnerType, ExternalKind, Parser, Payload, RefType, TypeRef, ValType};

use crate::abi::canonical::contract::{Contract, PACKAGE};
use crate::abi::AbiKind;

/// The module could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// Not a valid core module.
    #[error("invalid wasm module: {0}")]
    Invalid(String),
    /// A WebAssembly component, not a core module.
    #[error("a WebAssembly component, not a core module")]
    Component,
    /// A value type the host has no counterpart for (GC references, ...).
    #[error("unsupported value type {0}")]
    UnsupportedType(String),
}

/// What an import or export is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemType {
    /// A function with its core type.
    Function(FunctionType),
    /// A linear memory.
    Memory,
    /// A table.
    Table,
    /// A global.
    Global,
    /// An exception tag.
    Tag,
}

impl ItemType {
    /// Lower-case kind name for messages (`memory`, `table`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            ItemType::Function(_) => "function",
            ItemType::Memory => "memory",
            ItemType::Table => "table",
            ItemType::Global => "global",
            ItemType::Tag => "tag",
        }
    }
}

/// One import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Import module (`tark:storage`, `tark:plugin/http`, `wasi_snapshot_preview1`).
    pub module: String,
    /// Item name.
    pub name: String,
    /// Its type.
    pub ty: ItemType,
}

/// One export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Export name.
    pub name: String,
    /// Its type.
    pub ty: ItemType,
}

/// The declarations of one core module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Imports in declaration order.
    pub imports: Vec<Import>,
    /// Exports in declaration order.
    pub exports: Vec<Export>,
    /// Custom section names in order.
    pub custom_sections: Vec<String>,
}

fn val_type(t: ValType) -> Result<Type, InspectError> {
    Ok(match t {
        ValType::I32 => Type::I32,
        ValType::I64 => Type::I64,
        ValType::F32 => Type::F32,
        ValType::F64 => Type::F64,
        ValType::V128 => Type::V128,
        ValType::Ref(r) if r == RefType::FUNCREF => Type::FuncRef,
        ValType::Ref(r) if r == RefType::EXTERNREF => Type::ExternRef,
        other => return Err(InspectError::UnsupportedType(other.to_string())),
    })
}

impl ModuleInfo {
    /// Read a core module's declarations (no validation of function bodies).
    pub fn parse(bytes: &[u8]) -> Result<Self, InspectError> {
        let invalid = |e: wasmparser::BinaryReaderError| InspectError::Invalid(e.to_string());
        let mut info = ModuleInfo::default();
        // Function types by type index (None for non-function types).
        let mut types: Vec<Option<FunctionType>> = Vec::new();
        // Type index of every function, imported ones first.
        let mut funcs: Vec<u32> = Vec::new();
        let mut raw_exports: Vec<(String, ExternalKind, u32)> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(invalid)? {
                Payload::Version {
                    encoding: wasmparser::Encoding::Component,
                    ..
                } => return Err(InspectError::Component),
                Payload::TypeSection(reader) => {
                    for group in reader {
                        for sub in group.map_err(invalid)?.into_types() {
                            types.push(match &sub.composite_type.inner {
                                CompositeInnerType::Func(f) => {
                                    let params = f
                                        .params()
                                        .iter()
                                        .map(|t| val_type(*t))
                                        .collect::<Result<Vec<_>, _>>()?;
                                    let results = f
                                        .results()
                                        .iter()
                                        .map(|t| val_type(*t))
                                        .collect::<Result<Vec<_>, _>>()?;
                                    Some(FunctionType::new(params, results))
                                }
                                _ => None,
                            });
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(invalid)?;
                        let ty = match import.ty {
                            TypeRef::Func(i) | TypeRef::FuncExact(i) => {
                                funcs.push(i);
                                ItemType::Function(func_type(&types, i)?)
                            }
                            TypeRef::Table(_) => ItemType::Table,
                            TypeRef::Memory(_) => ItemType::Memory,
                            TypeRef::Global(_) => ItemType::Global,
                            TypeRef::Tag(_) => ItemType::Tag,
                        };
                        info.imports.push(Import {
                            module: import.module.to_string(),
                            name: import.name.to_string(),
                            ty,
                        });
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        funcs.push(ty.map_err(invalid)?);
                    }
                }
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let e = export.map_err(invalid)?;
                        raw_exports.push((e.name.to_string(), e.kind, e.index));
                    }
                }
                Payload::CustomSection(reader) => {
                    info.custom_sections.push(reader.name().to_string());
                }
                _ => {}
            }
        }
        for (name, kind, index) in raw_exports {
            let ty = match kind {
                ExternalKind::Func | ExternalKind::FuncExact => {
                    let ty_index = usize::try_from(index)
                        .ok()
                        .and_then(|i| funcs.get(i))
                        .copied()
                        .ok_or_else(|| {
                            InspectError::Invalid(format!("export {name}: no function {index}"))
                        })?;
                    ItemType::Function(func_type(&types, ty_index)?)
                }
                ExternalKind::Table => ItemType::Table,
                ExternalKind::Memory => ItemType::Memory,
                ExternalKind::Global => ItemType::Global,
                ExternalKind::Tag => ItemType::Tag,
            };
            info.exports.push(Export { name, ty });
        }
        Ok(info)
    }

    /// The core type of the exported function `name`.
    pub fn exported_function(&self, name: &str) -> Option<&FunctionType> {
        self.exports.iter().find_map(|e| match &e.ty {
            ItemType::Function(f) if e.name == name => Some(f),
            _ => None,
        })
    }

    /// Does the module export its memory as `memory`?
    pub fn has_memory_export(&self) -> bool {
        self.exports
            .iter()
            .any(|e| e.name == "memory" && e.ty == ItemType::Memory)
    }

    /// Which ABI the module speaks.
    pub fn abi(&self) -> AbiKind {
        abi_of(
            self.exports.iter().map(|e| e.name.as_str()),
            self.imports.iter().map(|i| i.module.as_str()),
        )
    }

    /// The tark world a canonical module was built for.
    pub fn world(&self) -> Option<String> {
        world_of(
            &self.custom_sections,
            self.exports.iter().map(|e| e.name.as_str()),
        )
    }
}

fn func_type(types: &[Option<FunctionType>], index: u32) -> Result<FunctionType, InspectError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| types.get(i))
        .and_then(Clone::clone)
        .ok_or_else(|| InspectError::Invalid(format!("type {index} is not a function type")))
}

/// Which ABI a compiled module speaks (the rule is [`abi_of`]).
pub fn detect_abi(module: &Module) -> AbiKind {
    let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    let imports: Vec<String> = module.imports().map(|i| i.module().to_string()).collect();
    abi_of(
        exports.iter().map(String::as_str),
        imports.iter().map(String::as_str),
    )
}

/// The tark world a compiled canonical module was built for (the rule is [`world_of`]).
pub fn detect_world(custom_sections: &[String], module: &Module) -> Option<String> {
    let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
    world_of(custom_sections, exports.iter().map(String::as_str))
}

/// The ABI of a module with these export names and import modules: canonical when it
/// exports or imports `tark:plugin/...` or exports `cabi_realloc`.
pub fn abi_of<'a>(
    mut exports: impl Iterator<Item = &'a str> + Clone,
    mut import_modules: impl Iterator<Item = &'a str>,
) -> AbiKind {
    let canonical = exports.clone().any(|e| e.starts_with("tark:plugin/"))
        || import_modules.any(|m| m.starts_with("tark:plugin/"))
        || exports.any(|e| e == "cabi_realloc");
    if canonical {
        AbiKind::Canonical
    } else {
        AbiKind::Legacy
    }
}

/// The tark world of a canonical module: from its
/// `component-type:wit-bindgen:<ver>:tark:plugin:<world>:encoded world` custom section
/// when present, else from the interfaces it exports.
pub fn world_of<'a>(
    custom_sections: &[String],
    exports: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let contract = Contract::get();
    for name in custom_sections {
        let Some(rest) = name.strip_prefix("component-type:") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(':').collect();
        // wit-bindgen:<version>:<namespace>:<package>:<world>:encoded world
        if let [_, _, ns, pkg, world, ..] = parts.as_slice() {
            if format!("{ns}:{pkg}") == PACKAGE && contract.worlds.contains_key(*world) {
                return Some((*world).to_string());
            }
        }
    }
    let mut exported: Vec<String> = exports
        .filter_map(|e| {
            e.strip_prefix("tark:plugin/")
                .and_then(|r| r.split('#').next())
                .map(str::to_string)
        })
        .collect();
    exported.sort();
    exported.dedup();
    contract
        .worlds
        .values()
        .find(|w| {
            let mut ex = w.exports.clone();
            ex.sort();
            !ex.is_empty() && ex == exported
        })
        .map(|w| w.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_read_without_compiling() {
        let wasm = wat::parse_str(
            r#"(module
                (import "tark:storage" "get" (func (param i32 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "alloc") (param i32) (result i32) i32.const 0)
                (func (export "provider_info") (param i32) (result i32) i32.const 0))"#,
        )
        .unwrap();
        let info = ModuleInfo::parse(&wasm).unwrap();
        assert_eq!(info.imports.len(), 1);
        assert!(info.has_memory_export());
        assert_eq!(
            info.exported_function("provider_info"),
            Some(&FunctionType::new(vec![Type::I32], vec![Type::I32]))
        );
        assert_eq!(info.abi(), AbiKind::Legacy);
        assert_eq!(info.world(), None);
        let canon = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
                (func (export "tark:plugin/hook-plugin#name") (result i32) i32.const 0))"#,
        )
        .unwrap();
        let info = ModuleInfo::parse(&canon).unwrap();
        assert_eq!(info.abi(), AbiKind::Canonical);
        assert_eq!(info.world().as_deref(), Some("hook-world"));
        assert!(ModuleInfo::parse(b"\0asm\x01\0\0\0\x01").is_err());
    }
}
