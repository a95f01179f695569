//! The `tark:*` host functions of the legacy ABI: exact signatures and return codes of
//! tark, over the ABI-agnostic services in [`crate::host`] (which also build tark's JSON
//! envelopes, [`crate::host::wire`]; this adapter only moves their bytes).
//!
//! Every argument from the guest is treated as hostile: pointers and lengths are
//! `u32` with checked ranges, strings are strict UTF-8, answers above the configured
//! limits are refused, and a panic in a host function becomes a trap for that call.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use wasmer::{
    imports, Function, FunctionEnv, FunctionEnvMut, FunctionType, Imports, Memory, MemoryView,
    Store, Type,
};

use crate::abi::memory::{self, u32_arg};
use crate::abi::panic_message;
use crate::host::wire::{
    parse_headers, ws_connect_envelope, ws_ok_envelope, ws_recv_envelope, ws_send_envelope,
};
use crate::host::{
    http, EnvError, FsError, HttpError, HttpMethod, OwnerId, PluginContext, StorageError, WsError,
};

/// Per-instance state of the legacy host functions.
pub struct LegacyEnv {
    /// The plugin's services.
    pub ctx: Arc<PluginContext>,
    /// This instance's id (owner of its WebSocket handles).
    pub owner: OwnerId,
    /// The guest's exported memory, set right after instantiation.
    pub memory: Option<Memory>,
}

/// A host function failed in a way that must stop the guest (a caught host panic).
#[derive(Debug, thiserror::Error)]
#[error("host function {import} failed: {message}")]
pub struct HostTrap {
    import: &'static str,
    message: String,
}

/// The legacy host functions: (module, name, params, results).
pub const LEGACY_IMPORTS: &[(&str, &str, &[Type], &[Type])] = {
    use Type::{I32, I64};
    &[
        ("tark:storage", "get", &[I32, I32, I32], &[I32]),
        ("tark:storage", "set", &[I32, I32, I32, I32], &[I32]),
        ("tark:storage", "delete", &[I32, I32], &[I32]),
        ("tark:http", "get", &[I32, I32, I32, I32, I32], &[I32]),
        (
            "tark:http",
            "post",
            &[I32, I32, I32, I32, I32, I32, I32],
            &[I32],
        ),
        ("tark:ws", "connect", &[I32, I32, I32, I32, I32], &[I32]),
        ("tark:ws", "send", &[I64, I32, I32, I32], &[I32]),
        ("tark:ws", "recv", &[I64, I64, I64, I32], &[I32]),
        ("tark:ws", "close", &[I64, I32], &[I32]),
        ("tark:env", "get", &[I32, I32, I32], &[I32]),
        ("tark:log", "debug", &[I32, I32], &[]),
        ("tark:log", "info", &[I32, I32], &[]),
        ("tark:log", "warn", &[I32, I32], &[]),
        ("tark:log", "error", &[I32, I32], &[]),
        ("tark:fs", "read", &[I32, I32, I32], &[I32]),
    ]
};

/// The signature the host provides for `module::name`, if any.
pub fn provided_signature(module: &str, name: &str) -> Option<FunctionType> {
    LEGACY_IMPORTS
        .iter()
        .find(|(m, n, _, _)| *m == module && *n == name)
        .map(|(_, _, p, r)| FunctionType::new(p.to_vec(), r.to_vec()))
}

type Env<'a> = FunctionEnvMut<'a, LegacyEnv>;

/// Run a host function body, turning a host panic into a trap for this call.
fn guarded<R>(
    env: &mut Env<'_>,
    import: &'static str,
    body: impl FnOnce(&mut Env<'_>) -> R,
) -> Result<R, HostTrap> {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(r) => Ok(r),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            log::error!(
                "[plugin:{}] host function {import} panicked: {message}",
                env.data().ctx.plugin_id
            );
            Err(HostTrap {
                import,
                message: format!("host panic: {message}"),
            })
        }
    }
}

/// The context, the guest memory (None when the module exports none) and the owner id.
fn parts(env: &Env<'_>) -> (Arc<PluginContext>, Option<Memory>, OwnerId) {
    let data = env.data();
    (data.ctx.clone(), data.memory.clone(), data.owner)
}

fn read_str(view: &MemoryView<'_>, ctx: &PluginContext, ptr: i32, len: i32) -> Option<String> {
    memory::read_string(view, u32_arg(ptr), u32_arg(len), ctx.limits.guest_read_max).ok()
}

/// Run a host function body over guest memory: the context, a view of the memory and
/// the owner id; -1 when the module exports no memory.
fn with_view(
    env: &mut Env<'_>,
    import: &'static str,
    body: impl FnOnce(&PluginContext, &MemoryView<'_>, OwnerId) -> i32,
) -> Result<i32, HostTrap> {
    guarded(env, import, |env| {
        let (ctx, mem, owner) = parts(env);
        let Some(mem) = mem else { return -1 };
        let view = mem.view(&*env);
        body(&ctx, &view, owner)
    })
}

/// [`with_view`] for a host function whose first argument is the guest string
/// `(ptr, len)`: -1 when it cannot be read.
fn with_str(
    env: &mut Env<'_>,
    import: &'static str,
    (ptr, len): (i32, i32),
    body: impl FnOnce(&PluginContext, &MemoryView<'_>, OwnerId, String) -> i32,
) -> Result<i32, HostTrap> {
    with_view(env, import, |ctx, view, owner| {
        match read_str(view, ctx, ptr, len) {
            Some(s) => body(ctx, view, owner, s),
            None => -1,
        }
    })
}

/// [`with_view`] for a host function whose first two arguments are guest strings: -1
/// when either cannot be read.
fn with_strs(
    env: &mut Env<'_>,
    import: &'static str,
    (ap, al): (i32, i32),
    (bp, bl): (i32, i32),
    body: impl FnOnce(&PluginContext, &MemoryView<'_>, OwnerId, String, String) -> i32,
) -> Result<i32, HostTrap> {
    with_view(env, import, |ctx, view, owner| {
        match (read_str(view, ctx, ap, al), read_str(view, ctx, bp, bl)) {
            (Some(a), Some(b)) => body(ctx, view, owner, a, b),
            _ => -1,
        }
    })
}

/// Write `data` at `ret_ptr`; the byte count, or None when out of bounds or too long for i32.
fn write_answer(view: &MemoryView<'_>, ret_ptr: i32, data: &[u8]) -> Option<i32> {
    let n = i32::try_from(data.len()).ok()?;
    memory::write_bytes(view, u32_arg(ret_ptr), data).ok()?;
    Some(n)
}

fn storage_get(mut env: Env<'_>, kp: i32, kl: i32, ret: i32) -> Result<i32, HostTrap> {
    with_str(
        &mut env,
        "storage.get",
        (kp, kl),
        |ctx, view, _, key| match ctx.storage_get(&key) {
            Ok(Some(v)) => write_answer(view, ret, v.as_bytes()).unwrap_or(-1),
            Ok(None) => 0,
            Err(e @ StorageError::ValueTooLarge { .. }) => {
                log::warn!("[plugin:{}] storage.get({key}) refused: {e}", ctx.plugin_id);
                -1
            }
            Err(e) => {
                log::error!("[plugin:{}] storage.get({key}) failed: {e}", ctx.plugin_id);
                -1
            }
        },
    )
}

/// 0 when a storage write went through, else -1 (logged).
fn storage_written(ctx: &PluginContext, result: Result<(), StorageError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::warn!("[plugin:{}] Failed to save storage: {e}", ctx.plugin_id);
            -1
        }
    }
}

fn storage_set(mut env: Env<'_>, kp: i32, kl: i32, vp: i32, vl: i32) -> Result<i32, HostTrap> {
    with_strs(
        &mut env,
        "storage.set",
        (kp, kl),
        (vp, vl),
        |ctx, _, _, k, v| storage_written(ctx, ctx.storage_set(&k, &v)),
    )
}

fn storage_delete(mut env: Env<'_>, kp: i32, kl: i32) -> Result<i32, HostTrap> {
    with_str(&mut env, "storage.delete", (kp, kl), |ctx, _, _, key| {
        storage_written(ctx, ctx.storage_delete(&key))
    })
}

fn http_common(
    ctx: &PluginContext,
    view: &MemoryView<'_>,
    method: HttpMethod,
    url: (i32, i32),
    body: Option<(i32, i32)>,
    headers: (i32, i32),
    ret: i32,
) -> i32 {
    let Some(url) = read_str(view, ctx, url.0, url.1) else {
        return -1;
    };
    let body = match body {
        Some((p, l)) => match read_str(view, ctx, p, l) {
            Some(b) => Some(b),
            None => return -1,
        },
        None => None,
    };
    let Some(headers) = read_str(view, ctx, headers.0, headers.1) else {
        return -1;
    };
    let headers = parse_headers(&headers);
    // The request may take a while; guest memory is not touched meanwhile.
    let result = ctx.http_request(method, &url, &headers, body.as_deref());
    if let Err(HttpError::Denied(_)) = result {
        return -2;
    }
    let text = http::bounded_envelope(ctx, &result);
    write_answer(view, ret, text.as_bytes()).unwrap_or(-1)
}

fn http_get(
    mut env: Env<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    ret: i32,
) -> Result<i32, HostTrap> {
    with_view(&mut env, "http.get", |ctx, view, _| {
        http_common(ctx, view, HttpMethod::Get, (up, ul), None, (hp, hl), ret)
    })
}

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
) -> Result<i32, HostTrap> {
    let (url, body, headers) = ((up, ul), Some((bp, bl)), (hp, hl));
    with_view(&mut env, "http.post", |ctx, view, _| {
        http_common(ctx, view, HttpMethod::Post, url, body, headers, ret)
    })
}

fn ws_connect(
    mut env: Env<'_>,
    up: i32,
    ul: i32,
    hp: i32,
    hl: i32,
    ret: i32,
) -> Result<i32, HostTrap> {
    with_strs(
        &mut env,
        "ws.connect",
        (up, ul),
        (hp, hl),
        |ctx, view, owner, url, headers| {
            let text = match ctx.ws_connect(owner, &url, &parse_headers(&headers)) {
                Err(WsError::Denied(_)) => return -2,
                result => ws_connect_envelope(&result),
            };
            write_answer(view, ret, text.as_bytes()).unwrap_or(-1)
        },
    )
}

/// A guest handle as the host's `u64` (non-positive handles are never issued).
fn handle_arg(h: i64) -> u64 {
    u64::try_from(h).unwrap_or(0)
}

fn ws_send(mut env: Env<'_>, handle: i64, dp: i32, dl: i32, ret: i32) -> Result<i32, HostTrap> {
    with_str(&mut env, "ws.send", (dp, dl), |ctx, view, owner, data| {
        let text = ws_send_envelope(&ctx.ws_send(owner, handle_arg(handle), &data));
        write_answer(view, ret, text.as_bytes()).unwrap_or(-1)
    })
}

fn ws_recv(
    mut env: Env<'_>,
    handle: i64,
    timeout_ms: i64,
    max_bytes: i64,
    ret: i32,
) -> Result<i32, HostTrap> {
    guarded(&mut env, "ws.recv", |env| {
        let (ctx, _, owner) = parts(env);
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        let max = usize::try_from(max_bytes).unwrap_or(0);
        // Wait without holding a view of guest memory.
        let result = ctx.ws_recv(owner, handle_arg(handle), timeout, max);
        let text = ws_recv_envelope(&result);
        let (_, mem, _) = parts(env);
        let Some(mem) = mem else { return -1 };
        let view = mem.view(&*env);
        write_answer(&view, ret, text.as_bytes()).unwrap_or(-1)
    })
}

fn ws_close(mut env: Env<'_>, handle: i64, ret: i32) -> Result<i32, HostTrap> {
    with_view(&mut env, "ws.close", |ctx, view, owner| {
        ctx.ws_close(owner, handle_arg(handle));
        write_answer(view, ret, ws_ok_envelope().as_bytes()).unwrap_or(-1)
    })
}

fn env_get(mut env: Env<'_>, np: i32, nl: i32, ret: i32) -> Result<i32, HostTrap> {
    with_str(
        &mut env,
        "env.get",
        (np, nl),
        |ctx, view, _, name| match ctx.env_get(&name) {
            Ok(Some(v)) => write_answer(view, ret, v.as_bytes()).unwrap_or(-1),
            Ok(None) => 0,
            Err(EnvError::Denied(_)) => -2,
            Err(EnvError::TooLarge { .. }) => -1,
        },
    )
}

fn fs_read(mut env: Env<'_>, pp: i32, pl: i32, ret: i32) -> Result<i32, HostTrap> {
    with_str(
        &mut env,
        "fs.read",
        (pp, pl),
        |ctx, view, _, path| match ctx.fs_read(&path) {
            Ok(text) => write_answer(view, ret, text.as_bytes()).unwrap_or(-4),
            Err(FsError::Denied(_)) => -2,
            Err(e) => {
                log::debug!("[plugin:{}] fs.read failed: {e}", ctx.plugin_id);
                -3
            }
        },
    )
}

/// `log.<level>(message)`.
fn log_at(
    env: &mut Env<'_>,
    import: &'static str,
    level: log::Level,
    mp: i32,
    ml: i32,
) -> Result<(), HostTrap> {
    guarded(env, import, |env| {
        // Below the level: nothing to read, nothing to clone.
        if !env.data().ctx.log_enabled(level) {
            return;
        }
        let (ctx, mem, _) = parts(env);
        let Some(mem) = mem else { return };
        let view = mem.view(&*env);
        if let Some(msg) = read_str(&view, &ctx, mp, ml) {
            ctx.log(level, &msg);
        }
    })
}

fn log_debug(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), HostTrap> {
    log_at(&mut env, "log.debug", log::Level::Debug, mp, ml)
}
fn log_info(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), HostTrap> {
    log_at(&mut env, "log.info", log::Level::Info, mp, ml)
}
fn log_warn(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), HostTrap> {
    log_at(&mut env, "log.warn", log::Level::Warn, mp, ml)
}
fn log_error(mut env: Env<'_>, mp: i32, ml: i32) -> Result<(), HostTrap> {
    log_at(&mut env, "log.error", log::Level::Error, mp, ml)
}

/// Build the `tark:*` imports of one instance.
pub fn legacy_imports(store: &mut Store, env: &FunctionEnv<LegacyEnv>) -> Imports {
    imports! {
        "tark:storage" => {
            "get" => Function::new_typed_with_env(store, env, storage_get),
            "set" => Function::new_typed_with_env(store, env, storage_set),
            "delete" => Function::new_typed_with_env(store, env, storage_delete),
        },
        "tark:http" => {
            "get" => Function::new_typed_with_env(store, env, http_get),
            "post" => Function::new_typed_with_env(store, env, http_post),
        },
        "tark:ws" => {
            "connect" => Function::new_typed_with_env(store, env, ws_connect),
            "send" => Function::new_typed_with_env(store, env, ws_send),
            "recv" => Function::new_typed_with_env(store, env, ws_recv),
            "close" => Function::new_typed_with_env(store, env, ws_close),
        },
        "tark:env" => {
            "get" => Function::new_typed_with_env(store, env, env_get),
        },
        "tark:log" => {
            "debug" => Function::new_typed_with_env(store, env, log_debug),
            "info" => Function::new_typed_with_env(store, env, log_info),
            "warn" => Function::new_typed_with_env(store, env, log_warn),
            "error" => Function::new_typed_with_env(store, env, log_error),
        },
        "tark:fs" => {
            "read" => Function::new_typed_with_env(store, env, fs_read),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_every_import() {
        assert_eq!(LEGACY_IMPORTS.len(), 15);
        assert!(provided_signature("tark:ws", "recv").is_some());
        assert!(provided_signature("tark:storage", "list-keys").is_none());
    }
}
