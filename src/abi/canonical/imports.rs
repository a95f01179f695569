//! Host functions for canonical-ABI plugins: the `tark:plugin/<interface>` imports,
//! defined from the WIT contract and served by the same host services and policy as
//! the legacy ABI. Each import lifts its arguments (checked), calls
//! [`host_call`], and lowers the answer through the guest's `cabi_realloc`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, Module, RuntimeError,
    Store, Value,
};

use super::contract::{Contract, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
use super::lift::{AbiError, FlatIter, Reader, Realloc, Writer};
use super::types::{record_by_name, Ty, TypeMismatch, Val};
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
        let sig = sig.clone();
        let iface = iface.to_string();
        let ty = sig.import_signature();
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
