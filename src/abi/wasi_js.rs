//! WASI preview1 in the JS backend (`abi::wasi` when built with `js`): wasmer-wasix
//! needs a native runtime, so this is a small shim with exactly the calls tark's
//! canonical plugins import (wasm32-wasip1 `std`: `fd_write`, `environ_*`, `args_*`,
//! `clock_time_get`, `proc_exit`), with the native host's rules: no arguments, no
//! environment, no files, stdout/stderr line by line into the log with the plugin id.
//! `random_get` answers `ENOSYS` (no randomness source is wired in yet); any other WASI
//! import fails instantiation with its name, rather than a call failing later.

use std::sync::Arc;

use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, Imports, Instance, Memory, MemoryView,
    Module, RuntimeError, Store,
};

use super::memory::{check_range, read_bytes, u32_arg};
use crate::host::PluginContext;

/// Longest line of guest output kept before it is flushed to the log as is.
const MAX_LINE: usize = 4096;
/// Most bytes one `fd_write` may hand over (larger writes are cut, as a short write).
const MAX_WRITE: usize = 1 << 20;
/// Most iovecs one `fd_write` may list.
const MAX_IOVS: u32 = 1024;

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;

/// Setting up WASI for an instance failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WASI setup failed: {0}")]
pub struct WasiSetupError(pub String);

/// Nothing to enter in the JS backend (the native host enters wasmer-wasix's tokio runtime).
pub struct RuntimeGuard;

/// The runtime WASI calls need: none in the JS backend.
pub struct NoRuntime;

impl NoRuntime {
    /// Enter it (nothing to do).
    pub fn enter(&self) -> RuntimeGuard {
        RuntimeGuard
    }
}

/// The runtime WASI calls run in (none here; kept so the instance core is one piece of code).
pub fn tokio_runtime() -> Result<&'static NoRuntime, WasiSetupError> {
    static RT: NoRuntime = NoRuntime;
    Ok(&RT)
}

/// Does the module import anything from WASI?
pub fn imports_wasi(module: &Module) -> bool {
    module
        .imports()
        .any(|i| i.module().starts_with("wasi_snapshot_preview1") || i.module() == "wasi_unstable")
}

/// The environment of the WASI functions of one instance.
struct Env {
    ctx: Arc<PluginContext>,
    memory: Option<Memory>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// WASI state of one instance.
pub struct WasiState {
    env: FunctionEnv<Env>,
}

type Caller<'a> = FunctionEnvMut<'a, Env>;

/// The memory view of the calling instance (None before `initialize`).
fn view<'a>(
    memory: &'a Option<Memory>,
    store: &'a impl wasmer::AsStoreRef,
) -> Option<MemoryView<'a>> {
    memory.as_ref().map(|m| m.view(store))
}

/// Write `bytes` at the guest address `ptr`, checked.
fn write_at(view: &MemoryView<'_>, ptr: i32, bytes: &[u8]) -> Result<(), i32> {
    let ptr = u32_arg(ptr);
    check_range(ptr, bytes.len() as u64, view.data_size()).map_err(|_| ERRNO_FAULT)?;
    view.write(u64::from(ptr), bytes).map_err(|_| ERRNO_FAULT)
}

fn errno(r: Result<(), i32>) -> i32 {
    match r {
        Ok(()) => ERRNO_SUCCESS,
        Err(e) => e,
    }
}

/// Both counts are zero: arguments and environment are empty (native rule).
fn sizes_get(mut caller: Caller<'_>, count_ptr: i32, size_ptr: i32) -> i32 {
    let (env, store) = caller.data_and_store_mut();
    let Some(view) = view(&env.memory, &store) else {
        return ERRNO_FAULT;
    };
    errno(
        write_at(&view, count_ptr, &0u32.to_le_bytes())
            .and_then(|()| write_at(&view, size_ptr, &0u32.to_le_bytes())),
    )
}

/// Nothing to copy: the lists are empty.
fn list_get(_caller: Caller<'_>, _ptrs: i32, _buf: i32) -> i32 {
    ERRNO_SUCCESS
}

/// Send complete lines of `buf` to the log at `level` (a line longer than [`MAX_LINE`]
/// in pieces), keeping the unfinished rest.
fn flush_lines(ctx: &PluginContext, buf: &mut Vec<u8>, level: log::Level) {
    loop {
        let line: Vec<u8> = if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=pos).collect();
            line.pop();
            line
        } else if buf.len() >= MAX_LINE {
            buf.drain(..MAX_LINE).collect()
        } else {
            return;
        };
        let text = String::from_utf8_lossy(&line);
        ctx.log(level, text.trim_end_matches('\r'));
    }
}

fn fd_write(mut caller: Caller<'_>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> i32 {
    let (env, store) = caller.data_and_store_mut();
    let level = match fd {
        1 => log::Level::Info,
        2 => log::Level::Warn,
        _ => return ERRNO_BADF,
    };
    let Some(view) = view(&env.memory, &store) else {
        return ERRNO_FAULT;
    };
    let count = u32_arg(iovs_len);
    if count > MAX_IOVS {
        return ERRNO_INVAL;
    }
    let Ok(table) = read_bytes(
        &view,
        u32_arg(iovs),
        count.saturating_mul(8),
        (MAX_IOVS * 8) as usize,
    ) else {
        return ERRNO_FAULT;
    };
    let mut written: Vec<u8> = Vec::new();
    for iov in table.chunks_exact(8) {
        let word = |at: usize| -> u32 {
            let mut b = [0u8; 4];
            b.copy_from_slice(iov.get(at..at + 4).unwrap_or(&[0; 4]));
            u32::from_le_bytes(b)
        };
        let (ptr, len) = (word(0), word(4));
        let room = MAX_WRITE.saturating_sub(written.len());
        let take = (len as usize).min(room) as u32;
        match read_bytes(&view, ptr, take, MAX_WRITE) {
            Ok(bytes) => written.extend_from_slice(&bytes),
            Err(_) => return ERRNO_FAULT,
        }
        if take < len {
            break;
        }
    }
    let n = written.len() as u32;
    if let Err(e) = write_at(&view, nwritten, &n.to_le_bytes()) {
        return e;
    }
    let ctx = env.ctx.clone();
    let buf = if fd == 1 {
        &mut env.stdout
    } else {
        &mut env.stderr
    };
    buf.extend_from_slice(&written);
    flush_lines(&ctx, buf, level);
    ERRNO_SUCCESS
}

fn clock_time_get(mut caller: Caller<'_>, clock: i32, _precision: i64, out: i32) -> i32 {
    // Realtime (0) and the monotonic/CPU clocks (1-3) all read the JS clock (ms).
    if !(0..=3).contains(&clock) {
        return ERRNO_INVAL;
    }
    let ns = (js_sys::Date::now() * 1_000_000.0) as u64;
    let (env, store) = caller.data_and_store_mut();
    let Some(view) = view(&env.memory, &store) else {
        return ERRNO_FAULT;
    };
    errno(write_at(&view, out, &ns.to_le_bytes()))
}

fn random_get(_caller: Caller<'_>, _buf: i32, _len: i32) -> i32 {
    ERRNO_NOSYS
}

fn proc_exit(caller: Caller<'_>, code: i32) -> Result<(), RuntimeError> {
    let id = caller.data().ctx.plugin_id.clone();
    Err(RuntimeError::new(format!(
        "plugin {id} called proc_exit({code})"
    )))
}

impl WasiState {
    /// Build the WASI functions `module` imports, in `store`.
    pub fn new(
        store: &mut Store,
        module: &Module,
        ctx: &Arc<PluginContext>,
    ) -> Result<(WasiState, Imports), WasiSetupError> {
        let env = FunctionEnv::new(
            store,
            Env {
                ctx: ctx.clone(),
                memory: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        );
        let mut imports = Imports::new();
        for import in module.imports() {
            let (m, name) = (import.module(), import.name());
            if !(m.starts_with("wasi_snapshot_preview1") || m == "wasi_unstable") {
                continue;
            }
            let f = function(store, &env, name).ok_or_else(|| {
                WasiSetupError(format!(
                    "{m}::{name} is not available in the JS backend (it provides fd_write to the \
                     log, empty args/environ, clocks and proc_exit)"
                ))
            })?;
            imports.define(m, name, f);
        }
        Ok((WasiState { env }, imports))
    }

    /// Bind WASI to the instance's exported memory (call once after instantiation).
    pub fn initialize(
        &mut self,
        store: &mut Store,
        instance: &Instance,
    ) -> Result<(), WasiSetupError> {
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|e| WasiSetupError(e.to_string()))?
            .clone();
        self.env.as_mut(store).memory = Some(memory);
        Ok(())
    }
}

/// The host function for WASI call `name`, if the shim has it.
fn function(store: &mut impl AsStoreMut, env: &FunctionEnv<Env>, name: &str) -> Option<Function> {
    Some(match name {
        "fd_write" => Function::new_typed_with_env(store, env, fd_write),
        "environ_sizes_get" | "args_sizes_get" => {
            Function::new_typed_with_env(store, env, sizes_get)
        }
        "environ_get" | "args_get" => Function::new_typed_with_env(store, env, list_get),
        "clock_time_get" => Function::new_typed_with_env(store, env, clock_time_get),
        "random_get" => Function::new_typed_with_env(store, env, random_get),
        "proc_exit" => Function::new_typed_with_env(store, env, proc_exit),
        _ => return None,
    })
}
