//! CPU metering and the wall-clock deadline's stopping points, compiled into every
//! module: the region-metering middleware the engines push onto their compiler
//! configuration and the fingerprint that keys cached artifacts. The per-call budget and
//! the deadline are set and enforced by `src/abi/enforce.rs` through the two globals this
//! middleware adds.
//!
//! # Regions
//!
//! wasmer's own `Metering` charges at every basic block, which costs about +50 % on
//! branchy code. This middleware charges only where code can repeat or leave the
//! function ("charge points"):
//!
//! - before `loop` (the path up to the loop, once per entry);
//! - before every branch to a loop label (`br`, `br_if`, `br_table` with a loop target);
//! - before `return`, branches to the function label, tail calls and the final `end`;
//! - before every call (`call`, `call_indirect`, `call_ref`).
//!
//! Forward branches (to `block`/`if` ends) are not charge points. While streaming the
//! operators the middleware tracks the *longest* path cost since the previous charge point
//! (a max at every join) and charges that bound, as an immediate, at the next one. A point
//! is one operator on that path, plus [`IMPORT_CALL_COST`] for a call to an import.
//!
//! Each charge is `if used - limit > -cost { used = i64::MAX; trap }; used += cost`
//! (signed). The guest never writes `limit`: the watchdog of `src/abi/enforce.rs` stops a
//! call past its deadline by storing `limit = 0`, and the guest traps at its next charge
//! point. Engines without metering compile the same code (the deadline needs the charge
//! points) and run with an unlimited budget. A lighter deadline-only check (`limit == 0`,
//! without the store to `used`) is not enough: with no store in a loop, cranelift keeps
//! `limit` in a register, and a `loop br 0` was never stopped.
//!
//! # Soundness (points charged bound the work done)
//!
//! Remove the back-edges (branches to loop labels) and a function's control flow is a
//! DAG, because wasm only branches backwards to loops. Every DAG sink that is not a trap
//! is a charge point, and the cost charged at a point is the maximum over the DAG paths
//! from the previous charge points (induction over the operator stream: fallthrough adds
//! the operator's cost, an `else` arm starts from its `if`, a block's or if's end takes
//! the max of the fallthrough and every forward branch to it, nothing falls through an
//! unconditional transfer). Every call is a charge point, so a callee's regions never mix
//! with its caller's. A charge that would cross the limit traps before updating, so
//! `used <= limit` after every completed charge. Hence, at any moment of a call:
//! operators executed <= budget + one region in progress (a region is forward code of one
//! function, so it is bounded by that function's size). Host functions' own work is
//! outside wasm and costs only [`IMPORT_CALL_COST`].
//!
//! Control flow this analysis does not model (exception handling, `br_on_*`) is refused:
//! the compile fails rather than under-charge.

use std::fmt;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

use wasmer::sys::wasmparser::{BlockType, Operator};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::{
    ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, ModuleInfo, Mutability, Type,
};

use crate::limits::DEFAULT_CPU_BUDGET;

/// Version of the metering scheme (charge points, check sequence, operator costs). Part of
/// the engine settings fingerprint ([`metering_fingerprint`]): change it whenever the
/// generated code changes, so cached artifacts compiled with the old scheme are not reused.
pub const METERING_SCHEME: &str = "region2";

/// Export name of the global holding the points used by the running call (i64; the guest
/// reads and writes it, the host resets it before each call).
pub const EXPORT_USED: &str = "tark_meter_used";

/// Export name of the global holding the running call's limit in points (i64; the guest
/// only reads it; the host sets it before each call, the watchdog stores 0 into it).
pub const EXPORT_LIMIT: &str = "tark_meter_limit";

/// Extra points for a call to an imported (host) function: crossing into the host costs
/// far more than one operator.
pub const IMPORT_CALL_COST: u64 = 50;

/// Largest limit the host stores (budgets above it, `u64::MAX` included, mean "about
/// unlimited"): keeps `used + cost` and `used - limit` far from overflowing.
pub const MAX_LIMIT: u64 = 1 << 62;

/// Everything about metering that is compiled into the code, for cache keys:
/// `region2:200000000000` with metering, `off:region2` without (the deadline's charge
/// points are compiled in either way).
pub fn metering_fingerprint(metered: bool) -> String {
    if metered {
        format!("{METERING_SCHEME}:{INITIAL_POINTS}")
    } else {
        format!("off:{METERING_SCHEME}")
    }
}

/// The limit global's initial value, before the host sets the plugin's budget: it bounds
/// the module's start function. Baked into the compiled code, hence a constant (tark's
/// plugins have no start function).
pub const INITIAL_POINTS: u64 = DEFAULT_CPU_BUDGET;

/// The middleware to push onto a compiler configuration (with or without metering: see
/// the module documentation).
pub fn metering_middleware() -> Arc<dyn ModuleMiddleware> {
    Arc::new(RegionMetering::default())
}

/// Global indexes of the module being compiled.
#[derive(Clone, Copy, Debug)]
struct ModuleState {
    used: u32,
    limit: u32,
    num_imported_functions: u32,
}

/// The region-metering module middleware. One value serves every module an engine
/// compiles: the module's global indexes are recorded in `transform_module_info` and
/// handed to that module's function middlewares. That is sound because wasmer 7.4
/// compiles a module entirely under the engine's inner lock (`Artifact::new` holds
/// `engine.inner_mut()` from module transform to the last function), so the function
/// middlewares of one compilation never see another module's state.
#[derive(Default)]
pub struct RegionMetering {
    current: Mutex<Option<ModuleState>>,
}

impl fmt::Debug for RegionMetering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionMetering")
            .field("scheme", &METERING_SCHEME)
            .finish()
    }
}

impl ModuleMiddleware for RegionMetering {
    fn generate_function_middleware<'a>(
        &self,
        _local_function_index: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let state = *self.current.lock().unwrap_or_else(PoisonError::into_inner);
        Box::new(FunctionRegionMetering {
            // None cannot happen (wasmer transforms the module first); `feed` then fails
            // the compile rather than produce unmetered code.
            state,
            stack: vec![Frame::new(Kind::Func, Some(0))],
            acc: Some(0),
        })
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        if info.exports.contains_key(EXPORT_USED) || info.exports.contains_key(EXPORT_LIMIT) {
            return Err(MiddlewareError::new(
                "metering",
                "the module already exports a metering global name",
            ));
        }
        let used = info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        info.global_initializers.push(GlobalInit::I64Const(0));
        info.exports
            .insert(EXPORT_USED.to_string(), ExportIndex::Global(used));
        let limit = info
            .globals
            .push(GlobalType::new(Type::I64, Mutability::Var));
        let initial = i64::try_from(INITIAL_POINTS.min(MAX_LIMIT)).unwrap_or(i64::MAX);
        info.global_initializers.push(GlobalInit::I64Const(initial));
        info.exports
            .insert(EXPORT_LIMIT.to_string(), ExportIndex::Global(limit));
        let num_imported_functions = u32::try_from(info.num_imported_functions)
            .map_err(|_| MiddlewareError::new("metering", "too many imported functions"))?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(ModuleState {
            used: used.as_u32(),
            limit: limit.as_u32(),
            num_imported_functions,
        });
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Func,
    Block,
    Loop,
    If,
}

/// One open control frame and the path costs that join at its end.
#[derive(Debug)]
struct Frame {
    kind: Kind,
    /// Cost when the `if` was entered (start of the else arm).
    at_if: Option<u64>,
    /// Cost at the end of the then-arm (after `else`).
    then_end: Option<u64>,
    has_else: bool,
    /// Max cost of the forward branches to this frame's end label.
    end_acc: Option<u64>,
}

impl Frame {
    fn new(kind: Kind, at_if: Option<u64>) -> Self {
        Frame {
            kind,
            at_if,
            then_end: None,
            has_else: false,
            end_acc: None,
        }
    }
}

/// The larger cost; `None` stands for "unreachable".
fn max_cost(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

struct FunctionRegionMetering {
    state: Option<ModuleState>,
    stack: Vec<Frame>,
    /// Longest path cost since the last charge point; None when unreachable.
    acc: Option<u64>,
}

impl fmt::Debug for FunctionRegionMetering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegionMetering").finish()
    }
}

fn refused(what: &str) -> MiddlewareError {
    MiddlewareError::new("metering", format!("unsupported operator {what}"))
}

impl FunctionRegionMetering {
    /// Emit the charge of the accumulated cost (if reachable and non-zero) and reset it.
    fn charge(&mut self, state: &mut MiddlewareReaderState<'_>, st: ModuleState) {
        let cost = match self.acc {
            Some(c) if c > 0 => c,
            _ => return,
        };
        // A region costs at most (operators of one function) x (import call cost): far
        // below 2^40, and the cap keeps the arithmetic below far from overflowing.
        let cost = i64::try_from(cost.min(1 << 40)).unwrap_or(1 << 40);
        // Check first, then update: a store followed by a reload of the same global
        // measured 2-3x slower per charge (prototype, /work/proto REPORT.md).
        state.extend([
            Operator::GlobalGet {
                global_index: st.used,
            },
            Operator::GlobalGet {
                global_index: st.limit,
            },
            Operator::I64Sub,
            Operator::I64Const { value: -cost },
            Operator::I64GtS,
            Operator::If {
                blockty: BlockType::Empty,
            },
            // Cold path: mark "out of points" for the host (used > limit), then trap.
            Operator::I64Const { value: i64::MAX },
            Operator::GlobalSet {
                global_index: st.used,
            },
            Operator::Unreachable,
            Operator::End,
            Operator::GlobalGet {
                global_index: st.used,
            },
            Operator::I64Const { value: cost },
            Operator::I64Add,
            Operator::GlobalSet {
                global_index: st.used,
            },
        ]);
        self.acc = Some(0);
    }

    fn target(&mut self, depth: u32) -> Result<&mut Frame, MiddlewareError> {
        let n = self.stack.len();
        n.checked_sub(1 + depth as usize)
            .and_then(|i| self.stack.get_mut(i))
            .ok_or_else(|| MiddlewareError::new("metering", "branch depth out of range"))
    }

    /// Is label `depth` a charge point (a loop header or the function exit)?
    fn is_charged_label(&self, depth: u32) -> bool {
        let n = self.stack.len();
        match n
            .checked_sub(1 + depth as usize)
            .and_then(|i| self.stack.get(i))
        {
            Some(f) => matches!(f.kind, Kind::Loop | Kind::Func),
            None => true,
        }
    }

    /// A branch to `depth`: charged if it is a back-edge or an exit, else its cost joins
    /// the target's end.
    fn branch(
        &mut self,
        depth: u32,
        state: &mut MiddlewareReaderState<'_>,
        st: ModuleState,
    ) -> Result<(), MiddlewareError> {
        if self.is_charged_label(depth) {
            self.charge(state, st);
        } else {
            let acc = self.acc;
            let f = self.target(depth)?;
            f.end_acc = max_cost(f.end_acc, acc);
        }
        Ok(())
    }
}

impl<'a> FunctionMiddleware<'a> for FunctionRegionMetering {
    fn feed(
        &mut self,
        op: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let st = self
            .state
            .ok_or_else(|| MiddlewareError::new("metering", "no metering state for this module"))?;
        // Cost of this operator: one point, plus the host-call surcharge.
        let mut cost = 1u64;
        if let Operator::Call { function_index } = &op {
            if *function_index < st.num_imported_functions {
                cost += IMPORT_CALL_COST;
            }
        }
        self.acc = self.acc.map(|a| a.saturating_add(cost));

        match &op {
            Operator::Block { .. } => self.stack.push(Frame::new(Kind::Block, None)),
            Operator::Loop { .. } => {
                // Pay for the path up to here once on entry, so that the back-edges
                // charge only the loop's own paths.
                self.charge(state, st);
                self.stack.push(Frame::new(Kind::Loop, None));
            }
            Operator::If { .. } => self.stack.push(Frame::new(Kind::If, self.acc)),
            Operator::Else => {
                let acc = self.acc;
                let f = self.target(0)?;
                if f.kind != Kind::If {
                    return Err(refused("else outside if"));
                }
                f.then_end = acc;
                f.has_else = true;
                self.acc = f.at_if;
            }
            Operator::End => {
                let f = self
                    .stack
                    .pop()
                    .ok_or_else(|| MiddlewareError::new("metering", "unbalanced end"))?;
                match f.kind {
                    Kind::Func => {
                        // Fall-through exit (branches to the function label were charged
                        // where they branch).
                        self.charge(state, st);
                        self.acc = None;
                    }
                    Kind::Block => self.acc = max_cost(self.acc, f.end_acc),
                    Kind::Loop => {}
                    Kind::If => {
                        let other = if f.has_else { f.then_end } else { f.at_if };
                        self.acc = max_cost(max_cost(self.acc, other), f.end_acc);
                    }
                }
            }
            Operator::Br { relative_depth } => {
                self.branch(*relative_depth, state, st)?;
                self.acc = None;
            }
            Operator::BrIf { relative_depth } => self.branch(*relative_depth, state, st)?,
            Operator::BrTable { targets } => {
                let mut depths: Vec<u32> = targets
                    .targets()
                    .collect::<Result<_, _>>()
                    .map_err(|e| MiddlewareError::new("metering", e.to_string()))?;
                depths.push(targets.default());
                if depths.iter().any(|d| self.is_charged_label(*d)) {
                    self.charge(state, st);
                }
                let acc = self.acc;
                for d in depths {
                    if !self.is_charged_label(d) {
                        let f = self.target(d)?;
                        f.end_acc = max_cost(f.end_acc, acc);
                    }
                }
                self.acc = None;
            }
            Operator::Return
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. }
            | Operator::ReturnCallRef { .. } => {
                self.charge(state, st);
                self.acc = None;
            }
            Operator::Unreachable => self.acc = None,
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                self.charge(state, st)
            }
            // Control flow this analysis does not model: refuse rather than under-charge.
            Operator::Try { .. }
            | Operator::Catch { .. }
            | Operator::CatchAll
            | Operator::Throw { .. }
            | Operator::ThrowRef
            | Operator::Rethrow { .. }
            | Operator::Delegate { .. }
            | Operator::TryTable { .. }
            | Operator::BrOnNull { .. }
            | Operator::BrOnNonNull { .. }
            | Operator::BrOnCast { .. }
            | Operator::BrOnCastFail { .. } => return Err(refused(&format!("{op:?}"))),
            _ => {}
        }
        state.push_operator(op);
        Ok(())
    }
}
