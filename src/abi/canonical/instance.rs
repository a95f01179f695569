//! One instance of a canonical-ABI (wit-bindgen) plugin and calls into its exports:
//! arguments lowered (spilled to memory past 16 flat values), results lifted (from the
//! returned pointer past 1 flat value), then `cabi_post_*` so the guest frees them.

use std::sync::Arc;

use wasmer::{FunctionEnv, Instance, Memory, Module, Store, Value};

use super::contract::{Contract, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS};
use super::imports::{canonical_imports, provided_signature, CanonicalEnv};
use super::lift::{AbiError, FlatIter, Reader, Realloc, Writer};
use super::typed::{FastCall, TypedCache, MAX_FAST_PARAMS};
use super::types::{Ty, Val};
use crate::abi::instance::{trap_message, InstanceCore, InstantiateError, Instantiated, Linker};
use crate::abi::{signature_string, CallError};
use crate::host::PluginContext;

/// Export name of an interface function.
pub fn export_name(iface: &str, func: &str) -> String {
    format!("tark:plugin/{iface}#{func}")
}

/// A live instance of a canonical plugin.
pub struct CanonicalInstance {
    pub(super) core: InstanceCore,
    pub(super) store: Store,
    instance: Instance,
    pub(super) memory: Memory,
    pub(super) realloc: Option<Realloc>,
    /// Exports resolved and checked on first use, so calls do no lookups.
    pub(super) prepared: Vec<Prepared>,
    /// Typed exports checked on first use (`typed.rs`).
    pub(super) typed: TypedCache,
    _env: FunctionEnv<CanonicalEnv>,
}

/// An export resolved against the contract once per instance.
pub(super) struct Prepared {
    iface: String,
    func: String,
    pub(super) sig: &'static FuncSig,
    pub(super) export: wasmer::Function,
    pub(super) post: Option<wasmer::Function>,
    /// The export as a typed function, when its core type allows (`typed.rs`).
    fast: Option<FastCall>,
    /// The post-return as a typed `(i32) -> ()`, when it is one.
    fast_post: Option<wasmer::TypedFunction<i32, ()>>,
    pub(super) spill_params: Option<Ty>,
    pub(super) spill_results: bool,
}

impl CanonicalInstance {
    /// Check the module's imports against the contract and instantiate it.
    pub fn new(
        store: Store,
        module: &Module,
        ctx: Arc<PluginContext>,
    ) -> Result<Self, InstantiateError> {
        let mut linker = Linker::new(store, module, ctx.clone(), &provided_signature)?;
        let owner = linker.owner();
        let env = FunctionEnv::new(
            linker.store_mut(),
            CanonicalEnv {
                ctx,
                owner,
                memory: None,
                realloc: None,
            },
        );
        let imports = canonical_imports(linker.store_mut(), &env, module);
        let mut realloc = None;
        let Instantiated {
            store,
            instance,
            memory,
            core,
        } = linker.instantiate(module, imports, |store, instance, memory| {
            realloc = instance
                .exports
                .get_typed_function::<(i32, i32, i32, i32), i32>(&*store, "cabi_realloc")
                .ok();
            let data = env.as_mut(store);
            data.memory = Some(memory.clone());
            data.realloc = realloc.clone();
        })?;
        Ok(CanonicalInstance {
            core,
            store,
            instance,
            memory,
            realloc,
            prepared: Vec::new(),
            typed: TypedCache::default(),
            _env: env,
        })
    }

    /// Current linear memory size in 64 KiB pages.
    pub fn memory_pages(&self) -> u32 {
        self.memory.view(&self.store).size().0
    }

    /// Metering points left of the last call's CPU budget (None when not metered).
    pub fn remaining_points(&mut self) -> Option<u64> {
        self.core.remaining_points(&mut self.store)
    }

    /// Does the module export this interface function (with the contract's signature)?
    pub fn has_export(&self, iface: &str, func: &str) -> bool {
        let Some(sig) = Contract::get().func(iface, func) else {
            return false;
        };
        match self
            .instance
            .exports
            .get_function(&export_name(iface, func))
        {
            Ok(f) => f.ty(&self.store) == sig.export_signature(),
            Err(_) => false,
        }
    }

    /// Call `iface#func` with `args`; its result (None for functions without one).
    /// One CPU budget and one deadline cover the whole call (argument allocation,
    /// export, post-return); a breach becomes its clear error.
    pub fn call(
        &mut self,
        iface: &str,
        func: &str,
        args: &[Val],
    ) -> Result<Option<Val>, CallError> {
        let guard = self.core.begin_call(&mut self.store);
        let result = self.call_inner(iface, func, args);
        result.map_err(|e| {
            let name = export_name(iface, func);
            self.core.limit_error(&mut self.store, &guard, &name, e)
        })
    }

    /// Resolve `iface#func` (cached per instance): the contract signature, the export with
    /// its core signature checked, and its post-return function.
    pub(super) fn prepare(&mut self, iface: &str, func: &str) -> Result<usize, CallError> {
        if let Some(i) = self
            .prepared
            .iter()
            .position(|p| p.iface == iface && p.func == func)
        {
            return Ok(i);
        }
        let name = export_name(iface, func);
        let sig: &'static FuncSig = Contract::get()
            .func(iface, func)
            .ok_or_else(|| CallError::MissingExport(name.clone()))?;
        let export = self
            .instance
            .exports
            .get_function(&name)
            .map_err(|_| CallError::MissingExport(name.clone()))?
            .clone();
        let found = export.ty(&self.store);
        let expected = sig.export_signature();
        if found != expected {
            return Err(CallError::ExportSignature {
                export: name,
                expected: signature_string(&expected),
                found: signature_string(&found),
            });
        }
        let post = self
            .instance
            .exports
            .get_function(&format!("cabi_post_{name}"))
            .ok()
            .cloned();
        let fast = FastCall::new(&self.store, &export);
        let fast_post = post
            .as_ref()
            .and_then(|p| p.typed::<i32, ()>(&self.store).ok());
        self.prepared.push(Prepared {
            iface: iface.to_string(),
            func: func.to_string(),
            sig,
            export,
            post,
            fast,
            fast_post,
            spill_params: (sig.flat_params().len() > MAX_FLAT_PARAMS).then(|| sig.params_tuple()),
            spill_results: sig.flat_results().len() > MAX_FLAT_RESULTS,
        });
        Ok(self.prepared.len() - 1)
    }

    fn call_inner(
        &mut self,
        iface: &str,
        func: &str,
        args: &[Val],
    ) -> Result<Option<Val>, CallError> {
        let index = self.prepare(iface, func)?;
        let p = self
            .prepared
            .get(index)
            .ok_or_else(|| CallError::MissingExport(export_name(iface, func)))?;
        let (sig, spill_results) = (p.sig, p.spill_results);
        let (f, post_fn, fast, fast_post) = (
            p.export.clone(),
            p.post.clone(),
            p.fast.clone(),
            p.fast_post.clone(),
        );
        let spill_params = p.spill_params.clone();
        // The export's name, built only for an error.
        let name = || export_name(iface, func);
        if args.len() != sig.params.len() {
            return Err(CallError::ArgumentCount {
                function: name(),
                expected: sig.params.len(),
                given: args.len(),
            });
        }
        // WASI system calls need wasmer-wasix's tokio context; modules without WASI do not.
        let _rt = self.core.enter_wasi()?;
        let abi = |e: AbiError| CallError::Abi {
            function: name(),
            message: e.to_string(),
        };
        let trap = |e: wasmer::RuntimeError| CallError::Trap {
            function: name(),
            message: trap_message(&e),
        };
        // Lower the arguments.
        let mut flat_args: Vec<Value> = Vec::new();
        {
            let mut w = Writer::new(&mut self.store, self.memory.clone(), self.realloc.clone());
            if let Some(tuple) = &spill_params {
                let ptr = w
                    .store_new(tuple, &Val::Tuple(args.to_vec()))
                    .map_err(abi)?;
                flat_args.push(Value::I32(ptr as i32));
            } else {
                for ((_, t), v) in sig.params.iter().zip(args) {
                    w.lower_flat(t, v, &mut flat_args).map_err(abi)?;
                }
            }
        }
        let fast_results: [Value; 1];
        let dynamic_results: Box<[Value]>;
        let results: &[Value] = match fast.filter(|_| flat_args.len() <= MAX_FAST_PARAMS) {
            Some(fast) => {
                let mut raw = [0u64; MAX_FAST_PARAMS];
                for (slot, v) in raw.iter_mut().zip(&flat_args) {
                    *slot = match v {
                        Value::I32(x) => u64::from(*x as u32),
                        Value::I64(x) => *x as u64,
                        _ => return Err(abi(AbiError::FlatMismatch)),
                    };
                }
                let raw = raw.get(..flat_args.len()).unwrap_or(&[]);
                match fast.call(&mut self.store, raw).map_err(trap)? {
                    Some(r) => {
                        fast_results = [Value::I32(r)];
                        &fast_results
                    }
                    None => &[],
                }
            }
            None => {
                dynamic_results = f.call(&mut self.store, &flat_args).map_err(trap)?;
                &dynamic_results
            }
        };
        let value = match &sig.result {
            None => None,
            Some(ty) => {
                let mut reader = Reader::new(
                    &self.store,
                    &self.memory,
                    self.core.ctx().limits.guest_read_max,
                );
                if spill_results {
                    let ptr = match results.first() {
                        Some(Value::I32(p)) => *p as u32,
                        _ => return Err(abi(AbiError::FlatMismatch)),
                    };
                    Some(reader.load(ty, ptr).map_err(abi)?)
                } else {
                    let mut it = FlatIter::new(results);
                    Some(reader.lift_flat(ty, &mut it).map_err(abi)?)
                }
            }
        };
        // Let the guest free what it returned.
        let post_trap = |e: wasmer::RuntimeError| CallError::Trap {
            function: format!("cabi_post_{}", name()),
            message: e.message(),
        };
        match (fast_post, results, post_fn) {
            (Some(pf), [Value::I32(r)], _) => {
                pf.call(&mut self.store, *r).map_err(post_trap)?;
            }
            (_, _, Some(pf)) => {
                pf.call(&mut self.store, results).map_err(post_trap)?;
            }
            (_, _, None) if sig.result.as_ref().is_some_and(|t| t.owns_memory()) => {
                let name = name();
                log::warn!(
                    "[plugin:{}] {name} returns guest memory but exports no cabi_post_{name}",
                    self.core.ctx().plugin_id
                );
                return Err(CallError::MissingPostReturn(name));
            }
            (_, _, None) => {}
        }
        Ok(value)
    }
}
