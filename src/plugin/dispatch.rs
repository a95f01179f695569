//! Call a plugin function by name with JSON arguments: the engine of
//! `tark-wasmer call`, its sessions and `repl`. Function names are the kebab-case names
//! of the plugin's tark interface (`display-name`, `auth-status`, `chat`, ...); raw legacy
//! export names (`provider_info`, `get_endpoint`, ...) return the plugin's raw text. Both
//! are looked up in [`crate::plugin::functions`].
//!
//! One rule for both ABIs: the arguments are counted and typed against the function's
//! WIT signature (raw legacy exports: their string inputs) before the call; a parameter
//! of type `string` takes free text, every other parameter JSON; a function whose WIT
//! result is a `result` answers `{"ok": v}` or `{"err": e}` whatever the ABI (a legacy
//! failure code becomes the `err`).

use serde_json::Value;

use crate::abi::canonical::contract::Contract;
use crate::abi::canonical::types::{from_json, Ty};
use crate::abi::{world_for_type, AbiKind, CallError};
use crate::error::{Error, Result};
use crate::manifest::PluginType;
use crate::plugin::{functions, Function, PluginInstance};

/// Every interface function name a plugin of `ty` answers to.
pub fn function_names(ty: PluginType) -> Vec<&'static str> {
    functions::wit_names(ty)
}

/// One parameter of a callable function.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name (WIT name, or the legacy input's name).
    pub name: String,
    /// Its type in WIT syntax as the contract names it (`list<message>`); `string` for
    /// the inputs of raw legacy exports.
    pub wit_type: String,
    ty: Option<Ty>,
}

impl Param {
    /// Does it take free text (a `string`) rather than JSON?
    pub fn is_text(&self) -> bool {
        matches!(self.ty, None | Some(Ty::String))
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// A function of the canonical interface.
    Canonical,
    /// A legacy export called for its interface function.
    Function(&'static Function),
    /// A raw legacy export (its text, its code).
    Raw(&'static Function),
}

/// A function `call` can run on a plugin: its name, parameters and what it answers.
#[derive(Debug, Clone)]
pub struct Callable {
    /// The name it is called by.
    pub name: String,
    /// Its parameters, in order.
    pub params: Vec<Param>,
    /// Its WIT signature (`func(stream-id: u64) -> result<stream-chunk, string>`), or the
    /// raw export's form for legacy-only exports.
    pub signature: String,
    /// Does it answer a WIT `result` (`{"ok": v}` / `{"err": e}`)?
    pub returns_result: bool,
    target: Target,
}

impl Callable {
    /// Is `value` (what [`call_args`] returned) the plugin's `err`?
    pub fn is_err(&self, value: &Value) -> bool {
        self.returns_result && value.as_object().is_some_and(|m| m.contains_key("err"))
    }
}

/// The interface a canonical plugin of `ty` exports (its world's first export).
fn interface_of(ty: PluginType) -> Option<&'static str> {
    let world = Contract::get().worlds.get(world_for_type(ty))?;
    world.exports.first().map(String::as_str)
}

fn canonical(iface: &str, name: &str) -> Option<Callable> {
    let sig = Contract::get().func(iface, name)?;
    let (_, wit_params) = split_signature(&sig.wit);
    Some(Callable {
        name: name.to_string(),
        params: sig
            .params
            .iter()
            .zip(
                wit_params
                    .into_iter()
                    .chain(std::iter::repeat(String::new())),
            )
            .map(|((n, t), w)| Param {
                name: n.clone(),
                wit_type: if w.is_empty() { t.to_string() } else { w },
                ty: Some(t.clone()),
            })
            .collect(),
        signature: sig.wit.clone(),
        returns_result: matches!(sig.result, Some(Ty::Result(..))),
        target: Target::Canonical,
    })
}

/// The parameter types of a WIT signature text `func(a: T, b: list<U>) -> R`, split at
/// top-level commas (for the named types `call --help` shows).
fn split_signature(sig: &str) -> (String, Vec<String>) {
    let inner = sig
        .strip_prefix("func(")
        .and_then(|s| s.rfind(')').map(|i| &s[..i]))
        .unwrap_or("");
    let mut parts = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in inner.chars() {
        match c {
            '<' | '{' | '(' => depth += 1,
            '>' | '}' | ')' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        parts.push(cur);
    }
    let types = parts
        .iter()
        .map(|p| {
            p.split_once(':')
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default()
        })
        .collect();
    (inner.to_string(), types)
}

fn raw(f: &'static Function) -> Option<Callable> {
    let l = f.legacy?;
    let params: Vec<Param> = l
        .params
        .iter()
        .map(|n| Param {
            name: n.to_string(),
            wit_type: "string".into(),
            ty: None,
        })
        .collect();
    let result = match l.convention {
        functions::Convention::S | functions::Convention::V | functions::Convention::P => "s32",
        _ => "string",
    };
    Some(Callable {
        name: l.name.to_string(),
        signature: format!(
            "func({}) -> {result}",
            params
                .iter()
                .map(|p| format!("{}: string", p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        params,
        returns_result: false,
        target: Target::Raw(f),
    })
}

fn legacy_function(f: &'static Function) -> Option<Callable> {
    f.legacy?;
    match f
        .wit
        .and_then(|w| canonical(interface_of(f.plugin_type)?, w))
    {
        Some(c) => Some(Callable {
            target: Target::Function(f),
            ..c
        }),
        None => raw(f),
    }
}

/// Every function `call` runs on a plugin of this ABI, type and interface (`iface`: the
/// canonical interface the instance exports; ignored for legacy plugins), in table order:
/// interface names first, then raw legacy export names.
pub fn callables(abi: AbiKind, ty: PluginType, iface: &str) -> Vec<Callable> {
    match abi {
        AbiKind::Canonical => {
            let table: Vec<&str> = functions::wit_names(ty);
            let mut names: Vec<String> = table.iter().map(|s| s.to_string()).collect();
            // Interfaces outside the table (the conformance worlds) in contract order.
            if let Some(funcs) = Contract::get().interfaces.get(iface) {
                for n in funcs.keys() {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                names.retain(|n| funcs.contains_key(n));
            }
            names.iter().filter_map(|n| canonical(iface, n)).collect()
        }
        AbiKind::Legacy => {
            let mut out: Vec<Callable> = functions::of_type(ty)
                .filter(|f| f.wit.is_some())
                .filter_map(legacy_function)
                .collect();
            out.extend(
                functions::of_type(ty)
                    .filter(|f| f.legacy.is_some())
                    .filter_map(raw),
            );
            out
        }
    }
}

/// The closest of `names` to `name`, when one is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .map(|n| (strsim::jaro_winkler(name, n), n))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// The function `name` of a plugin, or an error that lists the available ones (with a
/// "did you mean" when one is close).
pub fn lookup(abi: AbiKind, ty: PluginType, iface: &str, name: &str) -> Result<Callable> {
    let all = callables(abi, ty, iface);
    if let Some(c) = all.iter().find(|c| c.name == name) {
        return Ok(c.clone());
    }
    if abi == AbiKind::Legacy {
        if let Some(f) = functions::by_wit(ty, name) {
            return Err(Error::InvalidArgument(format!(
                "'{name}' is not available for {} plugins of the legacy ABI ({}: its tark interface has no legacy export for it)",
                ty.as_str(),
                f.doc.trim_end_matches('.')
            )));
        }
    }
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    let hint = did_you_mean(name, names.iter().copied())
        .map(|n| format!("\nDid you mean '{n}'?"))
        .unwrap_or_default();
    Err(Error::InvalidArgument(format!(
        "unknown function '{name}' for {} plugins ({} ABI){hint}\nAvailable: {}",
        ty.as_str(),
        abi,
        names.join(", ")
    )))
}

/// "at line L column C: what" of a serde_json error (its text without the position it
/// ends with).
fn at(e: &serde_json::Error) -> String {
    let pos = format!(" at line {} column {}", e.line(), e.column());
    let text = e.to_string();
    format!(
        "at line {} column {}: {}",
        e.line(),
        e.column(),
        text.strip_suffix(&pos).unwrap_or(&text)
    )
}

/// Turn command-line arguments into the function's parameters: the count must match; a
/// text parameter takes the argument as it is (a JSON string literal is unquoted); any
/// other parameter must be valid JSON of its WIT type.
pub fn convert_args(c: &Callable, args: &[String]) -> Result<Vec<Value>> {
    if args.len() != c.params.len() {
        let list = c
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, p.wit_type))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Error::InvalidArgument(format!(
            "'{}' takes {} argument(s) ({}); {} given",
            c.name,
            c.params.len(),
            if list.is_empty() { "none" } else { &list },
            args.len()
        )));
    }
    let mut out = Vec::with_capacity(args.len());
    for (i, (p, a)) in c.params.iter().zip(args).enumerate() {
        let which = format!("argument {} ({}) of '{}'", i + 1, p.name, c.name);
        if p.is_text() {
            let text = match serde_json::from_str::<Value>(a) {
                Ok(Value::String(s)) => s,
                _ => a.clone(),
            };
            out.push(Value::String(text));
            continue;
        }
        let v: Value = serde_json::from_str(a).map_err(|e| {
            Error::InvalidArgument(format!(
                "{which}: invalid JSON {}; expected {}",
                at(&e),
                p.wit_type
            ))
        })?;
        if let Some(ty) = &p.ty {
            from_json(ty, &v)
                .map_err(|e| Error::InvalidArgument(format!("{which}: {}", e.under(&p.name))))?;
        }
        out.push(v);
    }
    Ok(out)
}

/// Call `c` on `inst` with converted arguments; the result as JSON. A legacy failure of a
/// function whose WIT result is a `result` answers `{"err": text}`, as a canonical
/// plugin's `err` does.
pub fn call_callable(inst: &mut PluginInstance, c: &Callable, args: &[Value]) -> Result<Value> {
    let r = match c.target {
        Target::Canonical => inst.call_canonical_json(&c.name, args),
        Target::Function(f) => inst.call_function(f, args),
        Target::Raw(f) => inst.call_legacy_export(f, args),
    };
    match r {
        Err(Error::Call { source, .. })
            if c.returns_result && matches!(c.target, Target::Function(_)) =>
        {
            match source {
                CallError::GuestError {
                    message: Some(m), ..
                } => Ok(serde_json::json!({ "err": m })),
                e @ (CallError::GuestError { .. } | CallError::Missing(_)) => {
                    Ok(serde_json::json!({ "err": e.to_string() }))
                }
                other => Err(Error::Call {
                    plugin: inst.id().to_string(),
                    source: other,
                }),
            }
        }
        other => other,
    }
}

/// Look up `function`, convert `args` (command-line text) and call it.
pub fn call_args(inst: &mut PluginInstance, function: &str, args: &[String]) -> Result<Value> {
    let c = lookup(inst.abi(), inst.plugin_type(), &inst.interface(), function)?;
    let values = convert_args(&c, args)?;
    call_callable(inst, &c, &values)
}

/// Call `function` on `inst` with JSON `args`; the result as JSON.
pub fn call_by_name(inst: &mut PluginInstance, function: &str, args: &[Value]) -> Result<Value> {
    let c = lookup(inst.abi(), inst.plugin_type(), &inst.interface(), function)?;
    call_callable(inst, &c, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_name_their_types() {
        let c = lookup(
            AbiKind::Canonical,
            PluginType::Provider,
            "provider-plugin",
            "chat",
        )
        .unwrap();
        assert_eq!(
            c.signature,
            "func(messages: list<message>, model: string) -> result<chat-response, string>"
        );
        assert_eq!(c.params[0].wit_type, "list<message>");
        assert!(c.returns_result);
        let e = convert_args(
            &c,
            &[
                "[{\"role\":\"robot\",\"content\":\"x\"}]".into(),
                "m".into(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "argument 1 (messages) of 'chat': messages[0].role: unknown case \"robot\"; expected enum { system, user, assistant, tool }"
        );
        let e = convert_args(&c, &["[{\"role\":".into(), "m".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("argument 1 (messages) of 'chat': invalid JSON at line 1 column 9"),
            "{e}"
        );
        // A string parameter takes free text and unquotes a JSON string.
        let v = convert_args(&c, &["[]".into(), "\"m\"".into()]).unwrap();
        assert_eq!(v[1], Value::String("m".into()));
    }

    #[test]
    fn unknown_functions_suggest_the_closest() {
        let e = lookup(AbiKind::Legacy, PluginType::Provider, "", "chatt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Did you mean 'chat'?"), "{e}");
        assert!(e.contains("provider_info"), "{e}");
        assert!(!e.contains("chat-stream-start"), "{e}");
        let e = lookup(
            AbiKind::Legacy,
            PluginType::Provider,
            "",
            "chat-stream-start",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not available"), "{e}");
        assert_eq!(did_you_mean("zzz", ["chat", "info"]), None);
    }
}
