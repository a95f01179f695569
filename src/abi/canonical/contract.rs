//! The tark WIT contract (`wit/`, embedded at build time) parsed once per process into
//! [`Ty`]s: every interface function's parameter and result types, and every world's
//! imports and exports. Host imports, export calls, link checks and the JSON mapping
//! all read their types from here, so each type is described exactly once: in WIT.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use wit_parser::{Resolve, Type, TypeDefKind, WorldItem, WorldKey};

use super::types::{Flat, Ty};

/// The WIT package name of the contract.
pub const PACKAGE: &str = "tark:plugin";

const SOURCES: &[(&str, &str)] = &[
    ("tark.wit", include_str!("../../../wit/tark.wit")),
    ("hook.wit", include_str!("../../../wit/hook.wit")),
    (
        "conformance.wit",
        include_str!("../../../wit/conformance.wit"),
    ),
];

/// One function of an interface.
#[derive(Debug, Clone)]
pub struct FuncSig {
    /// Kebab-case name.
    pub name: String,
    /// Parameters (name, type).
    pub params: Vec<(String, Ty)>,
    /// Result type, if any.
    pub result: Option<Ty>,
    /// The signature as the WIT spells it, with type names
    /// (`func(messages: list<message>, model: string) -> result<chat-response, string>`).
    pub wit: String,
}

impl FuncSig {
    /// Flat parameter types as seen by the callee's core signature (before spilling).
    pub fn flat_params(&self) -> Vec<Flat> {
        let mut v = Vec::new();
        for (_, t) in &self.params {
            t.flatten(&mut v);
        }
        v
    }

    /// Flat result types (before spilling).
    pub fn flat_results(&self) -> Vec<Flat> {
        self.result.as_ref().map(Ty::flat).unwrap_or_default()
    }

    /// The parameters as one tuple type (how they are stored when spilled to memory).
    pub fn params_tuple(&self) -> Ty {
        Ty::Tuple(self.params.iter().map(|(_, t)| t.clone()).collect())
    }

    /// Core signature of the import a guest declares for this function
    /// (params spilled past 16 flat values; results past 1 go through a retptr).
    pub fn import_signature(&self) -> wasmer::FunctionType {
        let mut params: Vec<wasmer::Type> = if self.flat_params().len() > MAX_FLAT_PARAMS {
            vec![wasmer::Type::I32]
        } else {
            self.flat_params().into_iter().map(Flat::wasm).collect()
        };
        let results = self.flat_results();
        let results: Vec<wasmer::Type> = if results.len() > MAX_FLAT_RESULTS {
            params.push(wasmer::Type::I32);
            Vec::new()
        } else {
            results.into_iter().map(Flat::wasm).collect()
        };
        wasmer::FunctionType::new(params, results)
    }

    /// Core signature of the export a guest defines for this function.
    pub fn export_signature(&self) -> wasmer::FunctionType {
        let params: Vec<wasmer::Type> = if self.flat_params().len() > MAX_FLAT_PARAMS {
            vec![wasmer::Type::I32]
        } else {
            self.flat_params().into_iter().map(Flat::wasm).collect()
        };
        let results = self.flat_results();
        let results: Vec<wasmer::Type> = if results.len() > MAX_FLAT_RESULTS {
            vec![wasmer::Type::I32]
        } else {
            results.into_iter().map(Flat::wasm).collect()
        };
        wasmer::FunctionType::new(params, results)
    }
}

/// The canonical ABI's MAX_FLAT_PARAMS.
pub const MAX_FLAT_PARAMS: usize = 16;
/// The canonical ABI's MAX_FLAT_RESULTS.
pub const MAX_FLAT_RESULTS: usize = 1;

/// A world: the interfaces it imports and exports (unqualified names).
#[derive(Debug, Clone)]
pub struct WorldSig {
    /// World name, e.g. `auth-world`.
    pub name: String,
    /// Imported interface names.
    pub imports: Vec<String>,
    /// Exported interface names.
    pub exports: Vec<String>,
}

/// The parsed contract.
#[derive(Debug)]
pub struct Contract {
    /// Interfaces by name: functions by name.
    pub interfaces: BTreeMap<String, BTreeMap<String, FuncSig>>,
    /// Worlds by name.
    pub worlds: BTreeMap<String, WorldSig>,
}

impl Contract {
    /// The contract of this build (parsed on first use).
    pub fn get() -> &'static Contract {
        static C: OnceLock<Contract> = OnceLock::new();
        C.get_or_init(|| match Contract::parse() {
            Ok(c) => c,
            // The WIT is part of this crate and checked by its tests; failing here is a
            // build defect, not something a plugin or user can cause.
            Err(e) => panic!("the embedded WIT contract does not parse: {e}"),
        })
    }

    /// A function of an interface.
    pub fn func(&self, interface: &str, func: &str) -> Option<&FuncSig> {
        self.interfaces.get(interface)?.get(func)
    }

    fn parse() -> Result<Contract, String> {
        let mut resolve = Resolve::default();
        let mut map = wit_parser::SourceMap::default();
        for (path, text) in SOURCES {
            map.push_str(path, *text);
        }
        let group = map.parse().map_err(|(_, e)| format!("{e}"))?;
        let pkg = resolve.push_group(group).map_err(|e| format!("{e:#}"))?;
        let mut interfaces = BTreeMap::new();
        let package = &resolve.packages[pkg];
        for (name, id) in &package.interfaces {
            let iface = &resolve.interfaces[*id];
            let mut funcs = BTreeMap::new();
            for (fname, f) in &iface.functions {
                let params = f
                    .params
                    .iter()
                    .map(|p| Ok((p.name.clone(), ty_of(&resolve, &p.ty)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                let result = match &f.result {
                    Some(t) => Some(ty_of(&resolve, t)?),
                    None => None,
                };
                let wit = format!(
                    "func({}){}",
                    f.params
                        .iter()
                        .map(|p| format!("{}: {}", p.name, wit_name(&resolve, &p.ty)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    f.result
                        .as_ref()
                        .map(|t| format!(" -> {}", wit_name(&resolve, t)))
                        .unwrap_or_default()
                );
                funcs.insert(
                    fname.clone(),
                    FuncSig {
                        name: fname.clone(),
                        params,
                        result,
                        wit,
                    },
                );
            }
            interfaces.insert(name.clone(), funcs);
        }
        let mut worlds = BTreeMap::new();
        for (name, id) in &package.worlds {
            let w = &resolve.worlds[*id];
            let names = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| -> Vec<String> {
                items
                    .iter()
                    .filter_map(|(_, item)| match item {
                        WorldItem::Interface { id, .. } => resolve.interfaces[*id].name.clone(),
                        _ => None,
                    })
                    .collect()
            };
            worlds.insert(
                name.clone(),
                WorldSig {
                    name: name.clone(),
                    imports: names(&w.imports),
                    exports: names(&w.exports),
                },
            );
        }
        Ok(Contract { interfaces, worlds })
    }
}

/// A type as the WIT source names it: named types by name, anonymous ones spelled out.
fn wit_name(resolve: &Resolve, t: &Type) -> String {
    let Type::Id(id) = t else {
        return match t {
            Type::Bool => "bool",
            Type::U8 => "u8",
            Type::U16 => "u16",
            Type::U32 => "u32",
            Type::U64 => "u64",
            Type::S8 => "s8",
            Type::S16 => "s16",
            Type::S32 => "s32",
            Type::S64 => "s64",
            Type::F32 => "f32",
            Type::F64 => "f64",
            Type::Char => "char",
            Type::String => "string",
            _ => "error-context",
        }
        .to_string();
    };
    let def = &resolve.types[*id];
    if let Some(name) = &def.name {
        return name.clone();
    }
    let opt = |t: &Option<Type>| {
        t.as_ref()
            .map(|t| wit_name(resolve, t))
            .unwrap_or_else(|| "_".into())
    };
    match &def.kind {
        TypeDefKind::List(t) => format!("list<{}>", wit_name(resolve, t)),
        TypeDefKind::Option(t) => format!("option<{}>", wit_name(resolve, t)),
        TypeDefKind::Tuple(tt) => format!(
            "tuple<{}>",
            tt.types
                .iter()
                .map(|t| wit_name(resolve, t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (ok, None) => format!("result<{}>", opt(ok)),
            (ok, err) => format!("result<{}, {}>", opt(ok), opt(err)),
        },
        TypeDefKind::Type(t) => wit_name(resolve, t),
        other => other.as_str().to_string(),
    }
}

fn ty_of(resolve: &Resolve, t: &Type) -> Result<Ty, String> {
    Ok(match t {
        Type::Bool => Ty::Bool,
        Type::U8 => Ty::U8,
        Type::U16 => Ty::U16,
        Type::U32 => Ty::U32,
        Type::U64 => Ty::U64,
        Type::S8 => Ty::S8,
        Type::S16 => Ty::S16,
        Type::S32 => Ty::S32,
        Type::S64 => Ty::S64,
        Type::F32 => Ty::F32,
        Type::F64 => Ty::F64,
        Type::Char => Ty::Char,
        Type::String => Ty::String,
        Type::ErrorContext => return Err("error-context is not supported".into()),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match &def.kind {
                TypeDefKind::Record(r) => Ty::Record(
                    r.fields
                        .iter()
                        .map(|f| Ok((f.name.clone(), ty_of(resolve, &f.ty)?)))
                        .collect::<Result<_, String>>()?,
                ),
                TypeDefKind::Tuple(t) => Ty::Tuple(
                    t.types
                        .iter()
                        .map(|t| ty_of(resolve, t))
                        .collect::<Result<_, _>>()?,
                ),
                TypeDefKind::Variant(v) => Ty::Variant(
                    v.cases
                        .iter()
                        .map(|c| {
                            Ok((
                                c.name.clone(),
                                match &c.ty {
                                    Some(t) => Some(ty_of(resolve, t)?),
                                    None => None,
                                },
                            ))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                TypeDefKind::Enum(e) => Ty::Enum(e.cases.iter().map(|c| c.name.clone()).collect()),
                TypeDefKind::Option(t) => Ty::Option(Box::new(ty_of(resolve, t)?)),
                TypeDefKind::Result(r) => Ty::Result(
                    match &r.ok {
                        Some(t) => Some(Box::new(ty_of(resolve, t)?)),
                        None => None,
                    },
                    match &r.err {
                        Some(t) => Some(Box::new(ty_of(resolve, t)?)),
                        None => None,
                    },
                ),
                TypeDefKind::List(t) => Ty::List(Box::new(ty_of(resolve, t)?)),
                TypeDefKind::Type(t) => ty_of(resolve, t)?,
                other => return Err(format!("WIT type kind {} is not supported", other.as_str())),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_has_every_interface_and_world() {
        let c = Contract::get();
        for iface in [
            "storage",
            "http",
            "ws",
            "env",
            "log",
            "fs",
            "auth-plugin",
            "tool-plugin",
            "provider-plugin",
            "channel-plugin",
            "hook-plugin",
            "conformance",
            "conformance-host",
        ] {
            assert!(c.interfaces.contains_key(iface), "{iface}");
        }
        assert_eq!(c.worlds["channel-world"].exports, vec!["channel-plugin"]);
        assert!(c.worlds["channel-world"]
            .imports
            .contains(&"ws".to_string()));
        // Verified against a wit-bindgen 0.36 build (canonical ABI spec).
        let get = c.func("storage", "get").expect("storage.get");
        assert_eq!(
            get.import_signature(),
            wasmer::FunctionType::new(
                vec![wasmer::Type::I32, wasmer::Type::I32, wasmer::Type::I32],
                vec![]
            )
        );
        let name = c.func("auth-plugin", "display-name").expect("display-name");
        assert_eq!(
            name.export_signature(),
            wasmer::FunctionType::new(vec![], vec![wasmer::Type::I32])
        );
        let many = c.func("conformance", "many-params").expect("many-params");
        assert!(many.flat_params().len() > MAX_FLAT_PARAMS);
        assert_eq!(
            many.export_signature(),
            wasmer::FunctionType::new(vec![wasmer::Type::I32], vec![wasmer::Type::I32])
        );
    }
}
