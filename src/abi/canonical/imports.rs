//! Host functions for canonical-ABI plugins: the `tark:plugin/<interface>` imports,
//! defined from the WIT contract and served by the same host services and policy as
//! the legacy ABI. Each import lifts its arguments (checked), calls
//! [`host_call`], and lowers the answer through the guest's `cabi_realloc`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, Module, RuntimeError,
    Store, Value,
};

use super::contract::{Contract, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
use super::lift::{AbiError, FlatIter, Reader, Realloc, Writer};
use super::types::Val;
use crate::abi::legacy::imports::{
    ws_error_envelope, ws_handle_envelope, ws_ok_envelope, ws_recv_envelope,
};
use crate::host::{EnvError, FsError, HttpError, HttpMethod, OwnerId, PluginContext};

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
        let sig = sig.clone();
        let iface = iface.to_string();
        let ty = sig.import_signature();
        let f = Function::new_with_env(store, env, ty, move |mut env, args| {
            match catch_unwind(AssertUnwindSafe(|| handle(&mut env, &iface, &sig, args))) {
                Ok(r) => r,
                Err(payload) => {
                    let msg = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
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
    let result = host_call(&ctx, owner, iface, &sig.name, params);
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

/// An `http-error` record.
fn http_error(message: String, status: Option<u16>) -> Val {
    Val::err(Some(Val::Record(vec![
        Val::String(message),
        Val::Option(status.map(|s| Box::new(Val::U16(s)))),
    ])))
}

/// The host side of every import, on lifted values. `None` for functions without result.
pub fn host_call(
    ctx: &PluginContext,
    owner: OwnerId,
    iface: &str,
    func: &str,
    args: Vec<Val>,
) -> Option<Val> {
    let a = |i: usize| args.get(i);
    Some(match (iface, func) {
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
                Ok(resp) => Val::ok(Some(Val::Record(vec![
                    Val::U16(resp.status),
                    Val::List(
                        resp.headers
                            .into_iter()
                            .map(|(k, v)| Val::Tuple(vec![Val::String(k), Val::String(v)]))
                            .collect(),
                    ),
                    Val::String(resp.body),
                ]))),
                Err(HttpError::Denied(_)) => http_error(
                    format!("permission denied: {url} is not allowed by capabilities.http"),
                    None,
                ),
                Err(HttpError::Timeout(m)) => http_error(format!("timeout: {m}"), None),
                Err(e) => http_error(e.to_string(), None),
            }
        }
        ("ws", "connect") => {
            let headers = crate::abi::legacy::imports::parse_headers(s(a(1)));
            Val::String(match ctx.ws_connect(owner, s(a(0)), &headers) {
                Ok(h) => ws_handle_envelope(h),
                Err(e) => ws_error_envelope(&e),
            })
        }
        ("ws", "send") => {
            let h = u64::try_from(s64(a(0))).unwrap_or(0);
            Val::String(match ctx.ws_send(owner, h, s(a(1))) {
                Ok(()) => ws_ok_envelope(),
                Err(e) => ws_error_envelope(&e),
            })
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
            return None;
        }
        ("fs", "read") => match ctx.fs_read(s(a(0))) {
            Ok(text) => Val::ok(Some(Val::String(text))),
            Err(FsError::Denied(p)) => Val::err(Some(Val::String(format!(
                "permission denied: {p} is not allowed by capabilities.fs_read"
            )))),
            Err(e) => Val::err(Some(Val::String(e.to_string()))),
        },
        // The conformance test world's host side: echo.
        ("conformance-host", _) => return args.into_iter().next(),
        _ => return None,
    })
}
