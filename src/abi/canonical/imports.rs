//! Host functions for canonical-ABI plugins: the `tark:plugin/<interface>` imports,
//! defined from the WIT contract and served by the same host services and policy as
//! the legacy ABI. Each import lifts its arguments (checked), calls
//! [`host_call`], and lowers the answer through the guest's `cabi_realloc`.
//!
//! The hot imports (`log.*`, `storage.get`) are typed host functions
//! (`Function::new_typed_with_env`) that read their arguments and write their answer
//! with the typed `Lift`/`Lower` of `typed.rs`, without the dynamic `Val` tree; `log.*`
//! checks the level before reading the message. The others take the dynamic path.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, Module, RuntimeError,
    Store, Value,
};

use super::contract::{Contract, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
use super::lift::{AbiError, FlatIter, Reader, Realloc, Writer};
use super::typed::Lower;
use super::types::{record_by_name, Ty, TypeMismatch, Val};
use crate::abi::memory::check_align;
use crate::abi::panic_message;
use crate::host::wire::{
    parse_headers, ws_connect_envelope, ws_ok_envelope, ws_recv_envelope, ws_send_envelope,
};
use crate::host::{EnvError, FsError, HttpError, HttpMethod, HttpResponse, OwnerId, PluginContext};

/// Per-instance state of the canonical host functions.
pub struct CanonicalEnv {
    /// The plugin's services.
    pub ctx: Arc<PluginContext>,
    /// This instance's id (owner of its WebSocket handles).
    pub owner: OwnerId,
    /// Guest memory, set right after instantiation.
    pub memory: Option<Memory>,
    /// Guest allocator, set right after instantiation.
    pub realloc: Option<Realloc>,
}

/// Import module prefix of the tark interfaces.
pub const IMPORT_PREFIX: &str = "tark:plugin/";

/// The core signature the host provides for `module::name`, if any.
/// Only interfaces some world imports are host interfaces: a module importing a plugin
/// interface (`tark:plugin/auth-plugin`) links against nothing.
pub fn provided_signature(module: &str, name: &str) -> Option<FunctionType> {
    let iface = module.strip_prefix(IMPORT_PREFIX)?;
    let contract = Contract::get();
    if !contract
        .worlds
        .values()
        .any(|w| w.imports.iter().any(|i| i == iface))
    {
        return None;
    }
    contract.func(iface, name).map(FuncSig::import_signature)
}

fn trap(iface: &str, func: &str, msg: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::new(format!(
        "host function {IMPORT_PREFIX}{iface}.{func}: {msg}"
    ))
}

/// Build the imports `module` declares from `tark:plugin/*`.
pub fn canonical_imports(
    store: &mut Store,
    env: &FunctionEnv<CanonicalEnv>,
    module: &Module,
) -> Imports {
    let mut imports = Imports::new();
    let contract = Contract::get();
    for import in module.imports() {
        let Some(iface) = import.module().strip_prefix(IMPORT_PREFIX) else {
            continue;
        };
        let Some(sig) = contract.func(iface, import.name()) else {
            continue;
        };
        let ty = sig.import_signature();
        if let Some(f) = typed_import(store, env, iface, import.name(), &ty) {
            imports.define(import.module(), import.name(), f);
            continue;
        }
        let sig = sig.clone();
        let iface = iface.to_string();
        let f = Function::new_with_env(store, env, ty, move |mut env, args| {
            match catch_unwind(AssertUnwindSafe(|| handle(&mut env, &iface, &sig, args))) {
                Ok(r) => r,
                Err(payload) => {
                    let msg = panic_message(payload.as_ref());
                    log::error!(
                        "[plugin:{}] host function {iface}.{} panicked: {msg}",
                        env.data().ctx.plugin_id,
                        sig.name
                    );
                    Err(trap(&iface, &sig.name, format!("host panic: {msg}")))
                }
            }
        });
        imports.define(import.module(), import.name(), f);
    }
    imports
}

/// The typed host function for `iface.func` when it has one and the contract gives it
/// the core signature it is written for (else None: the dynamic path serves it).
fn typed_import(
    store: &mut Store,
    env: &FunctionEnv<CanonicalEnv>,
    iface: &str,
    func: &str,
    ty: &FunctionType,
) -> Option<Function> {
    use wasmer::Type::I32;
    let mut log = |level| -> Function {
        match level {
            log::Level::Debug => Function::new_typed_with_env(store, env, log_debug),
            log::Level::Info => Function::new_typed_with_env(store, env, log_info),
            log::Level::Warn => Function::new_typed_with_env(store, env, log_warn),
            _ => Function::new_typed_with_env(store, env, log_error),
        }
    };
    let f = match (iface, func) {
        ("log", level) if ty.params() == [I32, I32] && ty.results().is_empty() => {
            log(match level {
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                _ => log::Level::Error,
            })
        }
        ("storage", "get") if ty.params() == [I32, I32, I32] && ty.results().is_empty() => {
            Function::new_typed_with_env(store, env, storage_get)
        }
        _ => return None,
    };
    Some(f)
}

type Env<'a> = FunctionEnvMut<'a, CanonicalEnv>;

/// Run a typed host function body; a host panic becomes a trap for this call.
fn guarded<R>(
    env: &mut Env<'_>,
    iface: &str,
    func: &str,
    body: impl FnOnce(&mut Env<'_>) -> Result<R, RuntimeError>,
) -> Result<R, RuntimeError> {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(r) => r,
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            log::error!(
                "[plugin:{}] host function {iface}.{func} panicked: {msg}",
                env.data().ctx.plugin_id
            );
            Err(trap(iface, func, format!("host panic: {msg}")))
        }
    }
}

/// Copy the guest string `(ptr, len)` out (checked, strict UTF-8, within the read limit).
fn read_arg(env: &Env<'_>, ptr: i32, len: i32) -> Result<String, AbiError> {
    let data = env.data();
    let memory = data.memory.as_ref().ok_or(AbiError::FlatMismatch)?;
    let mut reader = Reader::new(env, memory, data.ctx.limits.guest_read_max);
    reader.read_string(ptr as u32, len as u32)
}

/// Store `value` at the guest's return pointer `ret` (aligned and in bounds), its
/// strings allocated through `cabi_realloc`.
fn store_answer<T: Lower>(env: &mut Env<'_>, ret: i32, value: &T) -> Result<(), AbiError> {
    let ret = ret as u32;
    check_align(ret, T::LAYOUT.align)?;
    let data = env.data();
    let memory = data.memory.clone().ok_or(AbiError::FlatMismatch)?;
    let realloc = data.realloc.clone();
    let mut buf = [0u8; 16];
    let buf = buf
        .get_mut(..T::LAYOUT.size as usize)
        .ok_or(AbiError::FlatMismatch)?;
    let mut writer = Writer::new(env, memory, realloc);
    value.store(&mut writer, buf, 0)?;
    writer.write(ret, buf)
}

fn log_typed(
    env: &mut Env<'_>,
    level: log::Level,
    func: &str,
    mp: i32,
    ml: i32,
) -> Result<(), RuntimeError> {
    // Below the level: the message is never read.
    if !env.data().ctx.log_enabled(level) {
        return Ok(());
    }
    guarded(env, "log", func, |env| {
        let msg = read_arg(env, mp, ml).map_err(|e| trap("log", func, e))?;
        env.data().ctx.log(level, &msg);
        Ok(())
    })
}

fn log_debug(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), RuntimeError> {
    log_typed(&mut env, log::Level::Debug, "debug", mp, ml)
}

fn log_info(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), RuntimeError> {
    log_typed(&mut env, log::Level::Info, "info", mp, ml)
}

fn log_warn(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), RuntimeError> {
    log_typed(&mut env, log::Level::Warn, "warn", mp, ml)
}

fn log_error(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), RuntimeError> {
    log_typed(&mut env, log::Level::Error, "error", mp, ml)
}

/// `storage.get(key) -> option<string>`, answered at the return pointer.
fn storage_get(mut env: Env<'_>, kp: i32, kl: i32, ret: i32) -> Result<(), RuntimeError> {
    guarded(&mut env, "storage", "get", |env| {
        let fail = |e: AbiError| trap("storage", "get", e);
        let key = read_arg(env, kp, kl).map_err(fail)?;
        let ctx = env.data().ctx.clone();
        let value = match ctx.storage_get(&key) {
            Ok(v) => v,
            Err(e) => {
                log::warn!("[plugin:{}] storage.get({key}) failed: {e}", ctx.plugin_id);
                None
            }
        };
        store_answer(env, ret, &value).map_err(fail)
    })
}

fn handle(
    env: &mut FunctionEnvMut<CanonicalEnv>,
    iface: &str,
    sig: &FuncSig,
    args: &[Value],
) -> Result<Vec<Value>, RuntimeError> {
    let fail = |e: AbiError| trap(iface, &sig.name, e);
    let memory = env
        .data()
        .memory
        .clone()
        .ok_or_else(|| trap(iface, &sig.name, "plugin has no memory export"))?;
    let ctx = env.data().ctx.clone();
    let owner = env.data().owner;
    let spilled = sig.flat_params().len() > MAX_FLAT_PARAMS;
    let params: Vec<Val> = {
        let mut reader = Reader::new(&*env, &memory, ctx.limits.guest_read_max);
        if spilled {
            let ptr = match args.first() {
                Some(Value::I32(p)) => *p as u32,
                _ => return Err(fail(AbiError::FlatMismatch)),
            };
            match reader.load(&sig.params_tuple(), ptr).map_err(fail)? {
                Val::Tuple(v) => v,
                _ => return Err(fail(AbiError::FlatMismatch)),
            }
        } else {
            let mut it = FlatIter::new(args);
            sig.params
                .iter()
                .map(|(_, t)| reader.lift_flat(t, &mut it))
                .collect::<Result<_, _>>()
                .map_err(fail)?
        }
    };
    let result = host_call(&ctx, owner, iface, &sig.name, params).map_err(|e| {
        trap(
            iface,
            &sig.name,
            format!("host answer does not fit the contract: {e}"),
        )
    })?;
    let (Some(ty), Some(val)) = (&sig.result, result) else {
        return Ok(Vec::new());
    };
    let realloc = env.data().realloc.clone();
    let n_flat = sig.flat_results().len();
    let retptr = if n_flat > MAX_FLAT_RESULTS {
        match args.last() {
            Some(Value::I32(p)) => Some(*p as u32),
            _ => return Err(fail(AbiError::FlatMismatch)),
        }
    } else {
        None
    };
    let mut writer = Writer::new(env, memory, realloc);
    match retptr {
        Some(p) => {
            writer.store(ty, &val, p).map_err(fail)?;
            Ok(Vec::new())
        }
        None => {
            let mut out = Vec::new();
            writer.lower_flat(ty, &val, &mut out).map_err(fail)?;
            Ok(out)
        }
    }
}

fn s(v: Option<&Val>) -> &str {
    match v {
        Some(Val::String(s)) => s,
        _ => "",
    }
}

fn s64(v: Option<&Val>) -> i64 {
    match v {
        Some(Val::S64(x)) => *x,
        _ => 0,
    }
}

fn pairs(v: Option<&Val>) -> Vec<(String, String)> {
    match v {
        Some(Val::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Val::Tuple(t) => match (t.first(), t.get(1)) {
                    (Some(Val::String(a)), Some(Val::String(b))) => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn unit_result(r: Result<(), String>) -> Val {
    match r {
        Ok(()) => Val::ok(None),
        Err(e) => Val::err(Some(Val::String(e))),
    }
}

/// The `http-response` and `http-error` record types of the contract (`wit/tark.wit`,
/// the result of `http.get` and `http.post`).
fn http_record_types() -> Result<&'static (Ty, Ty), TypeMismatch> {
    static TYPES: OnceLock<Result<(Ty, Ty), TypeMismatch>> = OnceLock::new();
    TYPES
        .get_or_init(|| {
            let result = Contract::get()
                .func("http", "get")
                .and_then(|f| f.result.clone());
            match result {
                Some(Ty::Result(Some(ok), Some(err))) => Ok((*ok, *err)),
                _ => Err(TypeMismatch {
                    ty: "http.get".into(),
                    detail: "expected result<http-response, http-error>".into(),
                    path: String::new(),
                }),
            }
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `ok(http-response)`, its fields set by WIT name.
fn http_response(resp: HttpResponse) -> Result<Val, TypeMismatch> {
    let headers = resp
        .headers
        .into_iter()
        .map(|(k, v)| Val::Tuple(vec![Val::String(k), Val::String(v)]))
        .collect();
    let record = record_by_name(
        &http_record_types()?.0,
        vec![
            ("status", Val::U16(resp.status)),
            ("headers", Val::List(headers)),
            ("body", Val::String(resp.body)),
        ],
    )?;
    Ok(Val::ok(Some(record)))
}

/// `err(http-error)`, its fields set by WIT name.
fn http_error(message: String, status: Option<u16>) -> Result<Val, TypeMismatch> {
    let record = record_by_name(
        &http_record_types()?.1,
        vec![
            ("message", Val::String(message)),
            ("status", Val::Option(status.map(|s| Box::new(Val::U16(s))))),
        ],
    )?;
    Ok(Val::err(Some(record)))
}

/// The host side of every import, on lifted values. `None` for functions without result;
/// an error only when an answer cannot be built as the contract's type (a host defect).
pub fn host_call(
    ctx: &PluginContext,
    owner: OwnerId,
    iface: &str,
    func: &str,
    args: Vec<Val>,
) -> Result<Option<Val>, TypeMismatch> {
    let a = |i: usize| args.get(i);
    Ok(Some(match (iface, func) {
        ("storage", "get") => match ctx.storage_get(s(a(0))) {
            Ok(Some(v)) => Val::some(Val::String(v)),
            Ok(None) => Val::Option(None),
            Err(e) => {
                log::warn!(
                    "[plugin:{}] storage.get({}) failed: {e}",
                    ctx.plugin_id,
                    s(a(0))
                );
                Val::Option(None)
            }
        },
        ("storage", "set") => {
            unit_result(ctx.storage_set(s(a(0)), s(a(1))).map_err(|e| e.to_string()))
        }
        ("storage", "delete") => {
            unit_result(ctx.storage_delete(s(a(0))).map_err(|e| e.to_string()))
        }
        ("storage", "list-keys") => Val::List(
            ctx.storage_list_keys()
                .unwrap_or_else(|e| {
                    log::warn!("[plugin:{}] storage.list-keys failed: {e}", ctx.plugin_id);
                    Vec::new()
                })
                .into_iter()
                .map(Val::String)
                .collect(),
        ),
        ("http", "get") | ("http", "post") => {
            let (method, body, headers) = if func == "get" {
                (HttpMethod::Get, None, pairs(a(1)))
            } else {
                (HttpMethod::Post, Some(s(a(1))), pairs(a(2)))
            };
            let url = s(a(0));
            match ctx.http_request(method, url, &headers, body) {
                Ok(resp) => http_response(resp)?,
                Err(HttpError::Denied(_)) => http_error(
                    format!("permission denied: {url} is not allowed by capabilities.http"),
                    None,
                )?,
                Err(HttpError::Timeout(m)) => http_error(format!("timeout: {m}"), None)?,
                Err(e) => http_error(e.to_string(), None)?,
            }
        }
        ("ws", "connect") => {
            let headers = parse_headers(s(a(1)));
            Val::String(ws_connect_envelope(&ctx.ws_connect(
                owner,
                s(a(0)),
                &headers,
            )))
        }
        ("ws", "send") => {
            let h = u64::try_from(s64(a(0))).unwrap_or(0);
            Val::String(ws_send_envelope(&ctx.ws_send(owner, h, s(a(1)))))
        }
        ("ws", "recv") => {
            let h = u64::try_from(s64(a(0))).unwrap_or(0);
            let timeout = Duration::from_millis(u64::try_from(s64(a(1))).unwrap_or(0));
            let max = usize::try_from(s64(a(2))).unwrap_or(0);
            Val::String(ws_recv_envelope(&ctx.ws_recv(owner, h, timeout, max)))
        }
        ("ws", "close") => {
            ctx.ws_close(owner, u64::try_from(s64(a(0))).unwrap_or(0));
            Val::String(ws_ok_envelope())
        }
        ("env", "get") => match ctx.env_get(s(a(0))) {
            Ok(Some(v)) => Val::some(Val::String(v)),
            Ok(None) | Err(EnvError::Denied(_)) | Err(EnvError::TooLarge { .. }) => {
                Val::Option(None)
            }
        },
        ("log", level) => {
            let level = match level {
                "debug" => log::Level::Debug,
                "info" => log::Level::Info,
                "warn" => log::Level::Warn,
                _ => log::Level::Error,
            };
            ctx.log(level, s(a(0)));
            return Ok(None);
        }
        ("fs", "read") => match ctx.fs_read(s(a(0))) {
            Ok(text) => Val::ok(Some(Val::String(text))),
            Err(FsError::Denied(p)) => Val::err(Some(Val::String(format!(
                "permission denied: {p} is not allowed by capabilities.fs_read"
            )))),
            Err(e) => Val::err(Some(Val::String(e.to_string()))),
        },
        // The conformance test world's host side: echo.
        ("conformance-host", _) => return Ok(args.into_iter().next()),
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_records_are_built_by_field_name() {
        let resp = HttpResponse {
            status: 201,
            headers: vec![("a".into(), "b".into())],
            body: "x".into(),
        };
        let ok = http_response(resp).expect("http-response matches the contract");
        let ty = Contract::get()
            .func("http", "get")
            .and_then(|f| f.result.clone())
            .expect("http.get has a result");
        let json = crate::abi::canonical::types::to_json(&ty, &ok).expect("value fits its type");
        assert_eq!(
            json,
            serde_json::json!({"ok": {"status": 201, "headers": [["a", "b"]], "body": "x"}})
        );
        let err = http_error("no".into(), Some(404)).expect("http-error matches the contract");
        let json = crate::abi::canonical::types::to_json(&ty, &err).expect("value fits its type");
        assert_eq!(
            json,
            serde_json::json!({"err": {"message": "no", "status": 404}})
        );
    }

    #[test]
    fn records_by_name_need_every_field_once() {
        let ty = Ty::Record(vec![("a".into(), Ty::U8), ("b".into(), Ty::String)]);
        assert_eq!(
            record_by_name(&ty, vec![("b", Val::string("x")), ("a", Val::U8(1))]),
            Ok(Val::Record(vec![Val::U8(1), Val::string("x")]))
        );
        assert!(record_by_name(&ty, vec![("a", Val::U8(1))]).is_err());
        assert!(record_by_name(
            &ty,
            vec![
                ("a", Val::U8(1)),
                ("b", Val::string("x")),
                ("c", Val::U8(2))
            ]
        )
        .is_err());
        assert!(record_by_name(&Ty::U8, vec![]).is_err());
    }
}
