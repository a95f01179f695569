//! Host functions for canonical-ABI plugins: the `tark:plugin/<interface>` imports,
//! defined from the WIT contract and served by the same host services and policy as
//! the legacy ABI.
//!
//! Every tark interface import (`storage`, `http`, `ws`, `env`, `log`, `fs`) is a typed
//! host function (`Function::new_typed_with_env`): its flat arguments arrive as plain
//! integers, strings and lists are lifted straight from guest memory with the typed
//! `Lift` of `typed.rs` (checked pointers, lengths, alignment, UTF-8, one per-call read
//! limit), and the answer is lowered straight to the guest's return pointer with the
//! typed `Lower` (its strings allocated through `cabi_realloc`), without the dynamic
//! `Val` tree. `log.*` checks the level before reading the message. Each Rust signature
//! is checked against the contract once, when the imports are built; an import whose
//! contract signature no longer matches its typed host function, and the conformance
//! test world's `conformance-host` echo (arbitrary types, no hot path), take the dynamic
//! path ([`host_call`] on lifted values). Both paths answer through the same functions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, Module, RuntimeError,
    Store, Value,
};

use super::contract::{Contract, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
use super::lift::{AbiError, FlatIter, Reader, Realloc, Writer};
use super::typed::{check_top, ComponentType, Lift, Lower};
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
        if let Some(f) = typed_import(store, env, iface, sig, &ty) {
            imports.define(import.module(), import.name(), f);
            continue;
        }
        let sig = sig.clone();
        let iface = iface.to_string();
        let f = Function::new_with_env(store, env, ty, move |mut env, args| {
            guarded(&mut env, &iface, &sig.name, |env| {
                handle(env, &iface, &sig, args)
            })
        });
        imports.define(import.module(), import.name(), f);
    }
    imports
}

/// Does the contract's `sig` take parameters `P` (a tuple) and answer `R`? Checked once
/// per import when the imports are built.
fn fits<P: ComponentType, R: ComponentType>(sig: &FuncSig) -> bool {
    check_top::<P>(Some(&sig.params_tuple())).is_ok() && check_top::<R>(sig.result.as_ref()).is_ok()
}

/// The typed host function for `iface.func` when its Rust types fit the contract's
/// signature and the host function's core type is the contract's (else None: the dynamic
/// path serves it).
fn typed_import(
    store: &mut Store,
    env: &FunctionEnv<CanonicalEnv>,
    iface: &str,
    sig: &FuncSig,
    ty: &FunctionType,
) -> Option<Function> {
    type S = String;
    type Pairs = Vec<(String, String)>;
    let func = sig.name.as_str();
    let f = match (iface, func) {
        ("log", level) if fits::<(S,), ()>(sig) => match level {
            "debug" => Function::new_typed_with_env(store, env, log_debug),
            "info" => Function::new_typed_with_env(store, env, log_info),
            "warn" => Function::new_typed_with_env(store, env, log_warn),
            "error" => Function::new_typed_with_env(store, env, log_error),
            _ => return None,
        },
        ("storage", "get") if fits::<(S,), Option<S>>(sig) => {
            Function::new_typed_with_env(store, env, storage_get)
        }
        ("storage", "set") if fits::<(S, S), Result<(), S>>(sig) => {
            Function::new_typed_with_env(store, env, storage_set)
        }
        ("storage", "delete") if fits::<(S,), Result<(), S>>(sig) => {
            Function::new_typed_with_env(store, env, storage_delete)
        }
        ("storage", "list-keys") if fits::<(), Vec<S>>(sig) => {
            Function::new_typed_with_env(store, env, storage_list_keys)
        }
        ("http", "get") if fits::<(S, Pairs), Result<HttpResponse, HttpErrorRecord>>(sig) => {
            Function::new_typed_with_env(store, env, http_get)
        }
        ("http", "post") if fits::<(S, S, Pairs), Result<HttpResponse, HttpErrorRecord>>(sig) => {
            Function::new_typed_with_env(store, env, http_post)
        }
        ("ws", "connect") if fits::<(S, S), S>(sig) => {
            Function::new_typed_with_env(store, env, ws_connect)
        }
        ("ws", "send") if fits::<(i64, S), S>(sig) => {
            Function::new_typed_with_env(store, env, ws_send)
        }
        ("ws", "recv") if fits::<(i64, i64, i64), S>(sig) => {
            Function::new_typed_with_env(store, env, ws_recv)
        }
        ("ws", "close") if fits::<(i64,), S>(sig) => {
            Function::new_typed_with_env(store, env, ws_close)
        }
        ("env", "get") if fits::<(S,), Option<S>>(sig) => {
            Function::new_typed_with_env(store, env, env_get)
        }
        ("fs", "read") if fits::<(S,), Result<S, S>>(sig) => {
            Function::new_typed_with_env(store, env, fs_read)
        }
        _ => return None,
    };
    (f.ty(&*store) == *ty).then_some(f)
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

/// Lift a typed import's arguments with one checked reader (one per-call read limit for
/// all of them).
fn lift_args<T>(
    env: &Env<'_>,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, AbiError>,
) -> Result<T, AbiError> {
    let data = env.data();
    let memory = data.memory.as_ref().ok_or(AbiError::FlatMismatch)?;
    let mut reader = Reader::new(env, memory, data.ctx.limits.guest_read_max);
    read(&mut reader)
}

/// Copy the guest string `(ptr, len)` out (checked, strict UTF-8, within the read limit).
fn read_arg(env: &Env<'_>, ptr: i32, len: i32) -> Result<String, AbiError> {
    lift_args(env, |r| r.read_string(ptr as u32, len as u32))
}

/// A `list<tuple<string, string>>` argument (headers), each pair checked.
fn read_pairs(r: &mut Reader<'_>, ptr: i32, len: i32) -> Result<Vec<(String, String)>, AbiError> {
    <(String, String) as Lift>::load_list(r, ptr as u32, len as u32)
}

/// The largest answer a typed import stores at its return pointer
/// (`result<http-response, http-error>`: 24 bytes).
const MAX_ANSWER: usize = 32;

/// Store `value` at the guest's return pointer `ret` (aligned and in bounds), its
/// strings and lists allocated through `cabi_realloc`.
fn store_answer<T: Lower>(env: &mut Env<'_>, ret: i32, value: &T) -> Result<(), AbiError> {
    let ret = ret as u32;
    check_align(ret, T::LAYOUT.align)?;
    let data = env.data();
    let memory = data.memory.clone().ok_or(AbiError::FlatMismatch)?;
    let realloc = data.realloc.clone();
    let mut buf = [0u8; MAX_ANSWER];
    let buf = buf
        .get_mut(..T::LAYOUT.size as usize)
        .ok_or(AbiError::FlatMismatch)?;
    let mut writer = Writer::new(env, memory, realloc);
    value.store(&mut writer, buf, 0)?;
    writer.write(ret, buf)
}

/// The body of a typed import that answers at a return pointer: lift its arguments
/// (`args`), ask the host (`serve`), store the answer at `ret`. A guest fault is a trap
/// naming the import, as on the dynamic path.
fn answer_at<A, T: Lower>(
    env: &mut Env<'_>,
    iface: &'static str,
    func: &'static str,
    ret: i32,
    args: impl FnOnce(&mut Reader<'_>) -> Result<A, AbiError>,
    serve: impl FnOnce(&PluginContext, OwnerId, A) -> T,
) -> Result<(), RuntimeError> {
    guarded(env, iface, func, |env| {
        let fail = |e: AbiError| trap(iface, func, e);
        let a = lift_args(env, args).map_err(fail)?;
        let (ctx, owner) = (env.data().ctx.clone(), env.data().owner);
        let answer = serve(&ctx, owner, a);
        store_answer(env, ret, &answer).map_err(fail)
    })
}

/// [`answer_at`] for an import whose only guest-memory argument is the string
/// `(ptr, len)`.
fn answer_str<T: Lower>(
    env: &mut Env<'_>,
    iface: &'static str,
    func: &'static str,
    (ptr, len): (i32, i32),
    ret: i32,
    serve: impl FnOnce(&PluginContext, OwnerId, String) -> T,
) -> Result<(), RuntimeError> {
    let args = |r: &mut Reader<'_>| r.read_string(ptr as u32, len as u32);
    answer_at(env, iface, func, ret, args, serve)
}

/// [`answer_at`] for an import whose guest-memory arguments are two strings.
fn answer_strs<T: Lower>(
    env: &mut Env<'_>,
    iface: &'static str,
    func: &'static str,
    (ap, al): (i32, i32),
    (bp, bl): (i32, i32),
    ret: i32,
    serve: impl FnOnce(&PluginContext, OwnerId, (String, String)) -> T,
) -> Result<(), RuntimeError> {
    let args = |r: &mut Reader<'_>| {
        Ok((
            r.read_string(ap as u32, al as u32)?,
            r.read_string(bp as u32, bl as u32)?,
        ))
    };
    answer_at(env, iface, func, ret, args, serve)
}

/// [`answer_at`] for an import that reads nothing from guest memory.
fn answer_plain<T: Lower>(
    env: &mut Env<'_>,
    iface: &'static str,
    func: &'static str,
    ret: i32,
    serve: impl FnOnce(&PluginContext, OwnerId) -> T,
) -> Result<(), RuntimeError> {
    let args = |_: &mut Reader<'_>| Ok(());
    answer_at(env, iface, func, ret, args, |ctx, owner, ()| {
        serve(ctx, owner)
    })
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

/// `storage.get(key) -> option<string>`.
fn storage_get(mut env: Env<'_>, kp: i32, kl: i32, ret: i32) -> Result<(), RuntimeError> {
    answer_str(&mut env, "storage", "get", (kp, kl), ret, |ctx, _, key| {
        serve_storage_get(ctx, &key)
    })
}

/// `storage.set(key, value) -> result<_, string>`.
fn storage_set(
    mut env: Env<'_>,
    kp: i32,
    kl: i32,
    vp: i32,
    vl: i32,
    ret: i32,
) -> Result<(), RuntimeError> {
    let (key, value) = ((kp, kl), (vp, vl));
    answer_strs(
        &mut env,
        "storage",
        "set",
        key,
        value,
        ret,
        |ctx, _, (k, v)| serve_storage_set(ctx, &k, &v),
    )
}

/// `storage.delete(key) -> result<_, string>`.
fn storage_delete(mut env: Env<'_>, kp: i32, kl: i32, ret: i32) -> Result<(), RuntimeError> {
    answer_str(
        &mut env,
        "storage",
        "delete",
        (kp, kl),
        ret,
        |ctx, _, key| serve_storage_delete(ctx, &key),
    )
}

/// `storage.list-keys() -> list<string>`.
fn storage_list_keys(mut env: Env<'_>, ret: i32) -> Result<(), RuntimeError> {
    answer_plain(&mut env, "storage", "list-keys", ret, |ctx, _| {
        serve_storage_list_keys(ctx)
    })
}

/// `http.get(url, headers) -> result<http-response, http-error>`.
fn http_get(
    mut env: Env<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    ret: i32,
) -> Result<(), RuntimeError> {
    let args =
        |r: &mut Reader<'_>| Ok((r.read_string(up as u32, ul as u32)?, read_pairs(r, hp, hl)?));
    answer_at(
        &mut env,
        "http",
        "get",
        ret,
        args,
        |ctx, _, (url, headers)| serve_http(ctx, HttpMethod::Get, &url, &headers, None),
    )
}

/// `http.post(url, body, headers) -> result<http-response, http-error>`.
#[allow(clippy::too_many_arguments)]
fn http_post(
    mut env: Env<'_>,
    up: i32,
    ul: i32,
    bp: i32,
    bl: i32,
    hp: i32,
    hl: i32,
    ret: i32,
) -> Result<(), RuntimeError> {
    let args = |r: &mut Reader<'_>| {
        let (url, body) = (
            r.read_string(up as u32, ul as u32)?,
            r.read_string(bp as u32, bl as u32)?,
        );
        Ok((url, body, read_pairs(r, hp, hl)?))
    };
    answer_at(
        &mut env,
        "http",
        "post",
        ret,
        args,
        |ctx, _, (url, body, headers)| {
            serve_http(ctx, HttpMethod::Post, &url, &headers, Some(&body))
        },
    )
}

/// `ws.connect(url, headers-json) -> string`.
fn ws_connect(
    mut env: Env<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    ret: i32,
) -> Result<(), RuntimeError> {
    let (url, headers) = ((up, ul), (hp, hl));
    answer_strs(
        &mut env,
        "ws",
        "connect",
        url,
        headers,
        ret,
        |ctx, owner, (u, h)| serve_ws_connect(ctx, owner, &u, &h),
    )
}

/// `ws.send(handle, data) -> string`.
fn ws_send(mut env: Env<'_>, handle: i64, dp: i32, dl: i32, ret: i32) -> Result<(), RuntimeError> {
    answer_str(&mut env, "ws", "send", (dp, dl), ret, |ctx, owner, data| {
        serve_ws_send(ctx, owner, handle, &data)
    })
}

/// `ws.recv(handle, timeout-ms, max-bytes) -> string`.
fn ws_recv(
    mut env: Env<'_>,
    handle: i64,
    timeout_ms: i64,
    max_bytes: i64,
    ret: i32,
) -> Result<(), RuntimeError> {
    answer_plain(&mut env, "ws", "recv", ret, |ctx, owner| {
        serve_ws_recv(ctx, owner, handle, timeout_ms, max_bytes)
    })
}

/// `ws.close(handle) -> string`.
fn ws_close(mut env: Env<'_>, handle: i64, ret: i32) -> Result<(), RuntimeError> {
    answer_plain(&mut env, "ws", "close", ret, |ctx, owner| {
        serve_ws_close(ctx, owner, handle)
    })
}

/// `env.get(name) -> option<string>`.
fn env_get(mut env: Env<'_>, np: i32, nl: i32, ret: i32) -> Result<(), RuntimeError> {
    answer_str(&mut env, "env", "get", (np, nl), ret, |ctx, _, name| {
        serve_env_get(ctx, &name)
    })
}

/// `fs.read(path) -> result<string, string>`.
fn fs_read(mut env: Env<'_>, pp: i32, pl: i32, ret: i32) -> Result<(), RuntimeError> {
    answer_str(&mut env, "fs", "read", (pp, pl), ret, |ctx, _, path| {
        serve_fs_read(ctx, &path)
    })
}

// ----- the answers, shared by the typed and the dynamic path -----

/// `http-error` of the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpErrorRecord {
    /// What went wrong.
    pub message: String,
    /// The HTTP status, when one came back.
    pub status: Option<u16>,
}

crate::canonical_record!(HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
});
crate::canonical_record!(HttpErrorRecord {
    message: String,
    status: Option<u16>,
});

fn serve_storage_get(ctx: &PluginContext, key: &str) -> Option<String> {
    ctx.storage_get(key).unwrap_or_else(|e| {
        log::warn!("[plugin:{}] storage.get({key}) failed: {e}", ctx.plugin_id);
        None
    })
}

fn serve_storage_set(ctx: &PluginContext, key: &str, value: &str) -> Result<(), String> {
    ctx.storage_set(key, value).map_err(|e| e.to_string())
}

fn serve_storage_delete(ctx: &PluginContext, key: &str) -> Result<(), String> {
    ctx.storage_delete(key).map_err(|e| e.to_string())
}

fn serve_storage_list_keys(ctx: &PluginContext) -> Vec<String> {
    ctx.storage_list_keys().unwrap_or_else(|e| {
        log::warn!("[plugin:{}] storage.list-keys failed: {e}", ctx.plugin_id);
        Vec::new()
    })
}

fn serve_http(
    ctx: &PluginContext,
    method: HttpMethod,
    url: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<HttpResponse, HttpErrorRecord> {
    let error = |message: String| HttpErrorRecord {
        message,
        status: None,
    };
    ctx.http_request(method, url, headers, body)
        .map_err(|e| match e {
            HttpError::Denied(_) => error(format!(
                "permission denied: {url} is not allowed by capabilities.http"
            )),
            HttpError::Timeout(m) => error(format!("timeout: {m}")),
            e => error(e.to_string()),
        })
}

fn serve_ws_connect(ctx: &PluginContext, owner: OwnerId, url: &str, headers_json: &str) -> String {
    let headers = parse_headers(headers_json);
    ws_connect_envelope(&ctx.ws_connect(owner, url, &headers))
}

fn serve_ws_send(ctx: &PluginContext, owner: OwnerId, handle: i64, data: &str) -> String {
    let h = u64::try_from(handle).unwrap_or(0);
    ws_send_envelope(&ctx.ws_send(owner, h, data))
}

fn serve_ws_recv(
    ctx: &PluginContext,
    owner: OwnerId,
    handle: i64,
    timeout_ms: i64,
    max_bytes: i64,
) -> String {
    let h = u64::try_from(handle).unwrap_or(0);
    let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    let max = usize::try_from(max_bytes).unwrap_or(0);
    ws_recv_envelope(&ctx.ws_recv(owner, h, timeout, max))
}

fn serve_ws_close(ctx: &PluginContext, owner: OwnerId, handle: i64) -> String {
    ctx.ws_close(owner, u64::try_from(handle).unwrap_or(0));
    ws_ok_envelope()
}

fn serve_env_get(ctx: &PluginContext, name: &str) -> Option<String> {
    match ctx.env_get(name) {
        Ok(v) => v,
        Err(EnvError::Denied(_)) | Err(EnvError::TooLarge { .. }) => None,
    }
}

fn serve_fs_read(ctx: &PluginContext, path: &str) -> Result<String, String> {
    ctx.fs_read(path).map_err(|e| match e {
        FsError::Denied(p) => {
            format!("permission denied: {p} is not allowed by capabilities.fs_read")
        }
        e => e.to_string(),
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

fn opt_string(v: Option<String>) -> Val {
    Val::Option(v.map(|s| Box::new(Val::String(s))))
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

/// The host side of every import on lifted values (the dynamic path). `None` for
/// functions without result; an error only when an answer cannot be built as the
/// contract's type (a host defect).
pub fn host_call(
    ctx: &PluginContext,
    owner: OwnerId,
    iface: &str,
    func: &str,
    args: Vec<Val>,
) -> Result<Option<Val>, TypeMismatch> {
    let a = |i: usize| args.get(i);
    Ok(Some(match (iface, func) {
        ("storage", "get") => opt_string(serve_storage_get(ctx, s(a(0)))),
        ("storage", "set") => unit_result(serve_storage_set(ctx, s(a(0)), s(a(1)))),
        ("storage", "delete") => unit_result(serve_storage_delete(ctx, s(a(0)))),
        ("storage", "list-keys") => Val::List(
            serve_storage_list_keys(ctx)
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
            match serve_http(ctx, method, s(a(0)), &headers, body) {
                Ok(resp) => http_response(resp)?,
                Err(e) => http_error(e.message, e.status)?,
            }
        }
        ("ws", "connect") => Val::String(serve_ws_connect(ctx, owner, s(a(0)), s(a(1)))),
        ("ws", "send") => Val::String(serve_ws_send(ctx, owner, s64(a(0)), s(a(1)))),
        ("ws", "recv") => Val::String(serve_ws_recv(ctx, owner, s64(a(0)), s64(a(1)), s64(a(2)))),
        ("ws", "close") => Val::String(serve_ws_close(ctx, owner, s64(a(0)))),
        ("env", "get") => opt_string(serve_env_get(ctx, s(a(0)))),
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
        ("fs", "read") => match serve_fs_read(ctx, s(a(0))) {
            Ok(text) => Val::ok(Some(Val::String(text))),
            Err(e) => Val::err(Some(Val::String(e))),
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
    fn every_tark_host_import_is_a_typed_host_function() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = crate::host::env::tests::context(
            &crate::manifest::PluginCapabilities::default(),
            crate::limits::Limits::default(),
            dir.path(),
            dir.path(),
        );
        let mut store = Store::default();
        let env = FunctionEnv::new(
            &mut store,
            CanonicalEnv {
                ctx,
                owner: crate::host::next_owner_id(),
                memory: None,
                realloc: None,
            },
        );
        let contract = Contract::get();
        let mut typed = 0;
        for (iface, funcs) in &contract.interfaces {
            let hosted = contract
                .worlds
                .values()
                .any(|w| w.imports.iter().any(|i| i == iface));
            if !hosted || iface == "conformance-host" {
                continue;
            }
            for sig in funcs.values() {
                let ty = sig.import_signature();
                let f = typed_import(&mut store, &env, iface, sig, &ty);
                assert!(f.is_some(), "{iface}.{} is not typed", sig.name);
                typed += 1;
            }
        }
        // storage 4, http 2, ws 4, env 1, log 4, fs 1.
        assert_eq!(typed, 16);
    }

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
