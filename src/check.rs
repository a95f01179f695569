//! The analysis behind `plugin check <PATH|ID>`: everything that would stop a plugin from
//! loading or working on this host, found before it is installed or called.
//!
//! Reported: manifest errors and warnings; ABI (legacy / canonical) and world; exports
//! missing or mistyped for the plugin's type (legacy: the table in
//! `src/plugin/functions.rs`; canonical: every function of the world's exported
//! interface, typed by the WIT contract); imports the host does not provide; host
//! services used versus declared capabilities; wasm features the module needs; whether
//! it compiles on each compiler and how long that takes; size.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmer::{FunctionType, Module, Type};

use crate::abi::canonical::contract::Contract;
use crate::abi::canonical::instance::export_name;
use crate::abi::{check_imports, signature_string, world_for_type, AbiKind};
use crate::engine::{is_component, Compiler, WasmEngine};
use crate::inspect::{ItemType, ModuleInfo};
use crate::manifest::{printable, PluginManifest, PluginType, MANIFEST_FILE};
use crate::plugin::functions::{self, Need};

/// One compiler's result.
#[derive(Debug, Clone)]
pub struct CompileResult {
    /// The compiler.
    pub compiler: Compiler,
    /// Compile time in milliseconds, when it compiled.
    pub millis: Option<f64>,
    /// The compiler's error, when it did not.
    pub error: Option<String>,
}

/// Everything `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Plugin directory.
    pub dir: PathBuf,
    /// Plugin id, when the manifest parsed.
    pub id: Option<String>,
    /// Manifest type.
    pub plugin_type: Option<PluginType>,
    /// Module path.
    pub wasm: Option<PathBuf>,
    /// Module size in bytes.
    pub size: Option<u64>,
    /// Detected ABI.
    pub abi: Option<AbiKind>,
    /// Detected world (canonical).
    pub world: Option<String>,
    /// World the manifest type needs (canonical).
    pub expected_world: Option<String>,
    /// Wasm features the module cannot do without.
    pub features: Vec<&'static str>,
    /// Per-compiler results.
    pub compilers: Vec<CompileResult>,
    /// Host services the module imports (`http`, `storage`, ...), plus `wasi`.
    pub imports: Vec<String>,
    /// Expected exports that are present with the right type.
    pub exports_ok: Vec<String>,
    /// Problems that stop the plugin from loading or working.
    pub errors: Vec<String>,
    /// Things that probably are mistakes.
    pub warnings: Vec<String>,
    /// Information (optional exports absent, ...).
    pub notes: Vec<String>,
}

/// Check the plugin in `dir` (never fails: problems are in the report), compiling it
/// with every available compiler; only the default compiler's failure is an error.
pub fn analyze(dir: &Path) -> Report {
    analyze_with(dir, &Compiler::available(), Compiler::default())
}

/// The checks `plugin add` and `plugin update` run before installing: as [`analyze`],
/// compiling with `compiler` only (the one the plugin will run on).
pub fn analyze_for_install(dir: &Path, compiler: Compiler) -> Report {
    analyze_with(dir, &[compiler], compiler)
}

/// A module that does not even parse, in one line: "not a WebAssembly module" when the
/// magic number is wrong (no hex dump), else the parser's first line.
pub fn module_error_line(bytes: &[u8], error: &str) -> String {
    if !bytes.starts_with(b"\0asm") {
        let head: String = bytes
            .iter()
            .take(8)
            .map(|b| match *b {
                0x20..=0x7e => char::from(*b).to_string(),
                other => format!("\\x{other:02x}"),
            })
            .collect();
        return format!(
            "not a WebAssembly module: it starts with \"{head}\", not the wasm magic number \"\\0asm\""
        );
    }
    let first = error.lines().next().unwrap_or(error).trim();
    let mut line: String = first.chars().take(200).collect();
    if first.chars().count() > 200 {
        line.push_str("...");
    }
    line
}

fn analyze_with(dir: &Path, compilers: &[Compiler], primary: Compiler) -> Report {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir = abs.as_path();
    let mut r = Report {
        dir: abs.clone(),
        ..Report::default()
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        r.errors.push(format!(
            "No {MANIFEST_FILE} found in {} (a plugin directory holds {MANIFEST_FILE} and the wasm module it names)",
            dir.display()
        ));
        return r;
    }
    // Every manifest error and warning at once (unknown keys included).
    let diagnosis = PluginManifest::diagnose(&manifest_path);
    r.errors.extend(diagnosis.errors);
    r.warnings.extend(diagnosis.warnings);
    let Some(manifest) = diagnosis.manifest else {
        return r;
    };
    r.id = Some(manifest.id().to_string());
    r.plugin_type = Some(manifest.plugin_type());
    let wasm_path = match manifest.wasm_path(dir) {
        Ok(p) => p,
        Err(e) => {
            r.errors.push(e.to_string());
            return r;
        }
    };
    r.wasm = Some(wasm_path.clone());
    if !wasm_path.is_file() {
        r.errors.push(format!(
            "WASM module not found: {}\nDid you forget to build the plugin?",
            wasm_path.display()
        ));
        return r;
    }
    let bytes = match std::fs::read(&wasm_path) {
        Ok(b) => b,
        Err(e) => {
            r.errors
                .push(format!("Failed to read {}: {e}", wasm_path.display()));
            return r;
        }
    };
    r.size = u64::try_from(bytes.len()).ok();
    if is_component(&bytes) {
        r.errors.push(format!(
            "{} is a WebAssembly component; tark plugins are core modules (build for wasm32-wasip1 without componentizing)",
            wasm_path.display()
        ));
        return r;
    }
    // Before anything compiles it: a compile-time bomb is an error, not a hang.
    if let Err(e @ crate::engine::bounds::BoundsError::TooComplex { .. }) =
        crate::engine::bounds::check_module_bounds(&bytes)
    {
        r.errors.push(format!("{}: {e}", wasm_path.display()));
        return r;
    }
    match needed_features(&bytes) {
        Ok(f) => r.features = f,
        Err(e) => {
            r.errors.push(format!(
                "Invalid wasm module: {}",
                module_error_line(&bytes, &e)
            ));
            return r;
        }
    }
    let mut module: Option<Module> = None;
    for &compiler in compilers {
        let result = compile_with(compiler, &bytes);
        match result {
            Ok((m, millis)) => {
                r.compilers.push(CompileResult {
                    compiler,
                    millis: Some(millis),
                    error: None,
                });
                if module.is_none() {
                    module = Some(m);
                }
            }
            Err(e) => {
                let text = format!(
                    "Does not compile with {compiler}: {}",
                    module_error_line(&bytes, &e)
                );
                if compiler == primary {
                    r.errors.push(text);
                } else {
                    r.warnings.push(format!(
                        "{text} (loading it with --compiler {compiler} will fail)"
                    ));
                }
                r.compilers.push(CompileResult {
                    compiler,
                    millis: None,
                    error: Some(e),
                });
            }
        }
    }
    let Some(module) = module else {
        return r;
    };
    let info = match ModuleInfo::parse(&bytes) {
        Ok(info) => info,
        Err(e) => {
            r.errors.push(format!("Invalid wasm module: {e}"));
            return r;
        }
    };
    let abi = info.abi();
    r.abi = Some(abi);
    match abi {
        AbiKind::Legacy => check_legacy(&manifest, &module, &info, &mut r),
        AbiKind::Canonical => check_canonical(&manifest, &module, &info, &mut r),
    }
    check_capabilities(&manifest, &info, abi, &mut r);
    r
}

/// Compile on a fresh engine (so the time is a real compile, not a cache hit).
fn compile_with(compiler: Compiler, bytes: &[u8]) -> Result<(Module, f64), String> {
    let engine = WasmEngine::new(compiler).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let module = Module::new(engine.engine(), bytes).map_err(|e| e.to_string())?;
    Ok((module, start.elapsed().as_secs_f64() * 1000.0))
}

/// The wasm features a module cannot be validated without: for each proposal, validate
/// with everything enabled except it; a failure means the module uses it.
pub fn needed_features(bytes: &[u8]) -> Result<Vec<&'static str>, String> {
    use wasmparser::{Validator, WasmFeatures as F};
    let all = F::all();
    Validator::new_with_features(all)
        .validate_all(bytes)
        .map_err(|e| e.to_string())?;
    let candidates: [(&str, F); 18] = [
        ("mutable-global", F::MUTABLE_GLOBAL),
        ("saturating-float-to-int", F::SATURATING_FLOAT_TO_INT),
        ("sign-extension", F::SIGN_EXTENSION),
        ("multi-value", F::MULTI_VALUE),
        ("bulk-memory", F::BULK_MEMORY),
        ("reference-types", F::REFERENCE_TYPES),
        ("simd", F::SIMD),
        ("relaxed-simd", F::RELAXED_SIMD),
        ("threads", F::THREADS.union(F::SHARED_EVERYTHING_THREADS)),
        ("tail-call", F::TAIL_CALL),
        ("multi-memory", F::MULTI_MEMORY),
        ("exceptions", F::EXCEPTIONS.union(F::LEGACY_EXCEPTIONS)),
        ("memory64", F::MEMORY64),
        ("extended-const", F::EXTENDED_CONST),
        ("function-references", F::FUNCTION_REFERENCES),
        ("gc", F::GC),
        ("wide-arithmetic", F::WIDE_ARITHMETIC),
        ("custom-page-sizes", F::CUSTOM_PAGE_SIZES),
    ];
    Ok(candidates
        .into_iter()
        .filter(|(_, flag)| {
            Validator::new_with_features(all.difference(*flag))
                .validate_all(bytes)
                .is_err()
        })
        .map(|(name, _)| name)
        .collect())
}

fn ft(params: &[Type], results: &[Type]) -> FunctionType {
    FunctionType::new(params.to_vec(), results.to_vec())
}

/// Compare one expected export; returns whether it is present and well-typed.
fn expect_export(
    info: &ModuleInfo,
    name: &str,
    expected: &FunctionType,
) -> Result<(), Option<String>> {
    match info.exports.iter().find(|e| e.name == name).map(|e| &e.ty) {
        None => Err(None),
        Some(ItemType::Function(found)) if found == expected => Ok(()),
        Some(ItemType::Function(found)) => Err(Some(signature_string(found))),
        Some(_) => Err(Some("not a function".to_string())),
    }
}

fn check_legacy(manifest: &PluginManifest, module: &Module, info: &ModuleInfo, r: &mut Report) {
    use Type::I32;
    let ty = manifest.plugin_type();
    if let Err(e) = check_imports(module, &crate::abi::legacy::imports::provided_signature) {
        r.errors.push(format!("Cannot be linked: {e}"));
    }
    let table: Vec<_> = functions::legacy_exports(ty)
        .map(|l| (l.name, l.convention.core_signature(), l.need, l.used_for))
        .collect();
    if table.is_empty() {
        r.warnings.push(format!(
            "tark never calls legacy {ty} plugins (it defines no exports for them); build against {} with wit-bindgen so this host can call it",
            world_for_type(ty)
        ));
        return;
    }
    if info.has_memory_export() {
        r.exports_ok.push("memory".into());
    } else {
        r.errors
            .push("Missing export 'memory': every string call needs the plugin's memory".into());
    }
    let core: [(&str, FunctionType, Need); 2] = [
        ("alloc", ft(&[I32], &[I32]), Need::Required),
        ("dealloc", ft(&[I32, I32], &[]), Need::Optional),
    ];
    let all = core
        .into_iter()
        .map(|(n, f, need)| (n, f, need, "buffers"))
        .chain(table);
    for (name, sig, need, used_for) in all {
        match expect_export(info, name, &sig) {
            Ok(()) => r.exports_ok.push(name.to_string()),
            Err(Some(found)) => r.errors.push(format!(
                "Export '{name}' has signature {found}, expected {}: tark looks exports up by name and type and would report \"Plugin does not export '{name}' function\"",
                signature_string(&sig)
            )),
            Err(None) => {
                let text = format!("Missing export '{name}' {} (used for {used_for})", signature_string(&sig));
                match need {
                    Need::Required => r.errors.push(text),
                    Need::Recommended => r.warnings.push(text),
                    Need::Optional if name == "dealloc" => r.notes.push(
                        "No 'dealloc' export: the host cannot free the buffers it allocates (they live until the instance is dropped)".into(),
                    ),
                    Need::Optional => r.notes.push(format!("Optional export '{name}' not present ({used_for})")),
                }
            }
        }
    }
}

fn check_canonical(manifest: &PluginManifest, module: &Module, info: &ModuleInfo, r: &mut Report) {
    let ty = manifest.plugin_type();
    if let Err(e) = check_imports(module, &crate::abi::canonical::imports::provided_signature) {
        r.errors.push(format!("Cannot be linked: {e}"));
    }
    let expected = world_for_type(ty);
    r.expected_world = Some(expected.to_string());
    r.world = info.world();
    match &r.world {
        Some(w) if w == expected => {}
        Some(w) if w.starts_with("conformance") => r.warnings.push(format!(
            "Built for the test world {w}, not {expected} (the world of type '{ty}')"
        )),
        Some(w) => r.errors.push(format!(
            "Built for world {w}, but [plugin] type '{ty}' needs {expected}: fix the type in {MANIFEST_FILE} or rebuild against {expected}"
        )),
        None => r.warnings.push(format!(
            "Could not tell which world the module was built for (no component-type section and its exports match no world); expected {expected}"
        )),
    }
    let contract = Contract::get();
    if info.has_memory_export() {
        r.exports_ok.push("memory".into());
    } else {
        r.errors
            .push("Missing export 'memory' (wit-bindgen plugins always export it)".into());
    }
    let realloc = ft(&[Type::I32; 4], &[Type::I32]);
    match expect_export(info, "cabi_realloc", &realloc) {
        Ok(()) => r.exports_ok.push("cabi_realloc".into()),
        Err(found) => r.errors.push(format!(
            "Export 'cabi_realloc' {}: the host needs it to pass strings and lists",
            found
                .map(|f| format!("has signature {f}, expected {}", signature_string(&realloc)))
                .unwrap_or_else(|| "is missing".into())
        )),
    }
    // A test world is checked against its own exports; everything else against the
    // world its manifest type needs.
    let world_name = match &r.world {
        Some(w) if w.starts_with("conformance") => w.clone(),
        _ => expected.to_string(),
    };
    let Some(world) = contract.worlds.get(&world_name) else {
        r.errors
            .push(format!("The host's WIT contract has no world {world_name}"));
        return;
    };
    for iface in &world.exports {
        let Some(funcs) = contract.interfaces.get(iface) else {
            continue;
        };
        for (fname, sig) in funcs {
            let name = export_name(iface, fname);
            let want = sig.export_signature();
            match expect_export(info, &name, &want) {
                Ok(()) => r.exports_ok.push(name.clone()),
                Err(Some(found)) => r.errors.push(format!(
                    "Export '{name}' has signature {found}, expected {} (built against another version of the tark WIT?)",
                    signature_string(&want)
                )),
                Err(None) => r.errors.push(format!(
                    "Missing export '{name}' {}: every function of {iface} must be implemented",
                    signature_string(&want)
                )),
            }
            if sig.result.as_ref().is_some_and(|t| t.owns_memory())
                && info.exports.iter().any(|e| e.name == name)
                && !info
                    .exports
                    .iter()
                    .any(|e| e.name == format!("cabi_post_{name}"))
            {
                r.errors.push(format!(
                    "Missing export 'cabi_post_{name}': {fname} returns strings or lists, which the host must let the plugin free"
                ));
            }
        }
    }
}

/// Host services a module imports: `http`, `ws`, `storage`, `env`, `fs`, `log`, `wasi`.
fn imported_services(info: &ModuleInfo, abi: AbiKind) -> BTreeSet<String> {
    let prefix = match abi {
        AbiKind::Legacy => "tark:",
        AbiKind::Canonical => "tark:plugin/",
    };
    info.imports
        .iter()
        .filter_map(|i| {
            let m = i.module.as_str();
            if m.starts_with("wasi_") {
                Some("wasi".to_string())
            } else {
                m.strip_prefix(prefix).map(str::to_string)
            }
        })
        .collect()
}

fn check_capabilities(manifest: &PluginManifest, info: &ModuleInfo, abi: AbiKind, r: &mut Report) {
    let caps = &manifest.capabilities;
    let used = imported_services(info, abi);
    r.imports = used.iter().cloned().collect();
    let uses = |s: &str| used.contains(s);
    let imp = |s: &str| match abi {
        AbiKind::Legacy => format!("tark:{s}"),
        AbiKind::Canonical => format!("tark:plugin/{s}"),
    };
    let net = uses("http") || uses("ws");
    if net && caps.http.is_empty() {
        let which = if uses("http") { imp("http") } else { imp("ws") };
        r.errors.push(format!(
            "Imports {which} but declares no [capabilities] http hosts: every request would be refused. Add http = [\"api.example.com\"] to {MANIFEST_FILE}"
        ));
    }
    if !net && !caps.http.is_empty() {
        r.warnings.push(format!(
            "Declares [capabilities] http = [{}] but never imports {} or {}: the capability is unused",
            printable(&caps.http.join(", ")),
            imp("http"),
            imp("ws")
        ));
    }
    if uses("env") && caps.env.is_empty() {
        r.warnings.push(format!(
            "Imports {} but declares no [capabilities] env names: every lookup will find nothing",
            imp("env")
        ));
    }
    if !uses("env") && !caps.env.is_empty() {
        r.warnings.push(format!(
            "Declares [capabilities] env but never imports {}",
            imp("env")
        ));
    }
    if uses("fs") && caps.fs_read.is_empty() {
        r.warnings.push(format!(
            "Imports {} but declares no [capabilities] fs_read paths: every read will be refused",
            imp("fs")
        ));
    }
    if !uses("fs") && !caps.fs_read.is_empty() {
        r.warnings.push(format!(
            "Declares [capabilities] fs_read but never imports {}",
            imp("fs")
        ));
    }
    if uses("storage") && !caps.storage {
        r.warnings.push(format!(
            "Imports {} but does not declare storage = true under [capabilities] (tark does not enforce it, but users should see it)",
            imp("storage")
        ));
    }
}

/// One function a plugin exports, as `plugin info` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportedFunction {
    /// The name `call` knows it by (WIT name, or a raw legacy export).
    pub name: String,
    /// Its WIT signature (raw legacy exports: their string form), empty for exports
    /// that are not tark functions.
    pub signature: String,
    /// The core export that implements it.
    pub export: String,
    /// Present with the expected core type, so `call` can run it.
    pub callable: bool,
    /// Why it is not callable, when it is not.
    pub note: Option<String>,
}

/// Exports that are plumbing, not functions a user calls.
fn is_plumbing(name: &str) -> bool {
    matches!(
        name,
        "alloc" | "dealloc" | "cabi_realloc" | "_initialize" | "_start"
    ) || name.starts_with("cabi_")
        || name.starts_with("__")
}

/// Every function of the plugin's type (present or not, with whether it can be called)
/// and every other function the module exports, for `plugin info`.
pub fn exported_functions(bytes: &[u8], ty: PluginType) -> Result<Vec<ExportedFunction>, String> {
    use crate::plugin::dispatch::callables;
    let info = ModuleInfo::parse(bytes).map_err(|e| module_error_line(bytes, &e.to_string()))?;
    let abi = info.abi();
    let mut rows = Vec::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    match abi {
        AbiKind::Canonical => {
            let iface = info
                .world()
                .filter(|w| w.starts_with("conformance"))
                .and_then(|w| Contract::get().worlds.get(&w)?.exports.first().cloned())
                .unwrap_or_else(|| {
                    Contract::get()
                        .worlds
                        .get(world_for_type(ty))
                        .and_then(|w| w.exports.first().cloned())
                        .unwrap_or_default()
                });
            for c in callables(abi, ty, &iface) {
                let export = export_name(&iface, &c.name);
                let want = Contract::get()
                    .func(&iface, &c.name)
                    .map(|s| s.export_signature());
                let state = match want {
                    Some(want) => expect_export(&info, &export, &want),
                    None => Err(None),
                };
                covered.insert(export.clone());
                rows.push(row(c.name, c.signature, export, state));
            }
        }
        AbiKind::Legacy => {
            for c in callables(abi, ty, "") {
                let Some(f) = functions::find(ty, &c.name) else {
                    continue;
                };
                let Some(l) = f.legacy else {
                    continue;
                };
                if c.name == l.name && f.wit.is_some() {
                    // The raw form of an interface function already listed.
                    continue;
                }
                let state = expect_export(&info, l.name, &l.convention.core_signature());
                covered.insert(l.name.to_string());
                rows.push(row(c.name, c.signature, l.name.to_string(), state));
            }
        }
    }
    for e in &info.exports {
        if let ItemType::Function(sig) = &e.ty {
            if covered.contains(&e.name) || is_plumbing(&e.name) {
                continue;
            }
            rows.push(ExportedFunction {
                name: e.name.clone(),
                signature: signature_string(sig),
                export: e.name.clone(),
                callable: false,
                note: Some(format!("not a function of tark's {ty} interface")),
            });
        }
    }
    Ok(rows)
}

fn row(
    name: String,
    signature: String,
    export: String,
    state: Result<(), Option<String>>,
) -> ExportedFunction {
    let (callable, note) = match state {
        Ok(()) => (true, None),
        Err(None) => (false, Some("not exported".to_string())),
        Err(Some(found)) => (false, Some(format!("exported with another type: {found}"))),
    };
    ExportedFunction {
        name,
        signature,
        export,
        callable,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_found_by_elimination() {
        let plain =
            wat::parse_str("(module (func (export \"f\") (result i32) i32.const 1))").unwrap();
        assert_eq!(needed_features(&plain).unwrap(), Vec::<&str>::new());
        let bulk = wat::parse_str(
            "(module (memory 1) (func (export \"f\") (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))",
        )
        .unwrap();
        assert_eq!(needed_features(&bulk).unwrap(), vec!["bulk-memory"]);
        let simd = wat::parse_str(
            "(module (func (export \"f\") (result v128) (v128.const i32x4 0 0 0 0)))",
        )
        .unwrap();
        assert!(needed_features(&simd).unwrap().contains(&"simd"));
        let sext = wat::parse_str(
            "(module (func (export \"f\") (param i32) (result i32) (i32.extend8_s (local.get 0))))",
        )
        .unwrap();
        assert_eq!(needed_features(&sext).unwrap(), vec!["sign-extension"]);
        assert!(needed_features(b"\0asm\x01\0\0\0\x01").is_err());
    }
}
