//! One instance of a legacy-ABI plugin and tark's export calling conventions (R, P, PR, S,
//! V: see `src/plugin/mod.rs` and `tests/legacy_abi.rs`), with these fixes over tark:
//! larger checked output buffers, `dealloc` after every host allocation, `alloc(0)` never
//! called, every returned range validated, and the guest's `{"error": ...}` text surfaced.
//! Instantiation, limits and WASI are the ABI-neutral core's ([`crate::abi::instance`]).

use std::sync::Arc;

use wasmer::{Function, FunctionEnv, Instance, Memory, Module, Store, Type, TypedFunction, Value};

use super::imports::{legacy_imports, provided_signature, LegacyEnv};
use crate::abi::instance::{trap_message, InstanceCore, InstantiateError, Instantiated, Linker};
use crate::abi::memory::{self, check_range};
use crate::abi::CallError;
use crate::host::PluginContext;

/// Output buffers the host allocates for R / PR calls when the guest allows it.
pub const PREFERRED_OUT_BUF: usize = 256 * 1024;

/// How an export returns its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// No output buffer: the `i32` result is a status or error code (P, S, V).
    Code,
    /// The host passes an output buffer of at least this many bytes (tark's size).
    Buffer(usize),
}

/// A live instance of a legacy plugin.
pub struct LegacyInstance {
    core: InstanceCore,
    store: Store,
    instance: Instance,
    memory: Memory,
    alloc: Option<TypedFunction<i32, i32>>,
    dealloc: Option<TypedFunction<(i32, i32), ()>>,
    /// Exports resolved, type-checked and made typed on first use: a call does no
    /// lookup, no type comparison and no `Vec<Value>`.
    exports: Vec<Resolved>,
    _env: FunctionEnv<LegacyEnv>,
}

/// Most `i32` parameters a legacy export is called with through a typed function
/// (two inputs and an output buffer take 5; more take the dynamic path).
const MAX_TYPED_PARAMS: usize = 5;

/// A legacy export as a typed function of its arity (all parameters and the result `i32`).
#[derive(Clone)]
enum LegacyFn {
    P0(TypedFunction<(), i32>),
    P1(TypedFunction<i32, i32>),
    P2(TypedFunction<(i32, i32), i32>),
    P3(TypedFunction<(i32, i32, i32), i32>),
    P4(TypedFunction<(i32, i32, i32, i32), i32>),
    P5(TypedFunction<(i32, i32, i32, i32, i32), i32>),
    Dynamic(Function),
}

impl LegacyFn {
    fn new(store: &Store, func: &Function, n_params: usize) -> Result<Self, wasmer::RuntimeError> {
        Ok(match n_params {
            0 => LegacyFn::P0(func.typed(store)?),
            1 => LegacyFn::P1(func.typed(store)?),
            2 => LegacyFn::P2(func.typed(store)?),
            3 => LegacyFn::P3(func.typed(store)?),
            4 => LegacyFn::P4(func.typed(store)?),
            5 => LegacyFn::P5(func.typed(store)?),
            _ => LegacyFn::Dynamic(func.clone()),
        })
    }

    /// Call with `args` (exactly the export's arity, checked when it was resolved).
    fn call(&self, store: &mut Store, args: &[i32]) -> Result<i32, wasmer::RuntimeError> {
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        match self {
            LegacyFn::P0(f) => f.call(store),
            LegacyFn::P1(f) => f.call(store, a(0)),
            LegacyFn::P2(f) => f.call(store, a(0), a(1)),
            LegacyFn::P3(f) => f.call(store, a(0), a(1), a(2)),
            LegacyFn::P4(f) => f.call(store, a(0), a(1), a(2), a(3)),
            LegacyFn::P5(f) => f.call(store, a(0), a(1), a(2), a(3), a(4)),
            LegacyFn::Dynamic(f) => {
                let values: Vec<Value> = args.iter().map(|v| Value::I32(*v)).collect();
                match f.call(store, &values)?.first() {
                    Some(Value::I32(c)) => Ok(*c),
                    _ => Err(wasmer::RuntimeError::new("export returned no i32")),
                }
            }
        }
    }
}

/// One resolved export: its name, arity and typed function.
struct Resolved {
    name: Box<str>,
    n_params: usize,
    func: LegacyFn,
}

impl LegacyInstance {
    /// Check the module's imports and instantiate it with the `tark:*` host functions
    /// and, when it imports WASI, a sandboxed WASI environment.
    pub fn new(
        store: Store,
        module: &Module,
        ctx: Arc<PluginContext>,
    ) -> Result<Self, InstantiateError> {
        let mut linker = Linker::new(store, module, ctx.clone(), &provided_signature)?;
        let owner = linker.owner();
        let env = FunctionEnv::new(
            linker.store_mut(),
            LegacyEnv {
                ctx: ctx.clone(),
                owner,
                memory: None,
            },
        );
        let imports = legacy_imports(linker.store_mut(), &env);
        let Instantiated {
            store,
            instance,
            memory,
            core,
        } = linker.instantiate(module, imports, |store, _, memory| {
            env.as_mut(store).memory = Some(memory.clone());
        })?;
        let alloc = instance
            .exports
            .get_typed_function::<i32, i32>(&store, "alloc")
            .ok();
        let dealloc = instance
            .exports
            .get_typed_function::<(i32, i32), ()>(&store, "dealloc")
            .ok();
        if dealloc.is_none() {
            log::warn!(
                "[plugin:{}] exports no `dealloc(i32, i32)`: buffers the host allocates cannot be freed",
                ctx.plugin_id
            );
        }
        Ok(LegacyInstance {
            core,
            store,
            instance,
            memory,
            alloc,
            dealloc,
            exports: Vec::new(),
            _env: env,
        })
    }

    /// The plugin context this instance serves.
    pub fn context(&self) -> &Arc<PluginContext> {
        self.core.ctx()
    }

    /// Current linear memory size in 64 KiB pages.
    pub fn memory_pages(&self) -> u32 {
        self.memory.view(&self.store).size().0
    }

    /// Metering points left of the last call's CPU budget (None when not metered).
    pub fn remaining_points(&mut self) -> Option<u64> {
        self.core.remaining_points(&mut self.store)
    }

    /// Does the module export `name` with exactly this core type?
    pub fn has_export(&self, name: &str, params: &[Type], results: &[Type]) -> bool {
        match self.instance.exports.get_function(name) {
            Ok(f) => {
                let ty = f.ty(&self.store);
                ty.params() == params && ty.results() == results
            }
            Err(_) => false,
        }
    }

    fn alloc_checked(&mut self, function: &str, size: usize) -> Result<u32, CallError> {
        let alloc = self
            .alloc
            .clone()
            .ok_or_else(|| CallError::MissingExport("alloc".into()))?;
        let size_i32 = i32::try_from(size).map_err(|_| CallError::AllocFailed {
            function: function.to_string(),
            size: size as u64,
            detail: "size does not fit in i32".into(),
        })?;
        let ptr = alloc
            .call(&mut self.store, size_i32)
            .map_err(|e| CallError::Trap {
                function: "alloc".to_string(),
                message: trap_message(&e),
            })?;
        let ptr = memory::u32_arg(ptr);
        let mem_size = self.memory.view(&self.store).data_size();
        if ptr == 0 {
            return Err(CallError::AllocFailed {
                function: function.to_string(),
                size: size as u64,
                detail: "alloc returned 0".into(),
            });
        }
        check_range(ptr, size as u64, mem_size).map_err(|e| CallError::AllocFailed {
            function: function.to_string(),
            size: size as u64,
            detail: e.to_string(),
        })?;
        Ok(ptr)
    }

    fn free(&mut self, allocations: &[(u32, usize)]) -> Result<(), CallError> {
        let Some(dealloc) = self.dealloc.clone() else {
            return Ok(());
        };
        for &(ptr, size) in allocations {
            // Sizes were checked to fit in i32 when allocated.
            let size = i32::try_from(size).unwrap_or(i32::MAX);
            dealloc
                .call(&mut self.store, ptr as i32, size)
                .map_err(|e| CallError::Trap {
                    function: "dealloc".to_string(),
                    message: trap_message(&e),
                })?;
        }
        Ok(())
    }

    /// Call export `name` with string inputs (each passed as ptr, len) and, for
    /// [`Output::Buffer`], an output buffer. Returns the guest's text for buffer calls,
    /// or the non-negative code as text-less `Ok(None)` with the code.
    pub fn call(
        &mut self,
        name: &str,
        inputs: &[&[u8]],
        output: Output,
    ) -> Result<CallOutcome, CallError> {
        let func = self.typed_export(name, inputs.len(), output)?;
        // WASI system calls need wasmer-wasix's tokio context; modules without WASI do not.
        let _rt = self.core.enter_wasi()?;
        // One budget and one deadline for the whole call, `alloc`/`dealloc` included.
        let guard = self.core.begin_call(&mut self.store);
        let mut allocations: Vec<(u32, usize)> = Vec::new();
        let result = self.call_inner(name, &func, inputs, output, &mut allocations);
        let result = match result {
            Ok(outcome) => self.free(&allocations).map(|()| outcome),
            Err(e) if e.poisons_instance() => Err(e),
            Err(e) => self.free(&allocations).and(Err(e)),
        };
        result.map_err(|e| self.core.limit_error(&mut self.store, &guard, name, e))
    }

    /// The export `name` called with `n_inputs` inputs and `output`, resolved and
    /// type-checked once per instance (later calls find it in `exports`).
    fn typed_export(
        &mut self,
        name: &str,
        n_inputs: usize,
        output: Output,
    ) -> Result<LegacyFn, CallError> {
        let n_params = n_inputs * 2 + usize::from(matches!(output, Output::Buffer(_)));
        if let Some(r) = self
            .exports
            .iter()
            .find(|r| r.n_params == n_params && &*r.name == name)
        {
            return Ok(r.func.clone());
        }
        let func = self
            .instance
            .exports
            .get_function(name)
            .map_err(|_| CallError::MissingExport(name.to_string()))?
            .clone();
        let ty = func.ty(&self.store);
        if ty.params().len() != n_params
            || ty.params().iter().any(|t| *t != Type::I32)
            || ty.results() != [Type::I32]
        {
            return Err(CallError::MissingExport(name.to_string()));
        }
        let typed = LegacyFn::new(&self.store, &func, n_params)
            .map_err(|_| CallError::MissingExport(name.to_string()))?;
        self.exports.push(Resolved {
            name: name.into(),
            n_params,
            func: typed.clone(),
        });
        Ok(typed)
    }

    fn call_inner(
        &mut self,
        name: &str,
        func: &LegacyFn,
        inputs: &[&[u8]],
        output: Output,
        allocations: &mut Vec<(u32, usize)>,
    ) -> Result<CallOutcome, CallError> {
        let mut args = Args::default();
        for input in inputs {
            // Never alloc(0): the Rust allocators of plugins in the wild treat it as UB.
            let size = input.len().max(1);
            let ptr = self.alloc_checked(name, size)?;
            allocations.push((ptr, size));
            let view = self.memory.view(&self.store);
            memory::write_bytes(&view, ptr, input).map_err(|error| CallError::Memory {
                function: name.to_string(),
                error,
            })?;
            let len = i32::try_from(input.len()).map_err(|_| CallError::AllocFailed {
                function: name.to_string(),
                size: input.len() as u64,
                detail: "input does not fit in i32".into(),
            })?;
            args.push(ptr as i32);
            args.push(len);
        }
        let mut out = None;
        if let Output::Buffer(min) = output {
            let preferred = min.max(PREFERRED_OUT_BUF);
            let (ptr, size) = match self.alloc_checked(name, preferred) {
                Ok(p) => (p, preferred),
                Err(CallError::AllocFailed { .. }) if preferred > min => {
                    (self.alloc_checked(name, min)?, min)
                }
                Err(e) => return Err(e),
            };
            allocations.push((ptr, size));
            args.push(ptr as i32);
            out = Some((ptr, size));
        }
        let code = func
            .call(&mut self.store, args.as_slice())
            .map_err(|e| CallError::Trap {
                function: name.to_string(),
                message: trap_message(&e),
            })?;
        let Some((out_ptr, out_size)) = out else {
            return Ok(CallOutcome { code, text: None });
        };
        if code < 0 {
            let message = self.read_guest_error(out_ptr, out_size, code);
            return Err(CallError::GuestError {
                function: name.to_string(),
                code,
                message,
            });
        }
        let len = code as u32;
        if len as usize > out_size {
            log::error!(
                "[plugin:{}] {name}: result exceeds output buffer: {len} > {out_size}",
                self.core.ctx().plugin_id
            );
            return Err(CallError::OutputOverflow {
                function: name.to_string(),
                len: u64::from(len),
                size: out_size as u64,
            });
        }
        let view = self.memory.view(&self.store);
        let bytes = memory::read_bytes(&view, out_ptr, len, out_size).map_err(|error| {
            CallError::Memory {
                function: name.to_string(),
                error,
            }
        })?;
        let text =
            String::from_utf8(bytes).map_err(|_| CallError::InvalidUtf8(name.to_string()))?;
        Ok(CallOutcome {
            code,
            text: Some(text),
        })
    }

    /// The `{"error": "..."}` a guest wrote before returning `-len`, if it did.
    fn read_guest_error(&self, ptr: u32, size: usize, code: i32) -> Option<String> {
        let len = code.checked_neg().and_then(|n| u32::try_from(n).ok())?;
        if len as usize > size {
            return None;
        }
        let view = self.memory.view(&self.store);
        let bytes = memory::read_bytes(&view, ptr, len, size).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        value.get("error")?.as_str().map(str::to_string)
    }
}

/// The `i32` arguments of one export call, on the stack up to [`MAX_TYPED_PARAMS`].
#[derive(Default)]
struct Args {
    fixed: [i32; MAX_TYPED_PARAMS],
    len: usize,
    more: Vec<i32>,
}

impl Args {
    fn push(&mut self, v: i32) {
        if self.more.is_empty() {
            if let Some(slot) = self.fixed.get_mut(self.len) {
                *slot = v;
                self.len += 1;
                return;
            }
            self.more.extend_from_slice(&self.fixed);
        }
        self.more.push(v);
    }

    fn as_slice(&self) -> &[i32] {
        if self.more.is_empty() {
            self.fixed.get(..self.len).unwrap_or(&[])
        } else {
            &self.more
        }
    }
}

/// What a successful export call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOutcome {
    /// The export's `i32` result (a length for buffer calls).
    pub code: i32,
    /// The text written to the output buffer (buffer calls only).
    pub text: Option<String>,
}
